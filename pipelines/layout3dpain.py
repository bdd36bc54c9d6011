"""pain3d's export in a 3D-Pain-style layout, and reading either layout for training.

Export::

    images/<id>_neutral_<view>.png  images/<id>_<expr>_<view>.png
    heatmaps/<id>_<expr>_<view>.png
    annotations/<id>_<expr>.json     (one per pain expression: AU intensities, PSPI, ...)
    textured_meshes/<id>/...

Reading (the authors' release as published, and this export) is pipelines/release3dpain.py
(name rules, bundles) and pipelines/import3dpain.py (frames tables, the import job).
Annotations are read tolerantly: AU keys like "AU04" or "au4", "PSPI" or "pspi".
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
                                            "prompt", "seed")


def check_image(data, what: str, fix: str) -> tuple[int, int]:
    """Decodes an image's bytes whole (a truncated or garbage file fails here, named) and
    returns its size."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.size
    except Exception as err:  # noqa: BLE001 - PIL raises many kinds for a bad file
        raise ValueError(f"{what} is not a readable image ({str(err).splitlines()[0]}); "
                         f"{fix}") from err


def _yaws(src: storage.Location) -> dict[tuple[int, int], dict[str, float]]:
    """(identity, expression) -> {view: yaw}: an annotation covers all views of a frame."""
    t = read_frames(src, ["identity", "expression", "view", "yaw_deg"])
    out: dict[tuple[int, int], dict[str, float]] = {}
    for i, e, v, y in zip(*(t.column(c).to_pylist() for c in ("identity", "expression", "view",
                                                              "yaw_deg"))):
        out.setdefault((i, e), {})[str(v)] = y
    return out


def export_3dpain(dataset: str, out: str, overwrite: bool = False, progress=None) -> dict:
    src = storage.resolve(dataset)
    dest = Path(out)
    # --overwrite is the user's word: any sealed pain3d folder holding only its own files
    guard.check_output_folder(out, [dataset], overwrite, kind="export", any_kind=True)
    if src.fs.get_file_info(src.join("frames")).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{dataset} has no frames/ folder; is it a pain3d dataset?")
    counts = {"images": 0, "heatmaps": 0, "annotations": 0, "meshes": 0}
    yaws = _yaws(src)
    with guard.whole_folder(out, "export", [dataset], any_kind=True) as tmp:
        for sub in ("images", "heatmaps", "annotations", "textured_meshes"):
            (tmp / sub).mkdir(parents=True)
        for batch in frames_dataset(src).to_batches(batch_size=99):
            for r in batch.to_pylist():
                ident, e, v = r["identity"], r["expression"], r["view"]
                stem = f"{ident:06d}_neutral_{v}" if e == 0 else f"{ident:06d}_{e:02d}_{v}"
                fix = f"re-run pain3d generate on {dataset} after deleting its shard"
                for col in ("image", "heatmap") if e > 0 else ("image",):
                    check_image(r[col], f"the {col} of frame {r['sample_id']}", fix)
                (tmp / "images" / f"{stem}.png").write_bytes(r["image"])
                counts["images"] += 1
                if e > 0:
                    (tmp / "heatmaps" / f"{stem}.png").write_bytes(r["heatmap"])
                    counts["heatmaps"] += 1
                    ann = tmp / "annotations" / f"{ident:06d}_{e:02d}.json"
                    if not ann.exists():
                        a = {k: r[k] for k in ANNOTATION_KEYS if k in r}
                        # each view's own yaw (one file serves every view of the expression)
                        a.update(identity=ident, expression=e, yaw_deg_by_view=yaws[(ident, e)])
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
    return counts


def _au_key(k: str) -> str | None:
    m = re.fullmatch(r"au_?0*(\d+)", k.strip().lower())
    return f"AU{int(m.group(1))}" if m else None


