"""``pain3d import unbc``: the UNBC-McMaster Shoulder Pain Expression Archive, as distributed,
into the frames table (one shard per subject), in parallel on Ray Data.

    Images/<subject>/<sequence>/<frame>.png                    e.g. 042-ll042/ll042t1aaaff/
    Frame_Labels/PSPI/<subject>/<sequence>/<frame>_facs.txt     one float
    Frame_Labels/FACS/<subject>/<sequence>/<frame>_facs.txt     rows "AU intensity x x"; empty: none
    AAM_landmarks/<subject>/<sequence>/<frame>_aam.txt          66 rows "x y"
    Sequence_Labels/{OPR,VAS}/<subject>/<sequence>.txt          one float (optional)

Each frame is aligned from its landmarks (pipelines/align.py) to a ``size`` square framed like
the synthetic training crop; a copy without ``AAM_landmarks/`` is aligned from MediaPipe's face
landmarker instead (the ``aligner`` column says which). The widespread nested copies
(``Images/Images/``, ``Frame_Labels/Frame_Labels/``, ...) are read as they are. The PSPI comes
from the label file; the one computed from the FACS rows is kept beside it (``pspi_facs``) and
every disagreement is counted and listed in the manifest, never corrected; a listed AU43
counts 1 (binary, as the authors score it). Frames lacking a landmark or label file, with a
malformed landmark file, or blank (the archive's pure-black frames) are skipped and counted.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from faces.au import PSPI_MAX
from pipelines import guard, importers, storage
from pipelines.align import align, landmarks_problem, mp_key_points, warp
from pipelines.tasks import EXTRA_COLS, FRAME_SCHEMA, PSPI_COLS, png_bytes, table_from_rows

log = logging.getLogger(__name__)
REQUIRED = ("Images", "Frame_Labels/PSPI", "Frame_Labels/FACS")
CODED_AUS = (4, 6, 7, 9, 10, 12, 20, 25, 26, 43)
SEQUENCE_LABELS = ("OPR", "VAS")
SKIP_KINDS = {"landmarks": "no AAM landmarks file", "pspi": "no PSPI label file",
              "facs": "no FACS label file", "bad_landmarks": "a malformed AAM landmarks file",
              "blank": "a blank (pure-black) image", "no_face": "no face found by MediaPipe"}
BLANK_STD = 2.0  # grey levels: a frame this flat shows no face
SCHEMA = pa.schema(list(FRAME_SCHEMA) + [
    ("subject", pa.string()), ("sequence", pa.string()), ("frame", pa.int32()),
    ("AU20", pa.float32()), ("pspi_facs", pa.float32()), ("opr", pa.float32()),
    ("vas", pa.float32()), ("landmarks", pa.list_(pa.float32())), ("aligner", pa.string())])


class NotArchive(ValueError):
    pass


def folder(root, name: str) -> Path:
    """``root/name``, or the nested copy's ``root/<top>/<top>/<rest>`` when that is where it
    lies (``Images/Images``, ``Frame_Labels/Frame_Labels/PSPI``, ...)."""
    r = Path(root)
    top, _, rest = name.partition("/")
    nested = r / top / top / rest if rest else r / top / top
    return nested if nested.is_dir() else r / name


def subjects_of(root: str) -> list[str]:
    """The subject folders of an archive root; one sentence when ROOT is not the archive."""
    r = Path(root)
    missing = [d for d in REQUIRED if not folder(r, d).is_dir()]
    images = folder(r, "Images")
    subjects = sorted(p.name for p in images.iterdir() if p.is_dir()) if not missing else []
    if missing or not subjects:
        raise NotArchive(f"{root} is not the UNBC-McMaster archive: expected the folders "
                         f"{', '.join(d + '/' for d in REQUIRED)} (AAM_landmarks/ too, or the "
                         "frames are aligned by MediaPipe) with one folder per subject "
                         f"(e.g. Images/042-ll042/ll042t1aaaff/ll042t1aaaff001.png)"
                         + (f"; missing {', '.join(missing)}" if missing else
                            "; Images/ has no subject folders"))
    if not any(True for s in subjects for _ in _frames(r, s)):
        raise NotArchive(f"{root} holds no frames: no Images/<subject>/<sequence>/*.png under "
                         "any of its subject folders; point it at the unpacked archive")
    return subjects


def check_size(size: int) -> None:
    if not 16 <= size <= 1024:
        raise ValueError(f"--size must be between 16 and 1024 pixels, got {size}")


def identities(subjects: list[str]) -> dict[str, int]:
    """Subject folder -> identity: its leading number (042-ll042 -> 42), else its rank."""
    nums = {s: int(m.group(1)) for s in subjects if (m := re.match(r"(\d+)", s))}
    if len(nums) == len(subjects) and len(set(nums.values())) == len(nums):
        return nums
    return {s: k for k, s in enumerate(subjects)}


def _floats(path: Path) -> list[list[float]]:
    try:
        return [[float(x) for x in line.split()] for line in path.read_text().splitlines()
                if line.strip()]
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a UNBC label file of numbers ({e}); restore it from "
                         "the archive") from None


def read_pspi(path: Path) -> float:
    rows = _floats(path)
    if len(rows) != 1 or len(rows[0]) != 1:
        raise ValueError(f"{path} should hold one PSPI value; restore it from the archive")
    return rows[0][0]


def read_facs(path: Path) -> dict[int, float]:
    """{AU: intensity}; an empty file: no AU coded. AU43 (eyes closed) is binary: listed, it
    counts 1 whatever intensity the row gives (the archive often gives none, or 0)."""
    out = {}
    for row in _floats(path):
        au = int(round(row[0])) if row else None
        if au == 43:
            out[43] = 1.0
        elif len(row) < 2:
            raise ValueError(f"{path}: each row should read 'AU intensity ...'; restore it "
                             "from the archive")
        else:
            out[au] = row[1]
    return out


def read_landmarks(path: Path) -> np.ndarray | None:
    """The 66 landmarks, or None for a malformed file (empty, other row counts, coincident
    points: skipped and counted, as the archive has such files)."""
    try:
        rows = _floats(path)
        p = np.asarray(rows, np.float64) if rows and len({len(r) for r in rows}) == 1 else None
    except ValueError:
        return None
    return p if p is not None and landmarks_problem(p) is None else None


def pspi_from_facs(aus: dict[int, float]) -> float:
    a = lambda k: aus.get(k, 0.0)  # noqa: E731
    return a(4) + max(a(6), a(7)) + max(a(9), a(10)) + a(43)


def _sequence_labels(root: Path, subject: str, seq: str) -> dict[str, float | None]:
    out = {}
    for kind in SEQUENCE_LABELS:
        f = folder(root, f"Sequence_Labels/{kind}") / subject / f"{seq}.txt"
        out[kind.lower()] = read_pspi(f) if f.is_file() else None
    return out


def _frame_index(stem: str) -> int:
    m = re.search(r"(\d+)$", stem)
    return int(m.group(1)) if m else -1


def _image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path} is not a readable image ({e}); restore it from the "
                         "archive") from None


def _frames(root: Path, subject: str):
    """(sequence, frame stem, image path) of a subject, in order."""
    for seq_dir in sorted(p for p in (folder(root, "Images") / subject).iterdir()
                          if p.is_dir()):
        for img in sorted(seq_dir.glob("*.png")):
            yield seq_dir.name, img.stem, img


def _files(r: Path, subject: str, seq: str, stem: str, aam: Path | None) -> dict[str, Path]:
    files = {"pspi": folder(r, "Frame_Labels/PSPI") / subject / seq / f"{stem}_facs.txt",
             "facs": folder(r, "Frame_Labels/FACS") / subject / seq / f"{stem}_facs.txt"}
    if aam is not None:
        files["landmarks"] = aam / subject / seq / f"{stem}_aam.txt"
    return files


class _Aligner:
    """AAM landmarks where the archive has them, else MediaPipe's face landmarker."""

    def __init__(self, root: Path):
        aam = folder(root, "AAM_landmarks")
        self.aam = aam if aam.is_dir() else None
        self.reader = None

    def __call__(self, image: np.ndarray, files: dict, size: int):
        """(face, 66 landmarks or empty, aligner name), or (None, skip kind, None)."""
        if self.aam is not None:
            pts = read_landmarks(files["landmarks"])
            if pts is None:
                return None, "bad_landmarks", None
            face, pts = align(image, pts, size)
            return face, pts, "aam"
        if self.reader is None:
            from actors.qa import FaceReader, model_path

            self.reader = FaceReader(model_path(None))
        reading = self.reader.read(image)
        if reading is None:
            return None, "no_face", None
        face, _ = warp(image, mp_key_points(reading.landmarks), size)
        return face, np.zeros((0, 2), np.float32), "mediapipe"


