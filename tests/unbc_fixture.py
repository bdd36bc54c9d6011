"""A small tree in exactly the UNBC-McMaster archive's layout and file formats, made from our own
renders: each identity of a pain3d dataset becomes a subject with two sequences of its frontal
frames (upscaled into a 320x240 video frame, some rolled), labels written the way the archive
writes them (scientific notation, empty FACS files for frames without AUs), plus the defects an
importer must count: one PSPI file that disagrees with its FACS rows and one frame without
landmarks."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipelines.align import place_template
from pipelines.layout3dpain import load_frames
from train.crop import box_from_head

W, H, FACE = 320, 240, 192  # video frame; each render is resized to FACE pixels within it
AUS = (4, 6, 7, 9, 10, 12, 20, 25, 26, 43)


def _sci(*values: float) -> str:
    return "".join(f"{v:15.7e}" for v in values)


def _frame(row: dict, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """(the 320x240 video frame, its 66 landmarks) of a rendered frame."""
    img = np.asarray(Image.open(io.BytesIO(row["image"])).convert("RGB"))
    s = img.shape[0]
    canvas = np.full((H, W, 3), 90, np.uint8)
    x0, y0 = (W - FACE) // 2, (H - FACE) // 2
    canvas[y0:y0 + FACE, x0:x0 + FACE] = cv2.resize(img, (FACE, FACE))
    k = FACE / s
    left, top, right, bottom = box_from_head(row["head_box"], (s, s))
    box = (left * k + x0, top * k + y0, right * k + x0, bottom * k + y0)
    pts = place_template(box)
    if angle:  # the head rolls: image and landmarks turn together
        m = cv2.getRotationMatrix2D(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), angle, 1.0)
        canvas = cv2.warpAffine(canvas, m, (W, H), borderMode=cv2.BORDER_REPLICATE)
        pts = pts @ m[:, :2].T + m[:, 2]
    return canvas, pts


def build_unbc_tree(dataset: str, root: Path, subjects: int | None = None,
                    all_views: bool = False) -> dict:
    """Writes the tree; returns what an import must reproduce: per frame stem its subject,
    sequence, AUs, PSPI label and PSPI from the FACS rows, plus the defects planted. Each
    identity's frontal frames make two sequences (``all_views``: every view's, two each)."""
    t = load_frames(dataset)
    yaws = sorted(set(t.column("yaw_deg").to_pylist()), key=abs)
    views = yaws if all_views else yaws[:1]
    rows = [r for r in t.to_pylist() if r["yaw_deg"] in views]
    ids = sorted({r["identity"] for r in rows})[:subjects]
    truth, planted = {}, {}
    for n, ident in enumerate(ids):
        code = f"tv{101 + n:03d}"
        subject = f"{101 + n:03d}-{code}"
        parts = []
        for yaw in views:
            mine = sorted((r for r in rows if r["identity"] == ident and r["yaw_deg"] == yaw),
                          key=lambda r: r["expression"])
            half = (len(mine) + 1) // 2
            parts += [mine[:half], mine[half:]]
        for s, part in enumerate(parts, 1):
            seq = f"{code}t{s}aaaff"
            for kind, value in (("OPR", n % 5), ("VAS", (n + s) % 10)):
                _write(root / "Sequence_Labels" / kind / subject / f"{seq}.txt", _sci(value))
            for f, r in enumerate(part, 1):
                stem = f"{seq}{f:03d}"
                aus = {a: float(round(r.get(f"AU{a}", 0.0) or 0.0)) for a in AUS}
                if n == 0 and s == 1 and f == 2:
                    aus[20] = 2.0  # an AU that only UNBC codes
                computed = aus[4] + max(aus[6], aus[7]) + max(aus[9], aus[10]) + aus[43]
                label = computed
                if n == 1 and s == 2 and f == 1:  # a label file that disagrees with its rows
                    label, planted["mismatch"] = abs(computed - 1), stem
                image, pts = _frame(r, angle=8.0 * ((n % 3) - 1))
                where = Path(subject) / seq
                (root / "Images" / where).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / "Images" / where / f"{stem}.png")
                _write(root / "Frame_Labels" / "PSPI" / where / f"{stem}_facs.txt", _sci(label))
                _write(root / "Frame_Labels" / "FACS" / where / f"{stem}_facs.txt",
                       "\n".join(_sci(a, v, 0, 0) for a, v in aus.items() if v > 0))
                if n == 2 and s == 1 and f == 3:  # a frame the AAM did not track
                    planted["no_landmarks"] = stem
                else:
                    _write(root / "AAM_landmarks" / where / f"{stem}_aam.txt",
                           "\n".join(_sci(x, y) for x, y in pts))
                truth[stem] = {"subject": subject, "sequence": seq, "frame": f, "aus": aus,
                               "pspi": label, "pspi_facs": computed, "identity": 101 + n,
                               "source": r["sample_id"]}
    return {"frames": truth, "planted": planted, "subjects": len(ids)}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n" if text else "")
