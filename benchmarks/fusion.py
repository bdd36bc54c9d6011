"""Paper 003's fusion on a pain3d dataset: an encoder (paper 002) trained once, then
`pain3d ablate` over the seeds for intermediate and late (weighted) fusion of true and
encoder-predicted expression parameters, then every late run scored as each part alone and
under each combination.

    .venv/bin/python benchmarks/fusion.py --data data/pain3d-120 --seeds 3

A late-fusion run trains its 2D head and 3D classifier each on its own loss, so one run holds
what a late_max, late_mean and late_weighted run of that seed would train (only w differs):
the combinations are computed from its test predictions, beside the 2D head alone (the
"+ AU queries" model of that run) and the 3D classifier alone; paired differences are taken
against the 2D head of the same run (the intermediate rows: of the late run of that seed). Steps that finished before
(the encoder, the ablation) are read back, not run again.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ROWS = ("fusion_intermediate", "fusion_late_weighted", "fusion_intermediate_encoder",
        "fusion_late_weighted_encoder")
COLS = ("macro_auroc", "acc", "acc_pm1", "acc_pm2")
NAMES = {"2d": "2D head alone, of the late run", "3d": "3D classifier alone", "max": "late max",
         "mean": "late mean", "weighted": "late weighted (learned w)"}


def _pain3d(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", "cluster.cli", *argv], check=True, cwd=REPO)


def _best(run: Path) -> str:
    return (run / "best_checkpoint.txt").read_text().strip()


def prepare(args) -> tuple[Path, Path]:
    store = Path(args.storage)
    enc = store / "encoder-s0"
    if not (enc / "best_checkpoint.txt").is_file():
        _pain3d("train", "encoder", "--data", args.data, "--name", "encoder-s0",
                f"train.storage={store}")
    abl = store / "fusion"
    if not (abl / "ablation.json").is_file():  # an interrupted one continues
        _pain3d("ablate", "--data", args.data, "--seeds", str(args.seeds), "--name", "fusion",
                "--rows", ",".join(ROWS), f"train.storage={store}",
                f"train.model.fusion_encoder={_best(enc)}", *(["--resume"] if abl.is_dir()
                                                               else []))
    return enc, abl


def late_parts(run: Path, data: str) -> dict:
    """One late-fusion run's test split: each part alone and each combination."""
    import torch

    from train.evaluate import _batches
    from train.loop import load_model, predict
    from train.metrics import compute_metrics, pain_only_metrics
    from train.run_folder import fetch_checkpoint

    model = load_model(fetch_checkpoint(_best(run)))
    split = json.loads((run / "split.json").read_text())
    p = predict(model, _batches(data, split["test"], model.cfg), "student", torch.device("cpu"))
    sm = {k: torch.as_tensor(p[f"logits_{k}"]).softmax(-1).numpy() for k in ("2d", "3d")}
    w = float(model.late.weight.detach()) if model.late.how == "weighted" else 0.5
    probs = {"2d": sm["2d"], "3d": sm["3d"], "max": np.maximum(sm["2d"], sm["3d"]),
             "mean": (sm["2d"] + sm["3d"]) / 2, "weighted": (1 - w) * sm["2d"] + w * sm["3d"]}
    out = {k: {"pain_only": pain_only_metrics(np.log(np.maximum(v, 1e-12)), p["y"]),
               "all": compute_metrics(np.log(np.maximum(v, 1e-12)), p["y"])}
           for k, v in probs.items()}
    return {"parts": out, "w": w}


def table(abl: Path, data: str, seeds: int) -> dict:
    summary = json.loads((abl / "ablation.json").read_text())
    rows: dict[str, list] = {}
    for src in ("", "_encoder"):
        said = "encoder" if src else "true"
        for s in range(seeds):
            run = abl / f"fusion_late_weighted{src}-seed{s}"
            r = late_parts(run, data)
            for k, v in r["parts"].items():
                rows.setdefault(f"{NAMES[k]} ({said} params)", []).append(v)
            rows.setdefault(f"learned w ({said} params)", []).append(r["w"])
        inter = summary["runs"][f"fusion_intermediate{src}"]
        rows[f"intermediate fusion ({said} params)"] = inter
    return rows


def markdown(rows: dict) -> str:
    from train.metrics import mean_std, paired

    lines = ["| model | n | " + " | ".join(f"{c} (pain only)" for c in COLS)
             + " | macro_auroc (all frames) | Δ macro AUROC vs the run's 2D head (paired, p) |",
             "|---" * (len(COLS) + 4) + "|"]
    for label, runs in rows.items():
        if label.startswith("learned w"):
            m, sd, n = mean_std(runs)
            lines.append(f"| {label} | {n} | {m:.3f} ± {sd:.3f} |" + " |" * (len(COLS) + 1))
            continue
        cells = [mean_std([r["pain_only"][c] if r else None for r in runs]) for c in COLS]
        allm = mean_std([r["all"]["macro_auroc"] if r else None for r in runs])
        base = rows[f"{NAMES['2d']} (" + label.rsplit(" (", 1)[1]]  # that run's own 2D head
        d = paired([b["pain_only"]["macro_auroc"] for b in base],
                   [r["pain_only"]["macro_auroc"] if r else None for r in runs])
        lines.append(f"| {label} | {cells[0][2]} | " + " | ".join(
            f"{m:.3f} ± {sd:.3f}" for m, sd, _ in cells)
            + f" | {allm[0]:.3f} ± {allm[1]:.3f} | {d['diff']:+.3f} ± {d['diff_std']:.3f} "
              f"(p {d['p']:.3f}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--storage", default="runs/issue17-fusion")
    args = ap.parse_args()
    enc, abl = prepare(args)
    rows = table(abl, args.data, args.seeds)
    md = markdown(rows)
    (abl / "fusion_bench.json").write_text(json.dumps(rows, indent=1))
    (abl / "fusion_bench.md").write_text(md)
    enc_eval = json.loads((enc / "encoder_eval.json").read_text())
    print(f"encoder: test expression r {enc_eval['expression_r']:.3f}, RMSE "
          f"{enc_eval['expression_rmse']:.3f} training stds")
    print(md)


if __name__ == "__main__":
    main()
