"""``pain3d import 3dpain``: the release (pipelines/release3dpain.py finds its files) as
pain3d frames tables, one shard per identity, written by a Ray Data job.

The job reads each bundle once, as a stream (one task per bundle; plain files in chunks),
groups the files by subject and writes each subject's shard where its group lands.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from faces.au import pspi as pspi_of
from pipelines import guard, importers, storage
from pipelines.layout3dpain import (MISSING_HEATMAPS, MissingHeatmap, _full_mask, _yaw,
                                    check_image)
from pipelines.release3dpain import Frame, Index, identity_numbers, read_refs, report, scan
from pipelines.tasks import EXTRA_COLS, FRAME_SCHEMA, PSPI_COLS, sample_id, table_from_rows

CHUNK = 64  # plain files per read task


def check(idx: Index, missing: str) -> None:
    """Before anything is written: every pain frame has its annotation, and (``missing=
    'error'``) its heatmap."""
    if missing not in MISSING_HEATMAPS:
        raise ValueError(f"--missing-heatmaps must be one of {MISSING_HEATMAPS}, got {missing!r}")
    if not idx.frames:
        raise FileNotFoundError(
            f"{idx.root} holds no frames (no image matches the release's names, e.g. "
            "meshes_inpainted/flame_sample_0000_pain_1_textured_view_000_inpainted.jpg or "
            "images/000001_01_0.png); point it at the release's root folder")
    for s, frames in sorted(idx.frames.items()):
        for f in frames:
            if not f.expression:
                continue
            if (s, f.expression) not in idx.annotations:
                raise ValueError(f"pain frame {f.ref.label} has no annotation ({s}_pain_"
                                 f"{f.expression}_annotations.json, or annotations/{s}_"
                                 f"{f.expression:02d}.json)")
            if missing == "error" and idx.heatmap(f) is None:
                raise MissingHeatmap(
                    f"pain frame {f.ref.label} has no heatmap (none named {s}_pain_"
                    f"{f.expression}_heatmap*, heatmaps/{s}_{f.expression:02d}[_<view>].png); "
                    "restore it, or run pain3d import 3dpain ROOT --out DIR --missing-heatmaps "
                    "skip to leave such frames out (counted)")


def subject_refs(idx: Index, subject: str) -> list:
    refs = []
    for f in idx.frames[subject]:
        refs.append(f.ref)
        h = idx.heatmap(f) if f.expression else None
        if h is not None:
            refs.append(h)
    return refs


def subject_table(idx: Index, subject: str, ident: int, blobs: dict[str, bytes],
                  missing: str = "error") -> tuple[pa.Table, list[str]]:
    """One subject's frames (FRAME_SCHEMA) from the bytes of its files, and the pain frames
    left out for lack of a heatmap."""
    rows: dict[str, list] = {f.name: [] for f in FRAME_SCHEMA}
    mine = {e: a for (s, e), a in idx.annotations.items() if s == subject}
    any_ann = next(iter(mine.values()), {})
    frames = sorted(idx.frames[subject], key=lambda f: (f.expression, f.view))
    neutral_views = [f.view for f in frames if f.expression == 0]
    skipped = []
    for f in frames:
        heat = idx.heatmap(f) if f.expression else None
        if f.expression and heat is None:
            if missing != "skip":
                raise MissingHeatmap(f"pain frame {f.ref.label} has no heatmap")
            skipped.append(f.ref.label)
            continue
        ref_view = f.view if f.view in neutral_views or not neutral_views else neutral_views[0]
        _append(rows, f, ident, mine.get(f.expression, {}), any_ann, blobs[f.ref.label],
                blobs[heat.label] if heat else None, ref_view)
    return table_from_rows(rows), skipped


def _append(rows: dict, f: Frame, ident: int, a: dict, any_ann: dict, image: bytes,
            heat: bytes | None, neutral_view: int) -> None:
    e = f.expression
    aus = {k: float(a.get(k, 0.0)) for k in PSPI_COLS + EXTRA_COLS} if e else dict.fromkeys(
        PSPI_COLS + EXTRA_COLS, 0.0)
    fix = "restore that file from the release, or remove the frame"
    w, h = check_image(image, f.ref.label, fix)
    if heat is not None:
        check_image(heat, f"the heatmap of {f.ref.label}", fix)
    rows["sample_id"].append(sample_id(ident, e, f.view))
    rows["identity"].append(ident)
    rows["expression"].append(e)
    rows["view"].append(f.view)
    rows["yaw_deg"].append(_yaw(a or any_ann, f.view))
    for k in PSPI_COLS + EXTRA_COLS:
        rows[k].append(aus[k])
    rows["pspi"].append(int(a.get("pspi", round(pspi_of(aus)))) if e else 0)
    for k in ("age_group", "gender", "ethnicity", "prompt"):
        rows[k].append(str(a.get(k, any_ann.get(k, "unknown"))))
    seed = a.get("seed", any_ann.get("seed", -1))
    rows["seed"].append(int(seed) if isinstance(seed, (int, float)) and np.isfinite(seed) else -1)
    rows["image"].append(image)
    rows["heatmap"].append(heat)
    rows["mask"].append(_full_mask(w, h))
    rows["shape_params"].append([])
    rows["expression_params"].append([aus[k] for k in PSPI_COLS + EXTRA_COLS])
    rows["neutral_sample_id"].append(sample_id(ident, 0, neutral_view))
    rows["face_model"].append("3dpain-release")


def read_release(folder: str | Path, missing: str = "error") -> pa.Table:
    """The whole release as one frames table, in this process (for small folders read in
    place by ``train --data``; ``pain3d import 3dpain`` is the way for the full release)."""
    idx = scan(folder)
    check(idx, missing)
    ids = identity_numbers(idx.frames)
    parts = [subject_table(idx, s, ids[s], read_refs(subject_refs(idx, s)), missing)[0]
             for s in sorted(idx.frames)]
    return pa.concat_tables(parts)


def _sources(idx: Index, subjects: list[str]) -> list[dict]:
    """Read tasks: one per bundle (all its wanted members), plain files in chunks."""
    bundles: dict[str, list] = {}
    plain = []
    for s in subjects:
        for r in subject_refs(idx, s):
            (bundles.setdefault(r.path, []) if r.member else plain).append((s, r))
    items = [{"pairs": [(s, r.path, r.member) for s, r in pairs]} for pairs in bundles.values()]
    for k in range(0, len(plain), CHUNK):
        items.append({"pairs": [(s, r.path, r.member) for s, r in plain[k:k + CHUNK]]})
    return items


def _read_task(item: dict) -> list[dict]:
    from pipelines.release3dpain import Ref

    refs = [Ref(p, m) for _, p, m in item["pairs"]]
    blobs = read_refs(refs)
    return [{"subject": s, "label": r.label, "data": blobs[r.label]}
            for (s, _, _), r in zip(item["pairs"], refs)]


def _write_task(group: dict, idx: Index, ids: dict, out: str, missing: str) -> dict:
    subject = str(group["subject"][0])
    blobs = {str(k): bytes(v) for k, v in zip(group["label"], group["data"])}
    table, skipped = subject_table(idx, subject, ids[subject], blobs, missing)
    importers.write_identity(storage.resolve(out), ids[subject], table, {
        "identity": ids[subject], "name": subject, "frames": table.num_rows,
        "skipped": {"no heatmap": skipped} if skipped else {}})
    return {"subject": np.array([subject], dtype=object)}


def import_3dpain(folder: str, out: str, missing: str = "error", overwrite: bool = False,
                  progress=None, start=None) -> dict:
    """``pain3d import 3dpain``: a Ray Data job writing one shard per identity, atomically;
    a re-run skips finished identities. ``start(n)`` learns the number of identities,
    ``progress(1)`` each one done. Returns the manifest (skips and unmatched files counted)."""
    import ray

    from pipelines.manifest import build_manifest

    idx = scan(folder)
    check(idx, missing)
    ids = identity_numbers(idx.frames)
    settings = {"source": "3dpain-release", "root": str(Path(folder).resolve()),
                "missing_heatmaps": missing}
    if start:
        start(len(ids))
    with importers.session(out, settings, [folder], overwrite) as (loc, done):
        todo = [s for s in sorted(ids) if ids[s] not in done]
        if progress:
            progress(len(ids) - len(todo))
        if todo:
            ds = ray.data.from_items(_sources(idx, todo))
            ds = ds.flat_map(_read_task).groupby("subject").map_groups(
                _write_task, fn_kwargs={"idx": idx, "ids": ids, "out": out, "missing": missing})
            for _ in ds.iter_rows():
                if progress:
                    progress(1)
    found = report(idx)
    m = build_manifest(loc, {"import": settings}, "")
    m.update({"source": "3dpain-release", "import": settings, "files": found,
              "skipped": importers.fold_skips(importers.summaries(loc))})
    guard.write_record(loc, "manifest.json", m)
    return m


def subject_ids(data: str) -> dict[str, int]:
    """Subject name -> identity of a dataset: an import's per-identity records, or (a
    release folder read in place) the release's own numbering."""
    from pipelines.layout3dpain import is_3dpain_layout

    if is_3dpain_layout(data):
        return identity_numbers(scan(data).frames)
    loc = storage.resolve(data)
    out = {s["name"]: int(s["identity"]) for s in importers.summaries(loc) if "name" in s}
    if not out:
        raise ValueError(f"{data} records no subject names (it was not made by pain3d import "
                         "3dpain), so a split file cannot be matched to its identities")
    return out


