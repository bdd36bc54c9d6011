"""Paper 002's image -> 3D encoder on a pain3d dataset: `pain3d train encoder` (a Ray Train
job, 2 DDP workers, configs/encoder.yaml over the local preset) for each seed, then its
test-split evaluation as a table (mean ± sample std over seeds; the split follows the seed).

    .venv/bin/python benchmarks/encoder.py --data data/pain3d-120 --seeds 0 1 2

Runs that finished before are read back, not trained again (benchmarks/fusion.py uses the
seed-0 run of the same storage).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
COLUMNS = {  # key in encoder_eval.json -> column
    "expression_r": "expression r", "expression_rmse": "expression RMSE (stds)",
    "mean_baseline_expression_rmse": "RMSE of the training mean",
    "shape_r": "shape r", "vertex_mm": "vertex error (mm)",
    "vertex_expression_mm": "vertex error, true shape (mm)",
    "vertex_mean_baseline_mm": "vertex error of the means (mm)",
    "pspi_macro_auroc": "PSPI macro AUROC (head on predicted)",
    "truth/pspi_macro_auroc": "PSPI macro AUROC (head on true)", "pspi_mae": "PSPI MAE",
}


def _run(args, seed: int) -> dict:
    name = f"encoder-s{seed}"
    folder = Path(args.storage) / name
    if not (folder / "encoder_eval.json").is_file():
        subprocess.run([sys.executable, "-m", "cluster.cli", "train", "encoder", "--data",
                        args.data, "--name", name, "--seed", str(seed),
                        f"train.storage={args.storage}"], check=True, cwd=REPO)
    r = json.loads((folder / "encoder_eval.json").read_text())
    r.update({f"truth/{k}": v for k, v in r["from_true_parameters"].items()})
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--storage", default="runs/issue17-fusion")
    args = ap.parse_args()
    runs = [_run(args, s) for s in args.seeds]
    print(f"{len(runs)} seeds, {runs[0]['frames']} test frames (seed {args.seeds[0]})\n")
    print("| metric | mean ± std |\n|---|---|")
    for key, label in COLUMNS.items():
        v = np.array([r[key] for r in runs], float)
        print(f"| {label} | {v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else float('nan'):.3f} |")


if __name__ == "__main__":
    main()
