"""The paper's Table 2 ablation: four models on the same data split, over several seeds,
evaluated on the test split; mean +- std beside the paper's numbers."""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

from pipelines import guard, storage
from train.evaluate import PAPER_TABLE2, evaluate
from train.run import fetch_checkpoint, train

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig

ROWS = [  # (key, label, input mode, AU queries, distillation)
    ("baseline", "ViTPain baseline (CLS only)", "student", False, False),
    ("au_queries", "+ AU queries", "student", True, False),
    ("au_queries_distill", "+ AU queries + heatmap distillation", "student", True, True),
    ("teacher", "teacher on heatmaps", "teacher", True, False),
]
COLUMNS = ("macro_auroc", "acc", "acc_pm1", "acc_pm2")


def ablate(cfg: "Pain3DConfig", data: str, seeds: int, name: str = "ablation",
           progress=print) -> dict:
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    guard.check_name("ablation", name)
    loc = storage.resolve(cfg.train.storage)
    results: dict[str, list[dict]] = {k: [] for k, *_ in ROWS}
    for s in range(seeds):
        seed = cfg.seed + s
        teacher_ckpt = None
        # the teacher first: it is a row of its own and the distillation rows need it
        for key, label, mode, queries, distill in [ROWS[3], ROWS[0], ROWS[1], ROWS[2]]:
            c = copy.deepcopy(cfg)
            c.train.model.au_queries = queries
            c.train.storage = f"{cfg.train.storage.rstrip('/')}/{name}"  # runs inside the ablation
            run = f"{key}-seed{seed}"
            res = train(c, mode, data, run, teacher=teacher_ckpt if distill else None,
                        distill=distill, seed=seed)
            if key == "teacher":
                teacher_ckpt = res.best_checkpoint
            r = evaluate(fetch_checkpoint(res.best_checkpoint), data, mode, res.split, "test")
            results[key].append(r["metrics"])
            progress(f"seed {seed} {label}: test macro AUROC {r['metrics']['macro_auroc']:.3f}")
    table = {key: {col: (float(np.nanmean([m[col] for m in results[key]])),
                         float(np.nanstd([m[col] for m in results[key]])))
                   for col in COLUMNS} for key, *_ in ROWS}
    summary = {"data": data, "seeds": seeds, "rows": table, "runs": results,
               "paper": PAPER_TABLE2}
    storage.write_json(loc, f"{name}/ablation.json", summary)
    storage.write_bytes(loc, f"{name}/ablation.md", markdown(table, seeds).encode())
    return summary


def markdown(table: dict, seeds: int) -> str:
    head = "| model | " + " | ".join(f"{c} (ours)" for c in COLUMNS) + " | " + \
        " | ".join(f"{c} (paper)" for c in COLUMNS) + " |"
    lines = [f"# Ablation (test split, mean +- std over {seeds} seed(s))", "", head,
             "|---" * (2 * len(COLUMNS) + 1) + "|"]
    for key, label, *_ in ROWS:
        ours = " | ".join(f"{table[key][c][0]:.3f} +- {table[key][c][1]:.3f}" for c in COLUMNS)
        paper = " | ".join(f"{PAPER_TABLE2[key][c]:.2f}" for c in COLUMNS)
        lines.append(f"| {label} | {ours} | {paper} |")
    return "\n".join(lines) + "\n"

