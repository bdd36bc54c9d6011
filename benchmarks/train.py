"""Training throughput: Ray Train against a plain PyTorch loop, same model, batch and data.

    python benchmarks/train.py [--samples 1024] [--epochs 3] [--repeats 2] [--json out.json]
    python benchmarks/train.py --gpu --config paper    # one GPU: TorchTrainer vs plain

Six measurements in one run, all on the config's ViTPain (the local preset's model) with random in-memory data shaped like the frames table (image, PSPI, 6 AUs):

    plain, 1 process            the loop below, nothing else
    plain in a Ray task         the same, inside one Ray worker process (diagnostic: separates
                                the cost of a Ray worker process from that of Ray Train)
    Ray Train, 1 worker         the same loop inside TorchTrainer; data handed over in memory
    Ray Train + Ray Data, 1     the same loop fed by ``iter_torch_batches`` (as pain3d trains)
    plain DDP, 2 processes      torch.distributed (gloo), started with torch.multiprocessing
    Ray Train, 2 workers        DDP by ``prepare_model``; data in memory, sharded by rank
    Ray Train + Ray Data, 2     DDP fed by Ray Data's split of the dataset

Samples/s counts every epoch after the first (warm-up) on rank 0, between synchronised
clocks; start-up (actors, process groups) is reported apart as wall seconds. The cases take
turns over ``--repeats`` rounds and each keeps its best round. Every process gets the same
number of torch threads, so 1-process figures use ``--threads`` cores and 2-process ones twice
that. The ratios printed are Ray Train over the plain loop with the same number of processes.
``--gpu`` runs every process on a CUDA device (NCCL for two), the 2-process cases only where
two GPUs are visible; clocks are read after a CUDA synchronise.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from train.losses import LossWeights, vitpain_loss  # noqa: E402
from train.model import N_AUS, N_PSPI, ViTPain  # noqa: E402


def make_data(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.random((n, 3, size, size), dtype=np.float32),
            "pspi": rng.integers(0, N_PSPI, n).astype(np.int64),
            "aus": (rng.random((n, N_AUS)) * 5).astype(np.float32)}


def in_memory_batches(data: dict, batch: int, rank: int, world: int, device="cpu"):
    """This rank's share (every world-th sample), in batches, as tensors on ``device``."""
    idx = np.arange(rank, len(data["pspi"]), world)
    for s in range(0, len(idx), batch):
        sel = idx[s:s + batch]
        yield {k: torch.from_numpy(v[sel]).to(device, non_blocking=True) for k, v in data.items()}


def _synced(barrier, device):
    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        barrier()
    return sync


def run_epochs(net, model_cfg, batches_fn, epochs: int, barrier) -> tuple[int, float]:
    """The training loop every variant runs; returns (samples, seconds) after epoch 1."""
    barrier = _synced(barrier, next(net.parameters()).device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    w = LossWeights()
    samples, t0 = 0, None
    for epoch in range(epochs):
        if epoch == 1:
            barrier()
            t0 = time.perf_counter()
        for b in batches_fn():
            out = net(b["image"])
            loss, _ = vitpain_loss(out, b["pspi"], b["aus"], w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            if epoch >= 1:
                samples += len(b["pspi"])
    barrier()
    return samples, time.perf_counter() - t0


def _plain_worker(rank: int, world: int, port: int, args, model_cfg, data, out):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = f"cuda:{rank}" if args.gpu else "cpu"
    net = ViTPain(model_cfg, weights_follow=True).to(device)
    barrier = lambda: None  # noqa: E731
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if args.gpu else "gloo",
                                init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world)
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[rank] if args.gpu else None)
        barrier = dist.barrier
    samples, secs = run_epochs(net, model_cfg, lambda: in_memory_batches(
        data, args.batch, rank, world, device), args.epochs, barrier)
    if rank == 0:
        out.put((samples * world, secs))
    if world > 1:
        torch.distributed.destroy_process_group()