def import_subject(root: str, subject: str, ident: int, out: str, size: int) -> dict:
    """Reads, aligns and writes one subject's shard; returns its summary (no Ray here)."""
    r = Path(root)
    rows: dict[str, list] = {f.name: [] for f in SCHEMA}
    skipped: dict[str, list[str]] = {}
    mismatches, seqs, aligners = [], {}, Counter()
    full = png_bytes(np.full((size, size), 255, np.uint8), compress_level=6)
    aligner = _Aligner(r)

    def skip(kind: str, path: Path) -> None:
        skipped.setdefault(SKIP_KINDS[kind], []).append(str(path.relative_to(r)))

    for seq, stem, img in _frames(r, subject):
        files = _files(r, subject, seq, stem, aligner.aam)
        lacking = [k for k, f in files.items() if not f.is_file()]
        for k in lacking:
            skip(k, files[k])
        if lacking:
            continue
        image = _image(img)
        if image.std() < BLANK_STD:
            skip("blank", img)
            continue
        aus, label = read_facs(files["facs"]), read_pspi(files["pspi"])
        if not 0 <= label <= PSPI_MAX:
            raise ValueError(f"{files['pspi']} holds PSPI {label}, outside 0-{PSPI_MAX}; "
                             "restore it from the archive")
        face, pts, how = aligner(image, files, size)
        if face is None:
            skip(pts, files.get("landmarks", img))
            continue
        computed = pspi_from_facs(aus)
        if abs(label - computed) > 1e-6:
            mismatches.append({"frame": stem, "pspi_label": label, "pspi_facs": computed})
        if seq not in seqs:
            seqs[seq] = _sequence_labels(r, subject, seq)
        aligners[how] += 1
        _append(rows, subject, ident, seq, stem, aus, label, computed, seqs[seq],
                png_bytes(face, compress_level=6), full, pts, how)
    if aligner.reader is not None:
        aligner.reader.close()
    _link_neutrals(rows)
    table = table_from_rows(rows, SCHEMA)
    pspi = np.asarray(rows["pspi"], int)
    summary = {"subject": subject, "identity": ident, "frames": len(pspi),
               "sequences": len(seqs), "pspi_hist": np.bincount(
                   pspi, minlength=PSPI_MAX + 1).tolist(),
               "skipped": skipped, "mismatches": mismatches, "aligners": dict(aligners),
               "sequence_labels": sorted({k for v in seqs.values() for k, x in v.items()
                                          if x is not None})}
    importers.write_identity(storage.resolve(out), ident, table, summary)
    return summary