def _number(v, key: str, p: Path) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = float("nan")
    if not np.isfinite(x):
        raise ValueError(f"annotation {p}: {key} is {json.dumps(v)}, not a number; fix or "
                         "remove that file")
    return x


def normalise_annotation(a, p) -> dict:
    if not isinstance(a, dict):
        raise ValueError(f"annotation {p} holds a JSON {type(a).__name__}, not an object of AU "
                         "intensities; fix or remove that file")
    out = {}
    for k, v in a.items():
        au = _au_key(k)
        if au:
            out[au] = _number(v, k, p)
        elif k.lower() == "pspi":
            out["pspi"] = int(round(_number(v, k, p)))
        else:
            out[k] = v
    return out


MISSING_HEATMAPS = ("error", "skip")


class MissingHeatmap(ValueError):
    pass


def _yaw(a: dict, view: int) -> float:
    """The frame's yaw: its view's entry of ``yaw_deg_by_view`` (pain3d's exports); an older
    export's single ``yaw_deg`` is view 0's, so other views' yaw is unknown (NaN)."""
    by_view = a.get("yaw_deg_by_view")
    if isinstance(by_view, dict):
        y = by_view.get(str(view))
    else:
        y = a.get("yaw_deg") if view == 0 else None
    try:
        return float(y) if y is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def read_3dpain(folder: str | Path, missing: str = "error") -> pa.Table:
    """A release folder (the authors' layout or pain3d's export) -> the frames table."""
    from pipelines.import3dpain import read_release

    return read_release(folder, missing)


def _full_mask(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h), 255).save(buf, format="PNG")
    return buf.getvalue()


def is_3dpain_layout(path: str) -> bool:
    """A release folder read in place: pain3d's export (images/ + annotations/) or the
    authors' unpacked layout (meshes_inpainted/ + annotations/)."""
    p = Path(path)
    return not path.startswith("s3://") and (p / "annotations").is_dir() and (
        (p / "images").is_dir() or (p / "meshes_inpainted").is_dir())


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
    loc = frames_loc(path)
    ds = frames_dataset(loc)
    _require(path, ds.schema.names, columns)
    return read_frames(loc, columns, ds)


def require_columns(path: str, columns: list[str]) -> None:
    """Fails with one sentence when the dataset lacks any of ``columns``."""
    if not is_3dpain_layout(path):  # the 3DPain reader builds every column itself
        _require(path, _frames(path).schema.names, columns)


def frames_loc(path: str) -> storage.Location:
    loc = storage.resolve(path)
    if loc.fs.get_file_info(loc.join("frames")).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{path} holds neither frames/ (pain3d) nor a 3D-Pain release "
                                "(meshes_inpainted/ or images/, and annotations/); bundled "
                                "releases (.tar.gz) need pain3d import 3dpain first")
    return loc


def _frames(path: str):
    return frames_dataset(frames_loc(path))


def iter_frames(path: str, ids: list[int], batch: int = 64):
    """Record batches of the frames of ``ids`` only: a pain3d dataset's shards of those
    identities are streamed (a real dataset's images need not fit in memory)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from pipelines.tasks import shard_name

    if is_3dpain_layout(path):
        t = read_3dpain(path)
        yield from t.filter(pc.is_in(t.column("identity"), pa.array(ids, pa.int64()))
                            ).to_batches(max_chunksize=batch)
        return
    loc = frames_loc(path)
    paths = [loc.join("frames", shard_name(i)) for i in sorted(set(ids))]
    paths = [p for p in paths if loc.fs.get_file_info(p).type == pafs.FileType.File]
    if paths:
        yield from pads.dataset(paths, filesystem=loc.fs, format="parquet").to_batches(
            batch_size=batch)


def load_frames(path: str) -> pa.Table:
    """Frames table from a pain3d dataset (frames/*.parquet) or a 3DPain-layout folder."""
    if is_3dpain_layout(path):
        return read_3dpain(path)
    return read_frames(frames_loc(path))
