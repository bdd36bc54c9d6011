"""Paired, reproducible training: the cached train split's order depends on (seed, epoch)
and the sample ids alone, whatever columns a run reads; a part's initial weights on (seed,
its name) alone; rank seeds never overlap; every rank validates with rank 0's batch-norm
statistics; brightness jitter scales pixels, not normalised values."""
import numpy as np
import pytest
import torch

from cluster.config import load_config
from pipelines.layout3dpain import load_frames_columns
from tests.conftest import TINY_CONV, random_batch
from train.data import MEAN, STD, identity_table, make_split, split_datasets
from train.loop import epoch_batches
from train.model import ViTPain
from train.order import epoch_positions
from train.seeds import derive


def _ids_per_epoch(data, seed, epochs=2, world=1, rank=0, **read):
    cfg = load_config("local", ["train.batch_size=16"]).train
    split = make_split(identity_table(path=data), (0.7, 0.2, 0.1), 0)
    cached = split_datasets(data, {"train": split["train"]}, 16, seed=seed, cache=True,
                            **read)["train"]
    frames = load_frames_columns(data, ["sample_id", "identity"]).to_pydict()
    identity_of = dict(zip(frames["sample_id"], frames["identity"]))
    out = []
    for e in range(epochs):
        order = [cached.sample_ids[i] for i in epoch_positions(len(cached), seed, e, rank,
                                                               world)]
        idents = [int(i) for b in epoch_batches(cached, cfg, seed, e, rank, world=world)
                  for i in b["identity"]]
        assert idents == [identity_of[s] for s in order]  # the batches follow the order
        out.append(order)
    return out, split


@pytest.mark.slow  # ~30 s: three decodes of the split
def test_cached_order_is_the_same_whatever_columns_a_run_reads(data10):
    plain, split = _ids_per_epoch(data10, seed=5)
    with_neutral, _ = _ids_per_epoch(data10, seed=5, neutral=True)  # + neutral frames
    with_params, _ = _ids_per_epoch(data10, seed=5, params=True)  # + 3D parameters
    assert plain == with_neutral == with_params
    assert plain[0] != plain[1] and sorted(plain[0]) == sorted(plain[1])  # reshuffled
    assert len(plain[0]) == 33 * len(split["train"])  # every frame once an epoch
    other, _ = _ids_per_epoch(data10, seed=6, epochs=1)
    assert other[0] != plain[0]


def test_ranks_share_out_one_epoch_without_overlap():
    n = 101
    parts = [epoch_positions(n, 3, 1, r, 2) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 50  # DDP steps together
    assert not set(parts[0]) & set(parts[1])
    assert np.array_equal(epoch_positions(n, 3, 1, 0, 2), parts[0])  # seeded
    assert not np.array_equal(epoch_positions(n, 3, 2, 0, 2), parts[0])  # a new epoch


def test_rank_seeds_do_not_overlap_across_seeds():
    # seed + rank made rank 1 of seed 0 the same stream as rank 0 of seed 1
    assert derive(0, "rank", 1) != derive(1, "rank", 0)
    assert len({derive(s, "rank", r) for s in range(20) for r in range(8)}) == 160


def _model(*extra, seed=0):
    return ViTPain(load_config("local", TINY_CONV + list(extra)).train.model,
                   weights_follow=True, seed=seed)


def _equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_part_starts_the_same_whichever_other_parts_exist():
    base = _model("train.model.au_queries=false")
    rich = _model("train.model.au_queries=true", "train.model.head=both",
                  "train.model.neutral_reference=true")
    assert _equal(base.backbone, rich.backbone)
    assert _equal(base.pspi_head, rich.pspi_head)
    assert not _equal(base.backbone, _model("train.model.au_queries=false", seed=1).backbone)
    # each part its own stream: two heads of one shape start apart
    assert not torch.equal(rich.reg_head.net[1].weight, rich.binary_head.net[1].weight)


def test_brightness_jitter_scales_pixels():
    from train.steps import augment

    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(4, 3, 8, 8, generator=g) * 0.8 + 0.1
    x = (pixels - torch.as_tensor(MEAN)) / torch.as_tensor(STD)
    def pixels_of(jitter):  # the same flips either way: the flip is drawn first
        out, _, _ = augment(x, None, torch.Generator().manual_seed(1), jitter=jitter)
        return out * torch.as_tensor(STD) + torch.as_tensor(MEAN)

    ratio = pixels_of(True) / pixels_of(False)
    per_image = ratio.flatten(1)
    assert (per_image.std(1) < 1e-4).all(), "one factor per image on every pixel"
    assert (per_image.mean(1) - 1).abs().max() > 1e-3  # and it did change brightness


def _bn_worker(rank, port, results):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from train import steps
    from train.loop import share_rank0_buffers

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    cfg = load_config("local", TINY_CONV + ["train.augment=false"]).train
    w = steps.build(cfg, "teacher", None, "cpu", 0, 4, wrap=DDP, rank=rank)
    steps.set_frozen(w, False)
    b = random_batch(seed=rank)
    b["heatmap"] += rank  # the teacher reads heatmaps: unlike ones on the two ranks
    steps.train_step(w, b)
    mean = w.model.backbone.bn1.running_mean.clone()
    share_rank0_buffers(w.inner)
    results[rank] = (mean, w.model.backbone.bn1.running_mean.clone())
    dist.destroy_process_group()


@pytest.mark.slow  # two gloo processes
def test_every_rank_validates_with_rank_0s_batch_norm_statistics():
    import torch.multiprocessing as mp

    from tests.raycluster import free_port

    results = mp.Manager().dict()
    mp.spawn(_bn_worker, args=(free_port(), results), nprocs=2, join=True)
    (own0, shared0), (own1, shared1) = results[0], results[1]
    assert not torch.equal(own0, own1)  # each rank's own batches moved its statistics
    assert torch.equal(shared0, own0) and torch.equal(shared1, own0)


def test_a_small_split_read_in_the_driver_has_ray_datas_rows(data10, ray_local, monkeypatch):
    import pyarrow as pa
    import ray

    import train.data as td

    ids = sorted(identity_table(path=data10))[:3]

    def rows():
        ds = td._read(data10, ids, ["neutral_sample_id"]).materialize()
        return ds.num_blocks(), pa.concat_tables(ray.get(ds.to_arrow_refs())).sort_by(
            "sample_id")

    def no_read_task(*a, **k):
        raise AssertionError("a small split must not start Ray Data read tasks")

    with monkeypatch.context() as m:
        m.setattr(ray.data, "read_parquet", no_read_task)
        blocks, small = rows()  # 3 tiny shards: far under DRIVER_READ_BYTES
    monkeypatch.setattr(td, "DRIVER_READ_BYTES", 0)  # Ray Data's read_parquet
    _, read = rows()
    assert small.equals(read) and small.num_rows == 33 * len(ids)
    assert blocks == len(ids)  # one block per identity: decoding still runs in parallel