def split_from_file(data: str, path: str) -> dict:
    """The authors' split CSV (``annotation_base_name,split``; 0 train, 1 val, 2 test; one
    row per pain expression) as this dataset's identity split, with where it came from."""
    import csv
    import hashlib

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--split-file {path} is not there")
    try:
        rows = list(csv.DictReader(p.read_text().splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"--split-file {path} is not a CSV ({e})") from None
    if not rows or not {"annotation_base_name", "split"} <= set(rows[0]):
        raise ValueError(f"--split-file {path} needs the columns annotation_base_name,split "
                         "(as the authors' data/splits/*.csv)")
    part = {}
    for r in rows:
        base, k = r["annotation_base_name"].strip(), r["split"].strip()
        if k not in ("0", "1", "2"):
            raise ValueError(f"--split-file {path}: split {k!r} of {base} is not 0, 1 or 2")
        subject = base.split("_pain_")[0].split("_neutral")[0]
        if part.setdefault(subject, k) != k:
            raise ValueError(f"--split-file {path} puts subject {subject} in two splits; an "
                             "identity must be in one")
    ids = subject_ids(data)
    missing = sorted(set(ids) - set(part))
    if missing:
        raise ValueError(f"--split-file {path} has no row for {len(missing)} subject(s) of "
                         f"{data} (e.g. {missing[0]}); give the split file of this release")
    names = ("train", "val", "test")
    split = {n: sorted(i for s, i in ids.items() if part[s] == str(k))
             for k, n in enumerate(names)}
    split["source"] = {"split_file": str(p.resolve()),
                       "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                       "subjects_in_file_not_in_data": len(set(part) - set(ids))}
    return split
