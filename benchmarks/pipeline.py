"""Generation throughput: end-to-end frames/s of `pain3d generate` (local preset, local Ray)
against the slowest stage alone on the same identities, in the same run.

    python benchmarks/pipeline.py [--identities 48] [--num-cpus 2] [override ...]

1. Every stage runs once, in this process, over the same identities: its time per
   identity and share of the total (the work the pipeline must overlap).
2. The slowest stage alone: frames/s it sustains with the CPUs the pipeline gives it.
3. The full Ray Data pipeline end to end (fresh output folder): frames/s.
The ratio (3)/(2) says how close streaming gets to the bottleneck (target >= 0.9). On a
machine whose stages together need more CPU than the cores give, the CPUs are the
bottleneck rather than one stage: the script prints the ratio to that bound too. The steady
state (first to last identity) is biased upwards when cheap upstream stages run ahead
during the start-up; the rate with start-up is not.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.config import load_config  # noqa: E402
from pipelines.inprocess import run_stages, stage_steps  # noqa: E402


def stage_times(cfg, ids: list[int], out: str) -> tuple[dict[str, float], int]:
    steps = stage_steps(cfg, out)
    # warm up every stage once (templates, GL programs, caches), as long-lived actors are
    run_stages(steps, ids[0])
    times = {name: 0.0 for name, _ in steps}
    frames = 0
    for i in ids:
        b = {"identity": np.array([i])}
        for name, fn in steps:
            t0 = time.perf_counter()
            b = fn(b)
            times[name] += time.perf_counter() - t0
        frames += int(b["frames"][0])
    return times, frames


def cpu_busy(before, after) -> float:
    """Fraction of the machine's CPU time spent busy between two psutil.cpu_times()."""
    d = {k: getattr(after, k) - getattr(before, k) for k in before._fields}
    total = sum(d.values())
    return 1 - (d["idle"] + d.get("iowait", 0.0)) / total if total else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=48)
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    ids = list(range(1000, 1000 + args.identities))  # not the warm-up identity
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config("local", args.overrides + [f"generate.out={tmp}/alone"])
        times, frames = stage_times(cfg, ids, f"{tmp}/alone")
        total = sum(times.values())
        slowest = max(times, key=times.get)
        # the render stage gets num_cpus worth of llvmpipe threads in the pipeline, as here
        slow_fps = frames / times[slowest]

        import ray

        from pipelines.generate import run

        from cluster.runtime import init_ray

        init_ray(load_config("local", [f"generate.ray.num_cpus={args.num_cpus}"]
                             + args.overrides).generate.ray)  # as `pain3d generate` does
        cfg_e2e = load_config("local", args.overrides + [
            f"generate.out={tmp}/e2e", f"generate.identities={args.identities}",
            f"generate.start={ids[0]}"])
        run(load_config("local", args.overrides + [f"generate.out={tmp}/warm",
                                                   "generate.identities=1"]))  # warm workers
        cpu0, t0 = psutil.cpu_times(), time.perf_counter()
        res = run(cfg_e2e)
        e2e = time.perf_counter() - t0
        busy = cpu_busy(cpu0, psutil.cpu_times())
        ray.shutdown()
    made = sum(s["frames"] for s in res.summaries)
    e2e_fps = made / e2e
    steady = res.steady_fps() or float("nan")
    print(f"{args.identities} identities, {frames} frames, local Ray with {args.num_cpus} CPUs\n")
    print(f"{'stage':<14}{'s/identity':>12}{'share':>8}")
    for name, t in times.items():
        print(f"{name:<14}{t / len(ids):>12.2f}{t / total:>8.0%}")
    print(f"\nslowest stage alone ({slowest}): {slow_fps:.1f} frames/s")
    print(f"end to end (Ray Data), with actor start-up: {e2e_fps:.1f} frames/s")
    first = min(s["finished_after_s"] for s in res.summaries)
    print(f"end to end, steady state (first to last identity): {steady:.1f} frames/s")
    print(f"first identity written after {first:.1f} s; CPUs busy {busy:.0%} of the run")
    print(f"ratio steady state / slowest stage: {steady / slow_fps:.2f} (target >= 0.9); "
          f"with start-up: {e2e_fps / slow_fps:.2f}")
    print(f"all stages back to back, one process: {frames / total:.1f} frames/s")
    bound = min(slow_fps, args.num_cpus * frames / total)
    print(f"what {args.num_cpus} CPUs allow (the slowest stage alone, or the CPUs x all stages "
          f"back to back, the lower): {bound:.1f} frames/s; end to end with start-up / that: "
          f"{e2e_fps / bound:.2f}, steady state / that: {steady / bound:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "identities": args.identities, "frames": frames, "num_cpus": args.num_cpus,
            "stage_seconds_per_identity": {k: v / len(ids) for k, v in times.items()},
            "slowest_stage": slowest, "slowest_stage_fps": slow_fps, "e2e_fps": e2e_fps,
            "steady_fps": steady, "first_identity_s": first, "cpu_bound_fps": bound,
            "cpu_busy": busy, "ratio": steady / slow_fps, "sequential_fps": frames / total},
            indent=1))


if __name__ == "__main__":
    main()