def plain(args, model_cfg, data, world: int) -> dict:
    import torch.multiprocessing as mp

    t0 = time.perf_counter()
    if world == 1:
        q = _Box()
        _plain_worker(0, 1, 0, args, model_cfg, data, q)
        samples, secs = q.value
    else:
        ctx = mp.get_context("spawn")
        q = ctx.SimpleQueue()
        with socket.socket() as s:  # a free port for the rendezvous
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [ctx.Process(target=_plain_worker, args=(r, world, port, args, model_cfg, data, q))
                 for r in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            raise RuntimeError("a plain DDP process failed")
        samples, secs = q.get()
    return {"samples_per_s": samples / secs, "wall_s": time.perf_counter() - t0}


class _Box:
    def put(self, v):
        self.value = v


def _ray_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    args, model_cfg = config["args"], config["model_cfg"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    net = ray.train.torch.prepare_model(ViTPain(model_cfg, weights_follow=True))
    barrier = torch.distributed.barrier if world > 1 else (lambda: None)
    if config["ray_data"]:
        shard = ray.train.get_dataset_shard("train")

        def batches():
            return shard.iter_torch_batches(batch_size=args.batch, drop_last=False)
    else:
        import ray

        data = ray.get(config["data"][0])
        device = ray.train.torch.get_device()

        def batches():
            return in_memory_batches(data, args.batch, rank, world, device)
    samples, secs = run_epochs(net, model_cfg, batches, args.epochs, barrier)
    import tempfile

    with tempfile.TemporaryDirectory() as d:  # Ray Train v2 keeps metrics of checkpoints only
        ck = ray.train.Checkpoint.from_directory(d) if rank == 0 else None
        ray.train.report({"samples": samples * world, "secs": secs}, checkpoint=ck)


def ray_task(args, model_cfg, data_ref) -> dict:
    import ray

    @ray.remote(num_cpus=args.cpus_per_worker, num_gpus=1 if args.gpu else 0)
    def run(args, model_cfg, data_ref):
        q = _Box()
        _plain_worker(0, 1, 0, args, model_cfg, ray.get(data_ref[0]), q)
        return q.value

    t0 = time.perf_counter()
    samples, secs = ray.get(run.remote(args, model_cfg, [data_ref]))
    return {"samples_per_s": samples / secs, "wall_s": time.perf_counter() - t0}


def ray_train(args, model_cfg, data, data_ref, world: int, ray_data: bool) -> dict:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t0 = time.perf_counter()
    datasets = None
    if ray_data:
        rows = [{k: v[i] for k, v in data.items()} for i in range(len(data["pspi"]))]
        datasets = {"train": ray.data.from_items(rows).materialize()}
    trainer = TorchTrainer(
        _ray_loop,
        train_loop_config={"args": args, "model_cfg": model_cfg, "ray_data": ray_data,
                           "data": [data_ref]},
        scaling_config=ScalingConfig(num_workers=world, use_gpu=args.gpu,
                                     resources_per_worker={"CPU": args.cpus_per_worker}),
        datasets=datasets,
        run_config=RunConfig(name=f"bench-{world}-{int(ray_data)}-{os.getpid()}",
                             storage_path=args.storage))
    m = trainer.fit().metrics
    return {"samples_per_s": m["samples"] / m["secs"], "wall_s": time.perf_counter() - t0}


def main() -> None:
    import ray

    from cluster.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="local", help="preset or YAML whose train.model to use")
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--cpus-per-worker", type=float, default=0.5,
                    help="Ray CPUs per training worker (leaves room for Ray Data)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of every case (best is kept)")
    ap.add_argument("--storage", default="/tmp/pain3d-bench-train")
    ap.add_argument("--gpu", action="store_true", help="every process on a CUDA device")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be at least 2 (the first is warm-up)")

    cfg = load_config(args.config)
    model_cfg = cfg.train.model
    model_cfg.pretrained_file = None
    data = make_data(args.samples, model_cfg.img_size, cfg.seed)
    print(f"model: {model_cfg.backbone} {model_cfg.backbone_kwargs} at {model_cfg.img_size}px; "
          f"{args.samples} samples x {args.epochs} epochs (first is warm-up), batch "
          f"{args.batch}, {args.threads} torch thread(s) per process, {os.cpu_count()} cores")
    n_gpus = torch.cuda.device_count() if args.gpu else 0
    if args.gpu and not n_gpus:
        ap.error("--gpu: no CUDA device is visible")
    ray.init(num_cpus=os.cpu_count(), num_gpus=n_gpus, include_dashboard=False,
             log_to_driver=False, object_store_memory=1 << 30)
    data_ref = ray.put(data)
    cases = []  # (name, world, run)
    for world in (1, 2) if not args.gpu or n_gpus >= 2 else (1,):
        proc = f"{world} process{'es' if world > 1 else ''}"
        cases.append((f"plain PyTorch, {proc}", world,
                      lambda w=world: plain(args, model_cfg, data, w)))
        if world == 1:
            cases.append(("plain loop in a Ray task", 1,
                          lambda: ray_task(args, model_cfg, data_ref)))
        for ray_data in (False, True):
            name = f"Ray Train{' + Ray Data' if ray_data else ''}, {world} worker" + (
                "s" if world > 1 else "")
            cases.append((name, world, lambda w=world, rd=ray_data: ray_train(
                args, model_cfg, data, data_ref, w, rd)))
    # the cases alternate over the repeats, so that slow spells of a shared machine hit every
    # case alike; each case keeps its best repeat (the least disturbed one)
    runs: dict[str, list[dict]] = {}
    for rep in range(args.repeats):
        for name, world, run in cases:
            r = run()
            runs.setdefault(name, []).append(r)
            print(f"[{rep + 1}/{args.repeats}] {name}: {r['samples_per_s']:.1f} samples/s",
                  flush=True)
    rows = []
    for name, world, _ in cases:
        best = max(runs[name], key=lambda r: r["samples_per_s"])
        base = max(runs[f"plain PyTorch, {world} process{'es' if world > 1 else ''}"],
                   key=lambda r: r["samples_per_s"])
        rows.append({"case": name, "world": world, **best,
                     "all_samples_per_s": [round(r["samples_per_s"], 2) for r in runs[name]],
                     "ratio": best["samples_per_s"] / base["samples_per_s"]})
    ray.shutdown()
    print(f"\n  {'case':<34}{'samples/s':>10}{'vs plain':>10}{'wall s':>9}   all repeats")
    for r in rows:
        print(f"  {r['case']:<34}{r['samples_per_s']:>10.1f}{r['ratio']:>10.3f}{r['wall_s']:>9.1f}"
              f"   {r['all_samples_per_s']}")
    print("\n  target: Ray Train >= 0.95 x the plain loop with the same number of processes")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
