"""What the dataset importers (``pain3d import unbc | 3dpain``) share: the output folder's
checks, one Parquet shard per identity written atomically with its summary beside it (so a
re-run skips finished identities and still reports what they skipped), and the summaries
folded into counts, one warning line per kind of skip.

Output folder: ``frames/identity=<i>.parquet`` (the frames table, as ``pain3d generate``
writes it), ``import/identity=<i>.json`` (each identity's counts), ``import.json`` (what was
imported, with which settings) and ``manifest.json``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections import Counter

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines import guard, storage
from pipelines.generate import finished_identities
from pipelines.tasks import shard_name

log = logging.getLogger(__name__)
OWN = ("frames", "import", "import.json", "manifest.json")


class ImportConflict(ValueError):
    """The output folder holds something an import must not mix with or overwrite."""


def prepare(out: str, settings: dict, inputs: list[str], overwrite: bool
            ) -> tuple[storage.Location, bool, bool]:
    """Checks ``out`` and records ``settings`` there: (location, fresh, made_root). A folder
    with an import of other settings is refused unless ``overwrite``, which replaces it."""
    for inp in inputs:
        if guard.contains(out, inp) or guard.contains(inp, out):
            raise ImportConflict(f"--out {out} {'holds' if guard.contains(out, inp) else 'is inside'}"
                                 f" the input {inp}; choose a folder outside it")
    loc = storage.resolve(out)
    made_root = not loc.is_s3 and not os.path.exists(loc.root)
    storage.check_writable(loc)
    guard.claim_names(loc, OWN, out)
    prior = guard.read_record(loc, "import.json")
    guard.read_record(loc, "manifest.json")  # a manifest.json of the user's is refused
    if prior is not None and prior != settings and not overwrite:
        changed = sorted(k for k in set(prior) | set(settings) if prior.get(k) != settings.get(k))
        raise ImportConflict(f"{out} holds an import made with other settings ({', '.join(changed)}"
                             "); pass --overwrite to replace it or choose another --out")
    if prior is None and guard.read_record(loc, "run.json") is not None:
        raise ImportConflict(f"{out} holds a generated dataset; choose another --out")
    guard.mark_root(loc, "dataset")
    if overwrite:
        guard.guarded_delete(loc, list(OWN), inputs)
    guard.write_record(loc, "import.json", settings)
    return loc, prior is None or overwrite, made_root


@contextlib.contextmanager
def session(out: str, settings: dict, inputs: list[str], overwrite: bool):
    """:func:`prepare`, then (location, finished identities) for the import's body; a first
    import that fails or is interrupted is abandoned (:func:`abandon`)."""
    loc, fresh, made_root = prepare(out, settings, inputs, overwrite)
    try:
        yield loc, finished(loc)
    except BaseException:
        if fresh:
            abandon(loc, made_root, inputs)
        raise


def finished(loc: storage.Location) -> set[int]:
    """Identities whose shard (readable) and summary are both in place."""
    done = finished_identities(loc, check=True)
    have = set(storage.list_files(loc, "import", ".json"))
    return {i for i in done if f"identity={i:06d}.json" in have}


def write_identity(loc: storage.Location, ident: int, table: pa.Table, summary: dict) -> None:
    """The identity's summary, then its shard: the shard's presence marks it finished."""
    storage.write_json(loc, f"import/identity={ident:06d}.json", summary)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(loc, f"frames/{shard_name(ident)}", buf.getvalue().to_pybytes())


def summaries(loc: storage.Location) -> list[dict]:
    return [storage.read_json(loc, f"import/{n}") for n in storage.list_files(loc, "import",
                                                                             ".json")]


def fold_skips(parts: list[dict]) -> dict[str, dict]:
    """{kind: {"frames": n, "example": path}} over the identities' ``skipped`` lists."""
    count, example = Counter(), {}
    for s in parts:
        for kind, paths in s.get("skipped", {}).items():
            count[kind] += len(paths)
            if paths:
                example.setdefault(kind, paths[0])
    return {k: {"frames": count[k], "example": example.get(k)} for k in sorted(count)}


def warn_skips(skips: dict[str, dict], stream=None) -> None:
    """One line per kind of skipped frame (stderr)."""
    for kind, s in skips.items():
        print(f"warning: skipped {s['frames']} frame(s) with {kind} (e.g. {s['example']})",
              file=stream or sys.stderr)


def abandon(loc: storage.Location, made_root: bool, inputs: list[str]) -> None:
    """After a failed or interrupted first import that finished no identity: remove what it
    wrote, so no dataset-looking folder is left behind."""
    for rel in ("frames", "import"):
        guard.remove_temporaries(loc, rel)
    if finished(loc):
        return
    guard.guarded_delete(loc, list(OWN) + [guard.MARKER], inputs)
    if made_root:
        guard.remove_empty_dir(loc)
