"""Training data: an identity-disjoint, demographically stratified split, and Ray Data
pipelines that decode the frames (PNG -> normalised tensors) for the training workers."""
from __future__ import annotations

import io
from collections import defaultdict

import numpy as np
import pyarrow as pa
from PIL import Image

from pipelines.layout3dpain import load_frames_columns
from train.crop import box_from_head, crop_resize, face_box
from train.metrics import AU_NAMES, GROUPS

MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
SPLITS = ("train", "val", "test")
DRIVER_READ_BYTES = 64 << 20  # a split this small is read in the driver (see _read)


def identity_table(frames: pa.Table | None = None, path: str | None = None) -> dict[int, dict]:
    """identity -> its demographics (one row each)."""
    cols = ["identity"] + list(GROUPS)
    if frames is None:
        from pipelines.layout3dpain import load_frames_columns

        frames = load_frames_columns(path, cols)
    out = {}
    for r in frames.select(cols).to_pylist():
        out.setdefault(int(r["identity"]), {g: r[g] for g in GROUPS})
    return out


def identity_frames(data: str, ids: list[int], columns: list[str]) -> pa.Table:
    """These columns (never image bytes) of the frames of identities ``ids``."""
    import pyarrow.compute as pc

    t = load_frames_columns(data, ["identity"] + [c for c in columns if c != "identity"])
    return t.filter(pc.is_in(t.column("identity"), pa.array(ids, pa.int64())))


