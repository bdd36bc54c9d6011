"""`pain3d import unbc` throughput: a UNBC-layout tree (320x240 video frames, tests/unbc_fixture.py)
made from a pain3d dataset's renders is imported serially in one process and on Ray Data, in
the same run; prints frames/s of each, their ratio, bytes per aligned frame and the time the
whole archive (48,398 frames) would take at the Ray Data rate.

    .venv/bin/python benchmarks/unbc_import.py --data data/pain3d-24 --all-views
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCHIVE_FRAMES = 48_398


def main() -> None:
    import ray

    from pipelines import unbc
    from tests.unbc_fixture import build_unbc_tree

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="pain3d dataset whose renders make the tree")
    p.add_argument("--subjects", type=int, default=None)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--all-views", action="store_true", help="every view, not frontal only")
    p.add_argument("--cpus", type=int, default=2)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="unbc-bench-"))
    try:
        fx = build_unbc_tree(args.data, tmp / "archive", args.subjects, args.all_views)
        root = str(tmp / "archive")
        subjects = unbc.subjects_of(root)
        ids = unbc.identities(subjects)
        t0 = time.perf_counter()
        frames = sum(unbc.import_subject(root, s, ids[s], str(tmp / "serial"), args.size)["frames"]
                     for s in subjects)
        serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter() - t0
        t0 = time.perf_counter()
        m = unbc.run(root, str(tmp / "ray"), args.size)
        cold = time.perf_counter() - t0  # Ray's worker processes start in this pass
        t0 = time.perf_counter()
        unbc.run(root, str(tmp / "ray-warm"), args.size)
        parallel = time.perf_counter() - t0
        assert m["counts"]["frames"] == frames
        shards = sum(f.stat().st_size for f in (tmp / "ray" / "frames").iterdir())
        print(f"{len(subjects)} subjects, {frames} frames ({len(fx['frames'])} in the tree, "
              f"{args.size}px aligned faces), {args.cpus} CPUs for Ray")
        print(f"serial, one process:  {frames / serial:6.1f} frames/s ({serial:.1f} s)")
        print(f"Ray Data, cold:       {frames / cold:6.1f} frames/s ({cold:.1f} s: workers "
              f"start; ray.init {start:.1f} s not counted)")
        print(f"Ray Data, warm:       {frames / parallel:6.1f} frames/s ({parallel:.1f} s)")
        print(f"ratio Ray (warm) / serial: {serial / parallel:.2f}")
        print(f"bytes per frame:      {shards / frames / 1024:.1f} KiB (zstd Parquet of PNGs)")
        print(f"whole archive ({ARCHIVE_FRAMES:,} frames) at the Ray rate: "
              f"{ARCHIVE_FRAMES / (frames / parallel) / 60:.1f} min")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
