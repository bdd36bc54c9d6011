"""The report's dataset gallery: small JPEG copies of each shown identity's frames and
heatmaps, and the metadata the page shows and filters on (AUs, PSPI, demographics, scene,
QA readings). Real datasets (thousands of frames per subject) show an even sample."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from faces.au import EXTRA_AUS, PSPI_AUS
from pipelines.manifest import GROUP_COLS

SCENE_COLS = ("face_model", "hair_style", "garment", "background", "light_temperature_k",
              "light_azimuth_deg", "camera_distance_m")
MAX_FRAMES = 48  # per identity in its view: a synthetic identity has 33


def _num(v, digits: int = 3):
    """JSON-safe: NaN and None become None; floats rounded for a small page."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return round(v, digits) if isinstance(v, float) else v


def pick_frames(rows: list[dict], limit: int = MAX_FRAMES) -> list[dict]:
    """Every frame when they fit, else ``limit`` evenly spaced over the PSPI order."""
    rows = sorted(rows, key=lambda r: (r["pspi"], r.get("expression", 0), r.get("view", 0),
                                       r["sample_id"]))
    if len(rows) <= limit:
        return sorted(rows, key=lambda r: (r.get("expression", 0), r.get("view", 0),
                                           r["sample_id"]))
    keep = np.linspace(0, len(rows) - 1, limit).round().astype(int)
    return [rows[i] for i in keep]


def _frame(r: dict, aus: list[str], qa: list[str]) -> dict:
    return {"id": r["sample_id"], "expression": r.get("expression"), "view": r.get("view"),
            "yaw": _num(r.get("yaw_deg"), 1), "pspi": int(r["pspi"]),
            # pairs, not objects: JSON objects come out with sorted keys (AU10 before AU4)
            "aus": [[a, _num(r[a], 2)] for a in aus if r.get(a)],
            "qa": [[q.removeprefix("qa_"), _num(r.get(q))] for q in qa if r.get(q) is not None],
            "heat": bool(r.get("has_heatmap"))}


def _thumb(frames: list[dict]) -> dict:
    """The identity's face in the gallery: its most painful frame nearest the frontal view."""
    return max(frames, key=lambda f: (f["pspi"], -abs(f["yaw"] or 0.0)))


def identity_entries(light, ids: list[int]) -> list[dict]:
    """Per identity: demographics, scene, its shown frames (metadata only) and thumbnail."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = light.column_names
    aus = [a for a in (*PSPI_AUS, *EXTRA_AUS) if a in names]
    qa = [c for c in names if c.startswith("qa_") and c != "qa_blendshapes"]
    sel = light.filter(pc.is_in(light.column("identity"), pa.array(ids, pa.int64())))
    keep = [c for c in sel.column_names if c not in ("qa_blendshapes", "shape_params",
                                                      "expression_params", "prompt")]
    by_id: dict[int, list[dict]] = {}
    for r in sel.select(keep).to_pylist():
        by_id.setdefault(int(r["identity"]), []).append(r)
    out = []
    for ident in ids:
        rows = by_id.get(ident, [])
        if not rows:
            continue
        frames = [_frame(r, aus, qa) for r in pick_frames(rows)]
        for k, f in enumerate(frames):  # file names of our own: sample ids are anyone's text
            f["file"] = f"{ident}-{k:03d}.jpg"
        first = rows[0]
        out.append({"identity": ident, "total_frames": len(rows), "frames": frames,
                    "groups": {g: first.get(g) for g in GROUP_COLS},
                    "scene": {c: _num(first.get(c), 2) for c in SCENE_COLS
                              if first.get(c) is not None},
                    "peak_pspi": max(f["pspi"] for f in frames),
                    "thumb": _thumb(frames)["file"]})
    return out


def _small_jpeg(blob: bytes, size: int, path: Path) -> None:
    im = Image.open(io.BytesIO(blob)).convert("RGB")
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    im.save(path, "JPEG", quality=85)


def write_images(dataset: str, entries: list[dict], folder: Path, size: int,
                 progress=None) -> int:
    """``frames/<sample_id>.jpg`` and ``heatmaps/<sample_id>.jpg`` for every shown frame,
    streamed identity by identity; ``progress(1)`` after each identity. Returns files written."""
    from pipelines.layout3dpain import iter_frames

    (folder / "frames").mkdir()
    (folder / "heatmaps").mkdir()
    written = 0
    for e in entries:
        shown = {f["id"]: f["file"] for f in e["frames"]}
        for batch in iter_frames(dataset, [e["identity"]]):
            cols = batch.select(["sample_id", "image", "heatmap"]).to_pydict()
            for sid, img, heat in zip(cols["sample_id"], cols["image"], cols["heatmap"]):
                if sid not in shown:
                    continue
                _small_jpeg(img, size, folder / "frames" / shown[sid])
                written += 1
                if heat is not None:
                    _small_jpeg(heat, size, folder / "heatmaps" / shown[sid])
                    written += 1
        if progress:
            progress(1)
    return written