def split_hash(split: dict[str, list[int]]) -> str:
    """A short fingerprint of a split (the identities of each part)."""
    import hashlib
    import json

    blob = json.dumps({k: sorted(int(i) for i in split.get(k, [])) for k in SPLITS},
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def make_split(identities: dict[int, dict], fractions=(0.7, 0.2, 0.1), seed: int = 0,
               variant: int = 0) -> dict[str, list[int]]:
    """Identity-disjoint train/val/test split, stratified by (age, gender, ethnicity): each
    demographic cell is shuffled (seeded) and dealt out in the given proportions, with the
    rounding remainder carried across cells so the totals match the fractions. ``variant``
    > 0 also deals the cells in a seeded order of its own: another split with the same
    stratification even where every cell holds one identity (where shuffling within cells
    changes nothing, so every seed would give the same split)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"train.split must be three fractions summing to 1, got {fractions}")
    cells: dict[tuple, list[int]] = defaultdict(list)
    for ident, demo in sorted(identities.items()):
        cells[tuple(demo[g] for g in GROUPS)].append(ident)
    rng = np.random.default_rng(seed)
    order = []
    keys = sorted(cells)
    if variant:
        keys = [keys[i] for i in np.random.default_rng([seed, variant, 31]).permutation(len(keys))]
    for key in keys:
        ids = cells[key]
        order.extend(ids[i] for i in rng.permutation(len(ids)))
    # largest-deficit apportionment over the cell-ordered list: every prefix (and so every
    # demographic cell) is spread over the splits in the given proportions
    frac = np.asarray(fractions, float)
    counts = np.zeros(3)
    out = {s: [] for s in SPLITS}
    for ident in order:
        k = int(np.argmax(frac * (counts.sum() + 1) - counts))
        out[SPLITS[k]].append(ident)
        counts[k] += 1
    return {s: sorted(v) for s, v in out.items()}


def _open(blob) -> Image.Image:
    im = Image.open(io.BytesIO(blob))
    im.load()
    return im


def _decode(blob, size: int, box) -> np.ndarray:
    if blob is None:
        return np.zeros((3, size, size), np.float32)
    a = np.asarray(crop_resize(_open(blob).convert("RGB"), box, size), np.float32)
    return a.transpose(2, 0, 1) / 255.0


class CorruptImage(ValueError):
    pass


def _corrupt(col: str, ident, e: Exception) -> CorruptImage:
    from pipelines.tasks import shard_name

    return CorruptImage(
        f"a corrupt {col} PNG in identity {int(ident)} of the dataset ({e}); delete its "
        f"shard frames/{shard_name(int(ident))} and re-run the same pain3d generate "
        "to regenerate it")


def _boxes(batch: dict, crop: bool) -> list:
    """Per row, the face box: from the stored head box (generated frames), else from the
    mask of the bare head (older datasets); None: the whole frame."""
    n = len(batch["identity"])
    if not crop:
        return [None] * n
    heads = batch.get("head_box", [None] * n)
    masks = batch.get("mask", [None] * n)
    out = []
    for head, blob, img, ident in zip(heads, masks, batch["image"], batch["identity"]):
        col = "image" if head is not None else "mask"
        try:
            if head is not None and len(head) == 4:
                w, h = Image.open(io.BytesIO(img)).size  # reads the header only
                out.append(box_from_head(head, (h, w)))
            else:
                out.append(None if blob is None else face_box(np.asarray(_open(blob).convert("L"))))
        except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for bad image bytes
            raise _corrupt(col, ident, e) from None
    return out


def _decode_column(batch: dict, col: str, size: int, boxes: list) -> np.ndarray:
    out = []
    for blob, ident, box in zip(batch[col], batch["identity"], boxes):
        try:
            out.append(_decode(blob, size, box))
        except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for bad image bytes
            raise _corrupt(col, ident, e) from None
    return np.stack(out)


def decode_batch(batch: dict, size: int, keep_groups: bool = False, crop: bool = True,
                 half: bool = False, ids: bool = False) -> dict:
    """PNG bytes -> normalised (N, 3, S, S) images and heatmaps (zeros for neutral frames),
    both cut to the face box of the row's mask when ``crop``; float16 when ``half``;
    ``ids``: the sample ids come along (the cached train split's order is keyed on them)."""
    boxes = _boxes(batch, crop)
    dtype = np.float16 if half else np.float32
    img = _decode_column(batch, "image", size, boxes)
    heat = _decode_column(batch, "heatmap", size, boxes)
    if "neutral_image" in batch:  # the neutral reference, cut to its own face box
        view = {"identity": batch["identity"], "image": batch["neutral_image"],
                "head_box": batch.get("neutral_head_box"), "mask": batch.get("neutral_mask")}
        view = {k: v for k, v in view.items() if v is not None}
        neutral = _decode_column(view, "image", size, _boxes(view, crop))
    out = {"image": ((img - MEAN) / STD).astype(dtype),
           "heatmap": ((heat - MEAN) / STD).astype(dtype),
           "pspi": np.asarray(batch["pspi"], np.int64),
           "aus": np.stack([np.asarray(batch[a], np.float32) for a in AU_NAMES], 1),
           "identity": np.asarray(batch["identity"], np.int64)}
    if "neutral_image" in batch:
        out["neutral"] = ((neutral - MEAN) / STD).astype(dtype)
    for c in PARAM_COLUMNS:  # the 3D ground truth, when read (encoder, fusion)
        if c in batch:
            out[c] = np.stack([np.asarray(v, np.float32) for v in batch[c]])
    if ids:
        out["sample_id"] = np.asarray(batch["sample_id"], dtype=object)
    if keep_groups:  # strings: fine for numpy batches, not for iter_torch_batches
        for g in GROUPS:
            out[g] = np.asarray(batch[g], dtype=object)
        for c in ("sample_id", "view"):  # which frame each answer is (evaluation's table)
            if c in batch:
                out[c] = np.asarray(batch[c], dtype=object if c == "sample_id" else np.int64)
    return out


READ_COLUMNS = ["sample_id", "identity", "image", "heatmap", "mask", "pspi"] + list(AU_NAMES) + \
    list(GROUPS)


OPTIONAL_COLUMNS = ["head_box"]
PARAM_COLUMNS = ("expression_params", "shape_params")


def sample_frames(frames: pa.Table, ids: list[int], max_frames: int, seed: int) -> set[str]:
    """At most ``max_frames`` sample ids of the given identities, a seeded sample stratified
    by identity (each identity contributes equally, up to its own frames)."""
    rng = np.random.default_rng([seed, 7])
    by_id: dict[int, list[str]] = defaultdict(list)
    for sid, ident in zip(frames.column("sample_id").to_pylist(),
                          frames.column("identity").to_pylist()):
        if ident in ids:
            by_id[int(ident)].append(sid)
    order = {i: list(rng.permutation(sorted(v))) for i, v in sorted(by_id.items())}
    out: list[str] = []
    while len(out) < max_frames and any(order.values()):
        for i in sorted(order):  # one frame of each identity per round
            if order[i] and len(out) < max_frames:
                out.append(str(order[i].pop()))
    return set(out)


def _keep(batch: pa.Table, keep: set[str]) -> pa.Table:
    import pyarrow.compute as pc

    return batch.filter(pc.is_in(batch.column("sample_id"), pa.array(sorted(keep))))


def qa_failures(data: str, ids: list[int]) -> set[str]:
    """Sample ids of the given identities whose frame failed the AU read-back (qa_pass)."""
    import pyarrow.compute as pc

    t = load_frames_columns(data, ["sample_id", "identity", "qa_pass"])
    if t.column("qa_pass").null_count == t.num_rows:
        raise ValueError(f"train.exclude_qa_failures is on but {data} has no QA results; "
                         "generate it with the qa stage (generate.stages.qa.backend: mediapipe)"
                         " or turn the option off")
    t = t.filter(pc.is_in(t.column("identity"), pa.array(ids, pa.int64())))
    failed = pc.invert(pc.fill_null(t.column("qa_pass"), False))
    return set(t.filter(failed).column("sample_id").to_pylist())


def _drop(batch: pa.Table, drop: set[str]) -> pa.Table:
    import pyarrow.compute as pc

    return batch.filter(pc.invert(pc.is_in(batch.column("sample_id"), pa.array(sorted(drop),
                                                                             pa.string()))))


def resample(batch: pa.Table, weights: list[float], seed: int) -> pa.Table:
    """Weighted sampling (``train.sampling: weighted``): each row repeated floor(w) or
    floor(w) + 1 times, w its PSPI level's weight, so that the expected count is w; the
    rounding is drawn from (seed, sample id), the same at every pass."""
    import hashlib

    w = np.asarray(weights, float)[np.asarray(batch.column("pspi"), int)]
    u = np.array([int.from_bytes(hashlib.blake2b(f"{seed}/{sid}".encode(), digest_size=8)
                                 .digest(), "little") / 2 ** 64
                  for sid in batch.column("sample_id").to_pylist()])
    counts = np.floor(w).astype(int) + (u < w - np.floor(w))
    return batch.take(pa.array(np.repeat(np.arange(len(w)), counts), pa.int64()))


def split_datasets(data: str, split: dict[str, list[int]], size: int,
                   max_frames: int | None = None, decode_cpus: float = 1.0,
                   seed: int = 0, crop: bool = True, cache: bool = False,
                   exclude: set[str] | None = None, neutral: bool = False,
                   sampling: list[float] | None = None, params: bool = False) -> dict:
    """Ray Datasets per split, decoding on Ray Data workers (streamed to the trainers). The
    train split's block order is reshuffled at every pass, seeded, and its order preserved,
    so one seed gives one sequence of epochs. ``cache``: decode once (float16) and keep the
    decoded frames in the object store for every epoch (small datasets: decoding costs about
    as much CPU as training the laptop model); the train split is then a
    :class:`train.order.CachedSplit`, whose order depends on the seed and sample ids
    alone. ``exclude``: sample ids left out of the train
    split (frames that failed QA); val and test stay whole, so runs stay comparable.
    ``params``: the rows' expression and shape parameters come along (the 3D ground truth)."""

    index = load_frames_columns(data, ["sample_id", "identity"]) if max_frames else None
    out = {}
    for name in SPLITS:  # (a split file's split also records its source)
        ids = split.get(name, [])
        if not ids:
            continue
        ds = _read(data, ids, (["neutral_sample_id"] if neutral else [])
                   + (list(PARAM_COLUMNS) if params else []))
        if neutral:  # before any filter: a shard's block holds its neutral frames
            from train.neutral import attach

            ds = ds.map_batches(attach, fn_kwargs={"data": data}, batch_format="pyarrow",
                                batch_size=None)
        if exclude and name == "train":
            ds = ds.map_batches(_drop, fn_kwargs={"drop": exclude}, batch_format="pyarrow",
                                batch_size=None)
        if max_frames:  # sampled among the frames that are left
            pool = _drop(index, exclude) if exclude and name == "train" else index
            ds = ds.map_batches(_keep, fn_kwargs={"keep": sample_frames(pool, ids, max_frames,
                                                                        seed)},
                                batch_format="pyarrow", batch_size=None)
        shuffle = name == "train"
        if sampling and shuffle:
            ds = ds.map_batches(resample, fn_kwargs={"weights": sampling, "seed": seed},
                                batch_format="pyarrow", batch_size=None)
        if shuffle and not cache:  # reorder the (small) encoded blocks, then decode
            ds = _reshuffled(ds, seed)
        # float16 saves the train cache half its memory; val stays float32, so the AUROC a
        # run records is the one `pain3d evaluate` (float32) reproduces from the checkpoint
        ds = ds.map_batches(decode_batch, fn_kwargs={"size": size, "crop": crop,
                                                     "half": cache and shuffle,
                                                     "ids": cache and shuffle},
                            batch_size=64, batch_format="numpy", num_cpus=decode_cpus)
        if cache and shuffle:  # batches in an order of (seed, epoch, sample ids) alone
            from train.order import cache_split

            out[name] = cache_split(ds)
            continue
        if cache:
            ds.context.execution_options.preserve_order = True
            ds = ds.materialize()
        out[name] = ds
    return out


def _read(data: str, ids: list[int], extra: list[str]):
    import pyarrow.compute as pc
    import ray

    from pipelines.layout3dpain import is_3dpain_layout, read_3dpain
    from pipelines.storage import resolve
    from pipelines.tasks import shard_name

    if is_3dpain_layout(data):
        t = read_3dpain(data)
        t = t.filter(pc.is_in(t.column("identity"), pa.array(ids, pa.int64())))
        return ray.data.from_arrow(t.select(READ_COLUMNS + OPTIONAL_COLUMNS + extra))
    loc = resolve(data)  # shards are per identity: read exactly this split's files
    paths = [loc.join("frames", shard_name(i)) for i in ids]
    import pyarrow.parquet as pq

    cols = READ_COLUMNS + extra + [c for c in OPTIONAL_COLUMNS  # older datasets lack them
                           if c in pq.read_schema(paths[0], filesystem=loc.fs).names]
    if _small(loc.fs, paths):
        # a few small shards: read here in ~0.1 s, where a Ray Data read's task start-up
        # costs seconds; one block per identity, so decoding still runs in parallel
        return ray.data.from_arrow([pq.read_table(p, columns=cols, filesystem=loc.fs)
                                    for p in paths])
    return ray.data.read_parquet(paths, filesystem=loc.fs).select_columns(cols)


def _small(fs, paths: list[str]) -> bool:
    """Whether the shards total at most DRIVER_READ_BYTES: one look-up per shard (a request
    each on S3), stopping as soon as the total is over."""
    total = 0
    for p in paths:
        info = fs.get_file_info(p)
        # a missing shard counts as too big: read_parquet's error names it
        total += info.size if info.is_file else DRIVER_READ_BYTES + 1
        if total > DRIVER_READ_BYTES:
            return False
    return True


def _reshuffled(ds, seed: int):
    """A new, seeded block order at every pass (epoch), kept in that order."""
    import ray

    ds = ds.randomize_block_order(
        seed=ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True))
    ds.context.execution_options.preserve_order = True
    return ds
