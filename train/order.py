"""The training split held decoded in Ray's object store, and batches drawn from it in an
order that is a function of (seed, epoch, rank, world) and the sample ids alone.

With Ray Data's block shuffle and local shuffle buffer the order depends on how rows fall
into blocks, which changes with the columns a run reads and the options it has; so two
ablation rows with one seed would see different batches. Here every row's position comes
from a permutation of the split's rows sorted by sample id: rows of the same seed see the
same sample ids in the same order at every step, whatever else they read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.seeds import derive


@dataclass
class CachedSplit:
    """Decoded blocks (ObjectRefs of dicts of arrays) and, in sample-id order, where each
    row lives: ``where[i] = (block, row)``."""

    refs: list
    where: np.ndarray  # (N, 2) int64
    sample_ids: list[str]

    def __len__(self) -> int:
        return len(self.where)


def cache_split(ds) -> CachedSplit:
    """Runs ``ds`` (decoded rows with a ``sample_id`` column) once into the object store."""
    import ray

    refs = ds.to_numpy_refs()
    rows = []
    for b, ref in enumerate(refs):
        for r, sid in enumerate(ray.get(ref)["sample_id"].tolist()):
            rows.append((str(sid), b, r))
    rows.sort()  # repeated ids (weighted sampling) are equal rows: their order is immaterial
    where = np.array([(b, r) for _, b, r in rows], np.int64).reshape(-1, 2)
    return CachedSplit(refs, where, [s for s, _, _ in rows])


def epoch_positions(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1
                    ) -> np.ndarray:
    """This rank's rows of the epoch, in order: a permutation seeded by (seed, epoch) dealt
    out to the ranks in turn, every rank the same count (DDP steps together), so at most
    ``world - 1`` rows sit out an epoch (other ones every epoch)."""
    perm = np.random.default_rng(derive(seed, "order", epoch)).permutation(n)
    return perm[rank::world][: n // world]


def cached_batches(split: CachedSplit, batch_size: int, seed: int, epoch: int, rank: int = 0,
                   world: int = 1, device=None):
    """The epoch's training batches on this rank, as torch tensors (numeric columns only)."""
    import ray
    import torch

    blocks = ray.get(list(split.refs))  # zero-copy views of the shared objects
    keys = [k for k, v in blocks[0].items() if v.dtype != object] if blocks else []
    pos = epoch_positions(len(split), seed, epoch, rank, world)
    for start in range(0, len(pos), batch_size):
        rows = split.where[pos[start:start + batch_size]]
        batch = {k: torch.from_numpy(np.stack([blocks[b][k][r] for b, r in rows]))
                 for k in keys}
        yield {k: v.to(device) for k, v in batch.items()} if device is not None else batch