def _append(rows, subject, ident, seq, stem, aus, label, computed, seq_labels, image, mask,
            pts, aligner) -> None:
    score = int(round(label))
    rows["sample_id"].append(stem)
    rows["identity"].append(ident)
    rows["expression"].append(int(score > 0))  # 0: no pain, as a neutral frame
    rows["view"].append(0)
    rows["yaw_deg"].append(float("nan"))
    for k in PSPI_COLS + EXTRA_COLS + ("AU20",):
        rows[k].append(float(aus.get(int(k[2:]), 0.0)))
    rows["pspi"].append(score)
    for k in ("age_group", "gender", "ethnicity"):
        rows[k].append("unknown")
    rows["prompt"].append("")
    rows["seed"].append(-1)
    rows["image"].append(image)
    rows["heatmap"].append(None)
    rows["mask"].append(mask)  # the whole aligned square: the training crop keeps all of it
    rows["shape_params"].append([])
    rows["expression_params"].append([])
    rows["face_model"].append("unbc-mcmaster")
    rows["subject"].append(subject)
    rows["sequence"].append(seq)
    rows["frame"].append(_frame_index(stem))
    rows["pspi_facs"].append(float(computed))
    rows["opr"].append(seq_labels["opr"])
    rows["vas"].append(seq_labels["vas"])
    rows["landmarks"].append(pts.reshape(-1).tolist())
    rows["aligner"].append(aligner)


