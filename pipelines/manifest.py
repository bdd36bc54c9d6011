"""manifest.json: what the output folder holds, computed from the shards themselves."""
from __future__ import annotations

import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from faces.au import PSPI_MAX
from pipelines import storage

GROUP_COLS = ("age_group", "gender", "ethnicity")
CONTENT_EXCLUDE = {"generate": {"identities", "start", "out", "overwrite", "ray"}}
ENCODING_DEFAULTS = {"codec": "png", "png_level": 1}
RESOURCE_KEYS = {"num_gpus", "num_cpus", "batch_size", "concurrency", "max_concurrency"}


def content_config(cfg_dict: dict) -> dict:
    """The parts of the config that change what is generated (not where, how many, or on
    which resources): identities made under equal content configs are interchangeable."""
    out = json.loads(json.dumps(cfg_dict))
    for key in CONTENT_EXCLUDE["generate"]:
        out.get("generate", {}).pop(key, None)
    for key, default in ENCODING_DEFAULTS.items():  # absent from datasets made before the
        if out.get("generate", {}).get(key) == default:  # option: they stay resumable
            out["generate"].pop(key)
    for stage in out.get("generate", {}).get("stages", {}).values():
        for k in RESOURCE_KEYS:
            stage.pop(k, None)
    for section in list(out):
        if section not in ("seed", "face", "render", "heatmap", "pspi", "demographics",
                           "generate"):
            out.pop(section)
    return out


def code_version() -> str:
    try:
        version = metadata.version("pain3d")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{version}+{sha}" if sha else version


class CorruptShard(ValueError):
    """A shard that cannot be read; the message names it and how to regenerate it."""


def _corrupt(loc: storage.Location, e: Exception) -> CorruptShard:
    m = re.search(r"(identity=\d+\.parquet)", str(e))
    what = f"shard frames/{m.group(1)}" if m else "a shard under frames/"
    return CorruptShard(f"{what} of {loc.uri} is unreadable (truncated or corrupt); re-run "
                        "pain3d generate with the same --out and config to regenerate it")


def frames_dataset(loc: storage.Location) -> pads.Dataset:
    # pyarrow skips names starting with '.' or '_': in-flight temporaries are never read
    try:
        return pads.dataset(loc.join("frames"), filesystem=loc.fs, format="parquet")
    except pa.ArrowInvalid as e:
        raise _corrupt(loc, e) from e


def read_frames(loc: storage.Location, columns: list[str] | None = None,
                ds: pads.Dataset | None = None) -> pa.Table:
    """The frames table (or some columns) of ``ds`` (default: the dataset at ``loc``), a
    truncated shard named with its fix."""
    try:
        return (ds or frames_dataset(loc)).to_table(columns=columns)
    except pa.ArrowInvalid as e:
        raise _corrupt(loc, e) from e


def build_manifest(loc: storage.Location, cfg_dict: dict, content_hash: str) -> dict:
    from pipelines.qa_report import QA_READ_COLUMNS, qa_summary

    ds = frames_dataset(loc)
    cols = ["sample_id", "identity", "pspi"] + list(GROUP_COLS)
    cols += [c for c in QA_READ_COLUMNS if c in ds.schema.names]  # older datasets lack QA
    t = read_frames(loc, cols, ds)
    ident = np.asarray(t.column("identity"))
    expr = np.asarray(t.column("expression"))
    pspi = np.asarray(t.column("pspi"), int)
    n_unique = len(pc.unique(t.column("sample_id")))
    per_group = {}
    firsts = np.unique(ident, return_index=True)[1]
    for col in GROUP_COLS:
        vals = np.asarray(t.column(col).to_pylist(), dtype=object)
        ids_vals, counts = np.unique(vals[firsts], return_counts=True)
        per_group[col] = {str(k): int(c) for k, c in zip(ids_vals, counts)}
    return {
        "format": "pain3d-frames/1",
        "config": cfg_dict,
        "config_hash": content_hash,
        "code_version": code_version(),
        "counts": {
            "identities": int(len(np.unique(ident))),
            "frames": int(t.num_rows),
            "heatmaps": int(np.sum(expr > 0)),
            "pain_frames": int(np.sum(expr > 0)),
            "neutral_frames": int(np.sum(expr == 0)),
            "duplicate_sample_ids": int(t.num_rows - n_unique),
        },
        "identities_per_group": per_group,
        "pspi_histogram": {"frames": np.bincount(pspi, minlength=PSPI_MAX + 1).tolist(),
                           "heatmaps": np.bincount(pspi[expr > 0],
                                                   minlength=PSPI_MAX + 1).tolist()},
        "identity_range": [int(ident.min()), int(ident.max())] if len(ident) else [],
        "qa": qa_summary(t),
    }
