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


_STEM = re.compile(r"^(?P<id>.+?)_(?P<expr>neutral|\d+)(?:_(?P<view>\d+))?$")


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


def _normalise_annotation(a, p: Path) -> dict:
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


def _index(root: Path) -> tuple[dict, dict[str, list[Path]], dict[str, int]]:
    """(annotations by (name, expression), image paths by identity name, name -> identity)."""
    for sub in ("images", "annotations"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"{root} is not a 3DPain-layout folder: {sub}/ is missing")
    ann = {}
    for p in sorted((root / "annotations").glob("*.json")):
        m = _STEM.match(p.stem)
        if not m:
            continue
        try:
            a = json.loads(p.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"annotation {p} is not valid JSON ({e})") from e
        ann[(m["id"], int(m["expr"]))] = _normalise_annotation(a, p)
    images: dict[str, list[Path]] = {}
    for p in sorted((root / "images").glob("*.png")):
        if (m := _STEM.match(p.stem)):
            images.setdefault(m["id"], []).append(p)
    names = sorted(images)
    numeric = all(re.search(r"\d+", n) for n in names)
    ids = {n: (int(re.findall(r"\d+", n)[-1]) if numeric else k) for k, n in enumerate(names)}
    if len(set(ids.values())) != len(ids):
        ids = {n: k for k, n in enumerate(names)}
    return ann, images, ids


def _heatmap(root: Path, name: str, expr: str, stem: str, missing: str) -> Path | None:
    """The frame's heatmap: one per view (heatmaps/<stem>.png, as pain3d exports) or one per
    pain expression (heatmaps/<id>_<expr>.png, as the authors release). None: skip the frame."""
    for cand in (root / "heatmaps" / f"{stem}.png", root / "heatmaps" / f"{name}_{expr}.png"):
        if cand.is_file():
            return cand
    if missing == "skip":
        return None
    raise MissingHeatmap(
        f"pain frame images/{stem}.png has no heatmap (neither heatmaps/{stem}.png nor "
        f"heatmaps/{name}_{expr}.png); restore it, or run pain3d import 3dpain ROOT --out DIR "
        "--missing-heatmaps skip to leave such frames out (counted)")


def identity_table(root: Path, name: str, ident: int, ann: dict, paths: list[Path],
                   missing: str = "error") -> tuple[pa.Table, list[str]]:
    """One identity's frames (FRAME_SCHEMA) and the pain frames skipped for lack of a
    heatmap (``missing='skip'``)."""
    rows: dict[str, list] = {f.name: [] for f in FRAME_SCHEMA}
    any_ann = next((v for (n, _), v in ann.items() if n == name), {})
    skipped = []
    for p in paths:
        m = _STEM.match(p.stem)
        view = int(m["view"] or 0)
        e = 0 if m["expr"] == "neutral" else int(m["expr"])
        a = ann.get((name, e), {}) if e else {}
        if e and not a:
            raise ValueError(f"{p.name} has no annotation {name}_{m['expr']}.json")
        heat = _heatmap(root, name, m["expr"], p.stem, missing) if e else None
        if e and heat is None:
            skipped.append(f"images/{p.name}")
            continue
        _append(rows, p, ident, e, view, a, any_ann, heat)
    return table_from_rows(rows), skipped


def _append(rows: dict, p: Path, ident: int, e: int, view: int, a: dict, any_ann: dict,
            heat: Path | None) -> None:
    aus = {k: float(a.get(k, 0.0)) for k in PSPI_COLS + EXTRA_COLS}
    image = p.read_bytes()
    fix = "restore that file from the release, or remove the frame"
    w, h = check_image(image, str(p), fix)
    heat_bytes = heat.read_bytes() if heat else None
    if heat_bytes is not None:
        check_image(heat_bytes, str(heat), fix)
    rows["sample_id"].append(sample_id(ident, e, view))
    rows["identity"].append(ident)
    rows["expression"].append(e)
    rows["view"].append(view)
    rows["yaw_deg"].append(_yaw(a or any_ann, view))
    for k in PSPI_COLS + EXTRA_COLS:
        rows[k].append(aus[k])
    rows["pspi"].append(int(a.get("pspi", round(pspi_of(aus)))) if e else 0)
    for k in ("age_group", "gender", "ethnicity", "prompt"):
        rows[k].append(str(a.get(k, any_ann.get(k, "unknown"))))
    seed = a.get("seed", any_ann.get("seed", -1))
    rows["seed"].append(int(seed) if isinstance(seed, (int, float)) and np.isfinite(seed) else -1)
    rows["image"].append(image)
    rows["heatmap"].append(heat_bytes)
    rows["mask"].append(_full_mask(w, h))
    rows["shape_params"].append([])
    rows["expression_params"].append([aus[k] for k in PSPI_COLS + EXTRA_COLS])
    rows["neutral_sample_id"].append(sample_id(ident, 0, view))
    rows["face_model"].append("3dpain-release")


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
    """A 3DPain-layout folder -> the frames table (FRAME_SCHEMA). A pain frame without a
    heatmap is an error (``missing='error'``) or left out (``'skip'``)."""
    root = Path(folder)
    ann, images, ids = _index(root)
    parts = [identity_table(root, n, ids[n], ann, images[n], missing)[0] for n in sorted(images)]
    return pa.concat_tables(parts) if parts else table_from_rows(
        {f.name: [] for f in FRAME_SCHEMA})


def import_3dpain(folder: str, out: str, missing: str = "error", overwrite: bool = False,
                  progress=None, start=None) -> dict:
    """``pain3d import 3dpain``: one shard per identity, atomically; a re-run skips finished
    identities. ``start(n)`` learns the number of identities, ``progress(1)`` each one done.
    Returns the manifest (with the skipped frames counted)."""
    from pipelines import importers
    from pipelines.manifest import build_manifest

    if missing not in MISSING_HEATMAPS:
        raise ValueError(f"--missing-heatmaps must be one of {MISSING_HEATMAPS}, got {missing!r}")
    root = Path(folder)
    ann, images, ids = _index(root)
    if not images:
        raise FileNotFoundError(f"{root} holds no frames: images/ has no <id>_<expression>_"
                                "<view>.png; point it at the release's root folder")
    if missing == "error":  # every heatmap is looked for before anything is written
        for name, paths in images.items():
            for p in paths:
                m = _STEM.match(p.stem)
                if m["expr"] != "neutral":
                    _heatmap(root, name, m["expr"], p.stem, missing)
    settings = {"source": "3dpain-release", "root": str(root.resolve()),
                "missing_heatmaps": missing}
    if start:
        start(len(images))
    with importers.session(out, settings, [folder], overwrite) as (loc, done):
        for name in sorted(images):
            if ids[name] not in done:
                table, skipped = identity_table(root, name, ids[name], ann, images[name], missing)
                importers.write_identity(loc, ids[name], table, {
                    "identity": ids[name], "name": name, "frames": table.num_rows,
                    "skipped": {"no heatmap": skipped} if skipped else {}})
            if progress:
                progress(1)
    m = build_manifest(loc, {"import": settings}, "")
    m.update({"source": "3dpain-release", "import": settings,
              "skipped": importers.fold_skips(importers.summaries(loc))})
    guard.write_record(loc, "manifest.json", m)
    return m


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
        raise FileNotFoundError(f"{path} holds neither frames/ (pain3d) nor images/ + "
                                "annotations/ (3DPain layout)")
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