NEUTRAL_RULE = "the sequence's first imported frame (chosen without reading any label)"


def _link_neutrals(rows: dict) -> None:
    """neutral_sample_id: the sequence's first imported frame. No label is read, so a test
    subject's reference never sees its PSPI (UNBC sequences start at rest; the authors pick
    a random PSPI-0 frame of the subject, which reads the labels)."""
    first: dict[str, str] = {}
    for sid, seq in zip(rows["sample_id"], rows["sequence"]):
        first.setdefault(seq, sid)
    rows["neutral_sample_id"] = [first[s] for s in rows["sequence"]]


def manifest(loc: storage.Location, settings: dict) -> dict:
    """Counts per subject, the PSPI histogram, the skips and the label mismatches."""
    from pipelines.manifest import code_version

    parts = sorted(importers.summaries(loc), key=lambda s: s["identity"])
    hist = np.sum([s["pspi_hist"] for s in parts], axis=0).astype(int) if parts else \
        np.zeros(PSPI_MAX + 1, int)
    mism = [dict(m, subject=s["subject"]) for s in parts for m in s["mismatches"]]
    frames = int(hist.sum())
    return {
        "format": "pain3d-frames/1", "source": "unbc-mcmaster", "import": settings,
        "neutral_reference": NEUTRAL_RULE,
        "code_version": code_version(),
        "counts": {"subjects": len(parts), "sequences": sum(s["sequences"] for s in parts),
                   "frames": frames, "pspi_ge3": int(hist[3:].sum()),
                   "pspi_le1_fraction": float(hist[:2].sum() / frames) if frames else None},
        "per_subject": {s["subject"]: {
            "identity": s["identity"], "frames": s["frames"], "sequences": s["sequences"],
            "pspi_ge3": int(sum(s["pspi_hist"][3:])), "pspi_mismatches": len(s["mismatches"]),
            "skipped": sum(len(v) for v in s["skipped"].values())} for s in parts},
        "pspi_histogram": {"frames": hist.tolist()},
        "pspi_mismatches": {"frames": len(mism), "list": mism},
        "skipped": importers.fold_skips(parts),
        "aligners": dict(sum((Counter(s.get("aligners", {})) for s in parts), Counter())),
        "sequence_labels": sorted({k for s in parts for k in s["sequence_labels"]}),
    }


def run(root: str, out: str, size: int = 224, overwrite: bool = False, progress=None) -> dict:
    """Imports every subject not yet finished in ``out``; returns the manifest."""
    import ray

    check_size(size)
    subjects = subjects_of(root)
    ids = identities(subjects)
    settings = {"source": "unbc-mcmaster", "root": str(Path(root).resolve()), "size": size}
    with importers.session(out, settings, [root], overwrite) as (loc, done):
        todo = [s for s in subjects if ids[s] not in done]
        if progress:
            progress(len(subjects) - len(todo))
        if todo:
            ds = ray.data.from_items([{"subject": s, "identity": ids[s]} for s in todo],
                                     override_num_blocks=len(todo))
            ds = ds.map(_task, fn_kwargs={"root": root, "out": out, "size": size}, num_cpus=1)
            for _ in ds.iter_rows():
                if progress:
                    progress(1)
    m = manifest(loc, settings)
    guard.write_record(loc, "manifest.json", m)
    return m


def _task(row: dict, root: str, out: str, size: int) -> dict:
    """One subject on a Ray Data worker; its summary is on storage beside its shard."""
    import_subject(root, row["subject"], int(row["identity"]), out, size)
    return {"subject": row["subject"]}


def summary_lines(m: dict) -> list[str]:
    c = m["counts"]
    hist = Counter({k: v for k, v in enumerate(m["pspi_histogram"]["frames"]) if v})
    return [f"imported {c['frames']} frames of {c['subjects']} subjects ({c['sequences']} "
            f"sequences); PSPI >= 3: {c['pspi_ge3']}; PSPI histogram {dict(sorted(hist.items()))}",
            f"PSPI label vs FACS rows: {m['pspi_mismatches']['frames']} mismatch(es), kept as "
            "labelled (listed in manifest.json)"]
