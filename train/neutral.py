"""Neutral reference frames (``train.model.neutral_reference``).

Every row names its neutral frame (``neutral_sample_id``: in a generated dataset the same
identity and view at rest; in an UNBC import the sequence's first frame, label-free). Training
reads that frame's image beside each row (:func:`attach`). Evaluation with
``train.eval.neutral_shots: N`` averages the model's answers over N references of the same
identity (:func:`shot_ids`): the row's own first, then the identity's other reference frames
(other views or sequences) in a seeded order. A row without a neutral_sample_id is its own
reference.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# the neutral frame's columns beside each row, as decoding needs them
COLUMNS = {"image": "neutral_image", "head_box": "neutral_head_box", "mask": "neutral_mask"}


def reference_ids(table: pa.Table) -> list[str]:
    """Each row's neutral frame: its neutral_sample_id, or the row itself when null."""
    own = table.column("sample_id").to_pylist()
    if "neutral_sample_id" not in table.column_names:
        return own
    return [n if n is not None else s for n, s in
            zip(table.column("neutral_sample_id").to_pylist(), own)]


def _frames_of(data: str, identities: list[int], ids: list[str], columns: list[str]) -> pa.Table:
    """The frames ``ids`` of these identities, read from the dataset (their shards only)."""
    from pipelines.layout3dpain import iter_frames

    parts = [rb.select(columns) for rb in iter_frames(data, identities)]
    t = pa.Table.from_batches(parts) if parts else None
    if t is None:
        return pa.table({c: [] for c in columns})
    return t.filter(pc.is_in(t.column("sample_id"), pa.array(sorted(set(ids)), pa.string())))


def attach(batch: pa.Table, data: str) -> pa.Table:
    """``batch`` with its rows' neutral frames' image, head box and mask beside them. The
    frames are looked up in the batch (a generated shard holds its identity's neutral frames)
    and else read from the identities' shards."""
    refs = reference_ids(batch)
    cols = ["sample_id"] + [c for c in COLUMNS if c in batch.column_names]
    pool = batch.select(cols)
    have = set(pool.column("sample_id").to_pylist())
    missing = sorted(set(refs) - have)
    if missing:
        idents = sorted(set(batch.column("identity").to_pylist()))
        pool = pa.concat_tables([pool, _frames_of(data, idents, missing, cols).cast(pool.schema)])
    where = {sid: i for i, sid in enumerate(pool.column("sample_id").to_pylist())}
    absent = [r for r in refs if r not in where]
    if absent:
        raise ValueError(f"a frame names neutral_sample_id {absent[0]!r}, which is not in its "
                         f"identity's frames in {data}; re-generate or re-import the dataset, or "
                         "turn train.model.neutral_reference off")
    take = pa.array([where[r] for r in refs], pa.int64())
    for src, dst in COLUMNS.items():
        if src in cols:
            batch = batch.append_column(dst, pool.column(src).take(take))
    return batch


def shot_ids(own: str, pool: list[str], shots: int, seed: int = 0) -> list[str]:
    """Up to ``shots`` references for a row: its own, then the pool's others in an order
    seeded by (seed, the row's reference), so a row's references do not depend on the batch."""
    others = [p for p in pool if p != own]
    rng = np.random.default_rng([seed, int.from_bytes(own.encode()[-8:], "little")])
    return [own] + [others[i] for i in rng.permutation(len(others))][:max(0, shots - 1)]


def identity_tables(data: str, ids: list[int]):
    """(identity, its frames) one identity at a time: its reference frames are among them."""
    from pipelines.layout3dpain import is_3dpain_layout, iter_frames, read_3dpain

    if is_3dpain_layout(data):  # one folder scan, not one per identity
        t = read_3dpain(data)
        for i in sorted(set(ids)):
            yield i, t.filter(pc.equal(t.column("identity"), i))
        return
    for i in sorted(set(ids)):
        parts = list(iter_frames(data, [i]))
        if parts:
            yield i, pa.Table.from_batches(parts)


def shot_batches(table: pa.Table, decode, shots: int, batch: int = 64):
    """Decoded batches of one identity's frames, each with ``neutral_shots`` (B, K, 3, S, S):
    K = min(shots, the identity's reference frames), every row's references by
    :func:`shot_ids`. ``decode``: a pydict of rows -> decoded arrays (``image`` among them)."""
    refs = reference_ids(table)
    pool = sorted(set(refs))
    row_of = {sid: i for i, sid in enumerate(table.column("sample_id").to_pylist())}
    absent = [r for r in pool if r not in row_of]
    if absent:
        raise ValueError(f"a frame names neutral_sample_id {absent[0]!r}, which is not among "
                         "its identity's frames; re-generate or re-import the dataset")
    ref_images = decode(table.take(pa.array([row_of[r] for r in pool], pa.int64())).to_pydict())
    image_of = dict(zip(pool, ref_images["image"]))
    for lo in range(0, table.num_rows, batch):
        b = decode(table.slice(lo, batch).to_pydict())
        b["neutral_shots"] = np.stack([np.stack([image_of[r] for r in shot_ids(own, pool, shots)])
                                       for own in refs[lo:lo + batch]])
        yield b
