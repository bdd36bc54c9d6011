"""Frozen-backbone training steps under DDP (2 gloo processes, 1 thread each), three ways:

- rewrap: backbone parameters do not require grad, DDP rebuilt over the rest (what
  train/steps.py does);
- find_unused: DDP over every parameter with find_unused_parameters=True, the backbone's
  forward under no_grad;
- lr0: the old way, full backward through the backbone, its learning rate 0.

Prints seconds per step and the ratios to lr0, measured in the same run.

    .venv/bin/python benchmarks/freeze.py [--steps 20] [--batch 32]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# the repository first: this folder's train.py must not shadow the train package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

VARIANTS = ("rewrap", "find_unused", "lr0")


def _batch(n, size, seed):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 3, size, size, generator=g),
            "heatmap": torch.randn(n, 3, size, size, generator=g),
            "pspi": torch.randint(0, 17, (n,), generator=g), "aus": torch.rand(n, 6, generator=g)}


def _worker(rank, port, variant, n_steps, batch, out):
    from cluster.config import load_config
    from train import steps

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_config("local", [f"train.batch_size={batch}", "train.augment=false"]).train
    if variant == "rewrap":
        w = steps.build(cfg, "teacher", None, "cpu", rank, 100, wrap=DDP)
        steps.set_frozen(w, True)
    else:
        w = steps.build(cfg, "teacher", None, "cpu", rank, 100)
        w.frozen = True
        if variant == "find_unused":
            w.model.backbone.forward_features = torch.no_grad()(w.model.backbone.forward_features)
            w.net = DDP(w.inner, find_unused_parameters=True)
        else:  # lr0: gradients flow, the schedule gives the backbone a zero learning rate
            w.net = DDP(w.inner)
    size = cfg.model.img_size
    for k in range(3):  # warm-up
        steps.train_step(w, _batch(batch, size, k))
    dist.barrier()
    t0 = time.perf_counter()
    for k in range(n_steps):
        steps.train_step(w, _batch(batch, size, 100 + k))
    dist.barrier()
    if rank == 0:
        out[variant] = (time.perf_counter() - t0) / n_steps
    dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2, help="each variant this often, best kept")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    out = mp.Manager().dict()
    best: dict[str, float] = {}
    for _ in range(args.rounds):  # variants take turns: drifts of a shared machine even out
        for v in VARIANTS:
            mp.spawn(_worker, args=(free_port(), v, args.steps, args.batch, out), nprocs=2)
            best[v] = min(best.get(v, float("inf")), out[v])
    base = best["lr0"]
    for v in VARIANTS:
        print(f"{v:12s} {best[v]:.3f} s/step  {base / best[v]:.2f}x the speed of lr0")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"s_per_step": best, "batch": args.batch, "steps": args.steps}, f)


if __name__ == "__main__":
    main()
