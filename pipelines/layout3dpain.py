"""The 3DPain authors' release layout, both ways.

    images/<id>_neutral_<view>.png  images/<id>_<expr>_<view>.png
    heatmaps/<id>_<expr>_<view>.png
    annotations/<id>_<expr>.json     (one per pain expression: AU intensities, PSPI, ...)
    textured_meshes/<id>/...

The reader is tolerant of the published release's variations (AU keys like "AU04" or
"au4", "PSPI" or "pspi", a missing view index, non-numeric identity names), so training
works on our exports and on the authors' folder alike.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
from PIL import Image

from faces.au import pspi as pspi_of
from pipelines import guard, storage
from pipelines.manifest import frames_dataset, read_frames
from pipelines.tasks import EXTRA_COLS, FRAME_SCHEMA, PSPI_COLS, sample_id, table_from_rows

ANNOTATION_KEYS = PSPI_COLS + EXTRA_COLS + ("pspi", "age_group", "gender", "ethnicity",
                                            "prompt", "seed", "yaw_deg")


def export_3dpain(dataset: str, out: str, overwrite: bool = False, progress=None) -> dict:
    src = storage.resolve(dataset)
    dest = Path(out)
    guard.check_output_folder(out, [dataset], overwrite)
    if src.fs.get_file_info(src.join("frames")).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{dataset} has no frames/ folder; is it a pain3d dataset?")
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    counts = {"images": 0, "heatmaps": 0, "annotations": 0, "meshes": 0}
    try:
        for sub in ("images", "heatmaps", "annotations", "textured_meshes"):
            (tmp / sub).mkdir(parents=True)
        guard.mark_root(storage.resolve(str(tmp)), "export", owns_root=True)
        for batch in frames_dataset(src).to_batches(batch_size=99):
            for r in batch.to_pylist():
                ident, e, v = r["identity"], r["expression"], r["view"]
                stem = f"{ident:06d}_neutral_{v}" if e == 0 else f"{ident:06d}_{e:02d}_{v}"
                (tmp / "images" / f"{stem}.png").write_bytes(r["image"])
                counts["images"] += 1
                if e > 0:
                    (tmp / "heatmaps" / f"{stem}.png").write_bytes(r["heatmap"])
                    counts["heatmaps"] += 1
                    ann = tmp / "annotations" / f"{ident:06d}_{e:02d}.json"
                    if not ann.exists():
                        a = {k: r[k] for k in ANNOTATION_KEYS if k in r}
                        a.update(identity=ident, expression=e)
                        ann.write_text(json.dumps(a, indent=1))
                        counts["annotations"] += 1
            if progress:
                progress(batch.num_rows)
        meshes = src.join("textured_meshes")
        infos = src.fs.get_file_info(pafs.FileSelector(meshes, allow_not_found=True,
                                                               recursive=True))
        for info in infos:
            if info.type == pafs.FileType.File:
                rel = info.path[len(meshes):].lstrip("/")
                target = tmp / "textured_meshes" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with src.fs.open_input_stream(info.path) as f:
                    target.write_bytes(f.read())
                counts["meshes"] += 1
        if dest.exists():
            guard.guarded_delete(storage.resolve(out), "", [dataset])
        tmp.rename(dest)  # the export appears whole or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # this call's own temporary folder
        raise
    return counts


_STEM = re.compile(r"^(?P<id>.+?)_(?P<expr>neutral|\d+)(?:_(?P<view>\d+))?$")


def _au_key(k: str) -> str | None:
    m = re.fullmatch(r"au_?0*(\d+)", k.strip().lower())
    return f"AU{int(m.group(1))}" if m else None


def _normalise_annotation(a: dict) -> dict:
    out = {}
    for k, v in a.items():
        au = _au_key(k)
        if au:
            out[au] = float(v)
        elif k.lower() == "pspi":
            out["pspi"] = int(round(float(v)))
        else:
            out[k] = v
    return out


def read_3dpain(folder: str | Path) -> pa.Table:
    """A 3DPain-layout folder -> the frames table (FRAME_SCHEMA)."""
    root = Path(folder)
    for sub in ("images", "annotations"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"{root} is not a 3DPain-layout folder: {sub}/ is missing")
    ann = {}
    for p in sorted((root / "annotations").glob("*.json")):
        m = _STEM.match(p.stem)
        if not m:
            continue
        try:
            ann[(m["id"], int(m["expr"]))] = _normalise_annotation(json.loads(p.read_text()))
        except (ValueError, json.JSONDecodeError) as e:
            raise ValueError(f"annotation {p} is not valid JSON ({e})") from e
    names = sorted({m["id"] for p in (root / "images").glob("*.png")
                    if (m := _STEM.match(p.stem))})
    numeric = all(re.search(r"\d+", n) for n in names)
    ids = {n: (int(re.findall(r"\d+", n)[-1]) if numeric else k) for k, n in enumerate(names)}
    if len(set(ids.values())) != len(ids):
        ids = {n: k for k, n in enumerate(names)}
    rows: dict[str, list] = {f.name: [] for f in FRAME_SCHEMA}
    for p in sorted((root / "images").glob("*.png")):
        m = _STEM.match(p.stem)
        if not m:
            continue
        name, view = m["id"], int(m["view"] or 0)
        e = 0 if m["expr"] == "neutral" else int(m["expr"])
        a = ann.get((name, e), {}) if e else {}
        if e and not a:
            raise ValueError(f"{p.name} has no annotation {name}_{m['expr']}.json")
        any_ann = next((v for (n, _), v in ann.items() if n == name), {})
        ident = ids[name]
        aus = {k: float(a.get(k, 0.0)) for k in PSPI_COLS + EXTRA_COLS}
        heat = root / "heatmaps" / p.name if e else None
        if heat is not None and not heat.exists():
            heat = None
        image = p.read_bytes()
        try:
            with Image.open(io.BytesIO(image)) as im:
                w, h = im.size
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"{p} is not a readable PNG ({err})") from err
        rows["sample_id"].append(sample_id(ident, e, view))
        rows["identity"].append(ident)
        rows["expression"].append(e)
        rows["view"].append(view)
        rows["yaw_deg"].append(float(a.get("yaw_deg", any_ann.get("yaw_deg", np.nan))))
        for k in PSPI_COLS + EXTRA_COLS:
            rows[k].append(aus[k])
        rows["pspi"].append(int(a.get("pspi", round(pspi_of(aus)))) if e else 0)
        for k in ("age_group", "gender", "ethnicity", "prompt"):
            rows[k].append(str(a.get(k, any_ann.get(k, "unknown"))))
        rows["seed"].append(int(a.get("seed", any_ann.get("seed", -1))))
        rows["image"].append(image)
        rows["heatmap"].append(heat.read_bytes() if heat else None)
        rows["mask"].append(_full_mask(w, h))
        rows["shape_params"].append([])
        rows["expression_params"].append([aus[k] for k in PSPI_COLS + EXTRA_COLS])
        rows["neutral_sample_id"].append(sample_id(ident, 0, view))
        rows["face_model"].append("3dpain-release")
    return table_from_rows(rows)


def _full_mask(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h), 255).save(buf, format="PNG")
    return buf.getvalue()


def is_3dpain_layout(path: str) -> bool:
    p = Path(path)
    return not path.startswith("s3://") and (p / "images").is_dir() and (p / "annotations").is_dir()


def _require(path: str, have, columns) -> None:
    missing = [c for c in columns if c not in set(have)]
    if missing:
        raise ValueError(f"dataset {path} lacks the columns {', '.join(missing)}; it is not a "
                         "complete pain3d frames table (regenerate or re-export it)")


def load_frames_columns(path: str, columns: list[str]) -> pa.Table:
    """Only some columns (no image bytes) of either layout: for splits and statistics."""
    if is_3dpain_layout(path):
        t = read_3dpain(path)
        _require(path, t.column_names, columns)
        return t.select(columns)
    loc = _frames_loc(path)
    ds = frames_dataset(loc)
    _require(path, ds.schema.names, columns)
    return read_frames(loc, columns, ds)


def require_columns(path: str, columns: list[str]) -> None:
    """Fails with one sentence when the dataset lacks any of ``columns``."""
    if not is_3dpain_layout(path):  # the 3DPain reader builds every column itself
        _require(path, _frames(path).schema.names, columns)


def _frames_loc(path: str) -> storage.Location:
    loc = storage.resolve(path)
    if loc.fs.get_file_info(loc.join("frames")).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{path} holds neither frames/ (pain3d) nor images/ + "
                                "annotations/ (3DPain layout)")
    return loc


def _frames(path: str):
    return frames_dataset(_frames_loc(path))


def load_frames(path: str) -> pa.Table:
    """Frames table from a pain3d dataset (frames/*.parquet) or a 3DPain-layout folder."""
    if is_3dpain_layout(path):
        return read_3dpain(path)
    return read_frames(_frames_loc(path))
