"""Paper 001's learned rig on a pain3d dataset: `pain3d train rig` (a Ray Train job, 2 workers)
for each variant and seed, then a table of the test read-back (mean ± sample std over seeds).

    .venv/bin/python benchmarks/rig.py --data data/pain3d-120 --seeds 0 1 2

Variants: 001's CGAN and CAAE as written (soft labels y + N(-0.5, 0.5)), the CGAN with
centred soft labels (N(0, 0.5)), and the CAAE with re-targeting (not in 001). Runs that
finished before are read back, not trained again.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "cgan": ("CGAN (001 as written)", ["train.rig.model=cgan"]),
    "cgan-centred": ("CGAN, soft labels N(0, 0.5)", ["train.rig.model=cgan",
                                                     "train.rig.soft_label_mean=0"]),
    "caae": ("CAAE (001 as written)", ["train.rig.model=caae"]),
    "caae-retarget": ("CAAE + re-targeting", ["train.rig.model=caae", "train.rig.retarget=true"]),
}


def _run(args, key: str, seed: int) -> dict:
    name = f"{key}-s{seed}"
    folder = Path(args.storage) / name
    if not (folder / "rig_eval.json").is_file():
        t = time.time()
        subprocess.run([sys.executable, "-m", "cluster.cli", "train", "rig", "--data", args.data,
                        "--name", name, "--seed", str(seed), f"train.storage={args.storage}",
                        *VARIANTS[key][1], *args.overrides], check=True, cwd=REPO)
        (folder / "wall_s.txt").write_text(f"{time.time() - t:.1f}")
    r = json.loads((folder / "rig_eval.json").read_text())
    reg = np.asarray(r["regions"]["learned"])
    r["own_region"] = int((reg.argmax(1) == np.arange(len(reg))).sum())
    r["wall_s"] = float((folder / "wall_s.txt").read_text())
    return r


def _cell(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--storage", default="runs/rig-bench")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("overrides", nargs="*", help="config overrides for every run")
    args = p.parse_args()
    runs = {k: [_run(args, k, s) for s in args.seeds] for k in args.variants}
    real = [r["real"]["mae_mean"] for rs in runs.values() for r in rs]
    print(f"\nAU read-back on the test identities (SVR fitted on the training identities' real "
          f"parameters); {len(args.seeds)} seeds. Reader on real test parameters: MAE "
          f"{_cell(real)}.\n")
    print("| rig | MAE | MSE | AU43 MAE | raw out of bounds | diversity (std) | vertex spread "
          "(mm) | AUs moving their own region most (of 6) | wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, rs in runs.items():
        print(f"| {VARIANTS[k][0]} | {_cell([r['generated']['mae_mean'] for r in rs])} | "
              f"{_cell([r['generated']['mse_mean'] for r in rs])} | "
              f"{_cell([r['generated']['mae']['AU43'] for r in rs])} | "
              f"{_cell([r['out_of_bounds'] for r in rs])} | "
              f"{_cell([r['diversity']['param_std'] for r in rs])} | "
              f"{_cell([r['diversity']['vertex_std_mm'] for r in rs])} | "
              f"{_cell([r['own_region'] for r in rs])} | {_cell([r['wall_s'] for r in rs])} |")


if __name__ == "__main__":
    main()
