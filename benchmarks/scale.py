"""Paper scale on this machine: generate N identities with `pain3d generate`'s own graph,
measure the steady rate and the memory of the whole run, extrapolate to 2,500 identities.

    python benchmarks/scale.py [--identities 240] [--num-cpus 2] [--json F] [override ...]

Ray starts as `pain3d generate` starts it (generate.ray: object store at Ray's default size
unless overridden, e.g. generate.ray.object_store_memory=300000000).
- Rates: frames/s of the whole run after ray.init (what the estimate uses), and from the
  first to the last finished identity (the "steady state": biased upwards when cheap
  upstream stages run ahead during the start-up, as they do without Ray Data's per-stage
  reservation, so it is printed but not used). Start-up: time to the first finished identity.
  The estimate for the paper's 2,500 identities (82,500 frames): the time to the middle
  identity (start-up, fill, warm-up included) + the remaining identities at the second
  half's rate (the marginal rate once the graph has settled). The whole run after ray.init
  scaled by 2,500 / N is printed too: an upper bound (it scales the start-up as well).
- Memory: proportional set size (shared pages split between the processes that map them,
  so the object store is counted once) of the driver and every process under it (the local
  Ray: raylet, GCS, workers, actors), sampled every second. Printed per quarter of the run:
  flat in N means the last quarter's peak is no higher than the first's.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PAPER_IDENTITIES = 2500
TARGET_MIN, TARGET_FPS, TARGET_GB = 45.0, 31.0, 6.0


def tree_pss() -> int:
    """Bytes of the driver and all its descendants (PSS; RSS where PSS is unreadable)."""
    me = psutil.Process()
    total = 0
    for p in [me] + me.children(recursive=True):
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class MemorySampler(threading.Thread):
    def __init__(self, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.done = every_s, [], threading.Event()

    def run(self):
        t0 = time.perf_counter()
        while not self.done.is_set():
            self.samples.append((time.perf_counter() - t0, tree_pss()))
            self.done.wait(self.every)

    def quarters(self, n_done_at) -> list[float]:
        """Peak GB in each quarter of the identities (by the time they finished)."""
        out = []
        for q in range(4):
            lo, hi = n_done_at(q / 4), n_done_at((q + 1) / 4)
            vals = [b for t, b in self.samples if lo <= t <= hi]
            out.append(max(vals) / 1e9 if vals else float("nan"))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=240)
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    if args.identities < 4:
        ap.error(f"--identities must be >= 4 (a first, a middle and a last identity), "
                 f"got {args.identities}")
    import ray

    from cluster.config import load_config
    from cluster.runtime import init_ray
    from pipelines.generate import run

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config("local", [f"generate.ray.num_cpus={args.num_cpus}"] + args.overrides
                          + [f"generate.out={tmp}/scale", f"generate.identities={args.identities}"])
        mem = MemorySampler()
        t0 = time.perf_counter()
        mem.start()
        init_ray(cfg.generate.ray)  # as `pain3d generate` starts its local Ray
        ray_s = time.perf_counter() - t0
        done = []

        def progress(n):
            if not n:
                return
            done.extend([time.perf_counter() - t0] * n)
            if len(done) % max(1, args.identities // 10) == 0:
                print(f"  {len(done)}/{args.identities} identities, {done[-1]:.0f} s", flush=True)

        res = run(cfg, progress=progress)
        total = time.perf_counter() - t0
        mem.done.set()
        mem.join()
        ray.shutdown()
    report(args, res, total, ray_s, done, mem)


def report(args, res, total: float, ray_s: float, done: list[float], mem: MemorySampler) -> None:
    n = len(res.summaries)
    per_id = sum(s["frames"] for s in res.summaries) / n
    steady = res.steady_fps()
    first = done[0]
    after_init = n * per_id / (done[-1] - ray_s)
    mid = n // 2
    marginal = (n - mid) * per_id / (done[-1] - done[mid - 1])  # frames/s, second half
    est_s = done[mid - 1] + (PAPER_IDENTITIES - mid) * per_id / marginal
    upper_s = ray_s + (done[-1] - ray_s) * PAPER_IDENTITIES / n
    quarters = mem.quarters(lambda f: done[min(len(done) - 1, int(f * len(done)))] if f else 0.0)
    peak = max(b for _, b in mem.samples) / 1e9
    print(f"\n{n} identities ({n * per_id:.0f} frames), local Ray with {args.num_cpus} CPUs, "
          f"{total:.0f} s including ray.init")
    print(f"start-up: {first:.1f} s to the first identity written (ray.init {ray_s:.1f} s of it)")
    print(f"second half of the identities: {marginal:.1f} frames/s (target >= {TARGET_FPS:.0f}); "
          f"whole run after ray.init: {after_init:.1f}; first to last identity: {steady:.1f}")
    print(f"paper scale ({PAPER_IDENTITIES} identities, {PAPER_IDENTITIES * per_id:.0f} frames): "
          f"{est_s / 60:.1f} min estimated (target <= {TARGET_MIN:.0f} min); at most "
          f"{upper_s / 60:.1f} min (the whole run scaled)")
    print(f"peak memory of the run (PSS, all processes): {peak:.2f} GB (target <= "
          f"{TARGET_GB:.0f}); peak per quarter of the identities: "
          + " ".join(f"{q:.2f}" for q in quarters) + " GB")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "identities": n, "frames": n * per_id, "num_cpus": args.num_cpus,
            "total_s": total, "ray_init_s": ray_s, "startup_s": first, "steady_fps": steady,
            "after_init_fps": after_init, "marginal_fps": marginal, "middle_s": done[mid - 1],
            "paper_upper_min": upper_s / 60,
            "paper_estimate_min": est_s / 60, "peak_gb": peak, "quarter_peaks_gb": quarters},
            indent=1))


if __name__ == "__main__":
    main()
