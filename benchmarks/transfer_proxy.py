"""A dry run of the paper's Table 3 protocol where the real archive cannot go (it is licensed):
a *proxy* target in UNBC-McMaster's exact layout, made from a pain3d dataset of other identities
(tests/unbc_fixture.py), imported with `pain3d import unbc` and cross-validated with
`pain3d crossval` from scratch and from each pretrained checkpoint given. It checks the
plumbing end to end and whether synthetic pretraining transfers to unseen people; it says
nothing about real faces.

    .venv/bin/python benchmarks/transfer_proxy.py --target data/pain3d-s7-25 \\
        --init rgb=runs/table2-240/au_queries-split0-seed0 \\
        --init distilled=runs/table2-240/au_queries_distill-split0-seed0
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _best(run: str) -> str:
    """A run folder's best checkpoint (best_checkpoint.txt), or the checkpoint given."""
    p = Path(run) / "best_checkpoint.txt"
    return p.read_text().strip() if p.is_file() else run


def main() -> None:
    from tests.unbc_fixture import build_unbc_tree

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="pain3d dataset whose renders make the proxy")
    p.add_argument("--init", action="append", default=[], metavar="NAME=RUN",
                   help="a pretrained run folder or checkpoint to fine-tune from (repeatable)")
    p.add_argument("--work", default="data/unbc-proxy", help="tree and import go here")
    p.add_argument("--storage", default="runs/transfer-proxy")
    p.add_argument("--folds", type=int, default=5)
    args, extra = p.parse_known_args()  # the rest: config overrides for every crossval
    work = Path(args.work)
    if not (work / "import" / "manifest.json").is_file():
        shutil.rmtree(work / "tree", ignore_errors=True)
        build_unbc_tree(args.target, work / "tree", all_views=True)
        subprocess.run([sys.executable, "-m", "cluster.cli", "import", "unbc", str(work / "tree"),
                        "--out", str(work / "import")], check=True, cwd=REPO)
    runs = {"scratch": None, **dict(kv.split("=", 1) for kv in args.init)}
    for name, run in runs.items():
        if (Path(args.storage) / name / "crossval.json").is_file():
            continue  # finished before: kept
        cmd = [sys.executable, "-m", "cluster.cli", "crossval", "--data", str(work / "import"),
               "--folds", str(args.folds), "--name", name, f"train.storage={args.storage}",
               *(["--init", _best(run)] if run else []), *extra]
        if (Path(args.storage) / name / "record.json").is_file():
            cmd.append("--resume")
        subprocess.run(cmd, check=True, cwd=REPO)
    print("| run | initialised from | AUROC ≥3 | 95% CI over test subjects | F1 ≥3 | AUROC ≥2 "
          "| Pearson r | MAE |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        rec = json.loads((Path(args.storage) / name / "crossval.json").read_text())
        s, ci = rec["mean_std"], rec.get("ci_auroc_pspi_ge3")
        cells = [f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" for k in
                 ("auroc_pspi_ge3", "f1_pspi_ge3", "auroc_pspi_ge2", "pearson_r", "mae_expected")]
        cells.insert(1, f"[{ci['lo']:.3f}, {ci['hi']:.3f}]" if ci else "—")
        print(f"| {name} | {run or 'random init'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
