"""The paper's Table 2 ablation: four models on the same data split, over several seeds,
evaluated on the test split. The table compares the pain-only protocol (PSPI 1-16, the
paper's 16-class setting) with the paper; all-frames numbers are listed apart, labelled.
Means +- sample std (ddof=1) over the seeds that finished; failed seeds are reported."""
from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

from pipelines import guard, storage
from train.evaluate import PAPER_TABLE2, evaluate
from train.metrics import mean_std, paired
from train.run import fetch_checkpoint, train

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig

log = logging.getLogger(__name__)
ROWS = [  # (key, label, input mode, AU queries, distillation)
    ("baseline", "ViTPain baseline (CLS only)", "student", False, False),
    ("au_queries", "+ AU queries", "student", True, False),
    ("au_queries_distill", "+ AU queries + heatmap distillation", "student", True, True),
    ("teacher", "teacher on heatmaps", "teacher", True, False),
]
COLUMNS = ("macro_auroc", "acc", "acc_pm1", "acc_pm2")


def _run_row(cfg, data, name, key, mode, queries, distill, seed, teacher_ckpt):
    c = copy.deepcopy(cfg)
    c.train.model.au_queries = queries
    c.train.storage = f"{cfg.train.storage.rstrip('/')}/{name}"  # runs inside the ablation
    res = train(c, mode, data, f"{key}-seed{seed}", teacher=teacher_ckpt if distill else None,
                distill=distill, seed=seed)
    r = evaluate(fetch_checkpoint(res.best_checkpoint), data, mode, res.split, "test")
    return res.best_checkpoint, r


def ablate(cfg: "Pain3DConfig", data: str, seeds: int, name: str = "ablation",
           progress=print) -> dict:
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    guard.check_name("ablation", name)
    loc = storage.resolve(cfg.train.storage)
    runs: dict[str, list] = {k: [] for k, *_ in ROWS}  # per row: per seed, a report or None
    failures = []
    for s in range(seeds):
        seed, teacher_ckpt = cfg.seed + s, None
        # the teacher first: it is a row of its own and the distillation row needs it
        for key, label, mode, queries, distill in [ROWS[3], ROWS[0], ROWS[1], ROWS[2]]:
            try:
                if distill and teacher_ckpt is None:
                    raise RuntimeError("no teacher checkpoint (the teacher run failed)")
                ckpt, r = _run_row(cfg, data, name, key, mode, queries, distill, seed,
                                   teacher_ckpt)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one failed seed is reported, not fatal
                log.warning("seed %d %s failed: %s", seed, label, e)
                failures.append({"seed": seed, "row": key, "error": str(e).splitlines()[0]})
                runs[key].append(None)
                continue
            teacher_ckpt = ckpt if key == "teacher" else teacher_ckpt
            runs[key].append({"all": r["metrics"], "pain_only": r["pain_only"]})
            progress(f"seed {seed} {label}: test macro AUROC {r['metrics']['macro_auroc']:.3f} "
                     f"(pain frames only {r['pain_only'].get('macro_auroc', float('nan')):.3f})")
    summary = {"data": data, "seeds": seeds, "rows": summarise(runs), "runs": runs,
               "failures": failures, "paper": PAPER_TABLE2}
    storage.write_json(loc, f"{name}/ablation.json", summary)
    storage.write_bytes(loc, f"{name}/ablation.md", markdown(summary).encode())
    return summary


def _column(reports: list, protocol: str, col: str) -> list:
    return [None if r is None else r[protocol].get(col) for r in reports]


def summarise(runs: dict[str, list]) -> dict:
    """Per row and protocol: (mean, std, n) per column; and paired differences between
    consecutive rows (baseline -> + AU queries -> + distillation -> teacher)."""
    table = {key: {p: {c: mean_std(_column(runs[key], p, c)) for c in COLUMNS}
                   for p in ("pain_only", "all")} for key, *_ in ROWS}
    for (a, *_), (b, *_) in zip(ROWS, ROWS[1:]):
        table[b]["vs_previous"] = {c: paired(_column(runs[a], "pain_only", c),
                                             _column(runs[b], "pain_only", c)) for c in COLUMNS}
    return table


def _cell(ms) -> str:
    mean, std, n = ms
    return "n/a" if n == 0 else f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def markdown(summary: dict) -> str:
    t, seeds = summary["rows"], summary["seeds"]
    lines = [f"# Ablation: test split, {seeds} seed(s), mean ± sample std (ddof=1)", "",
             "## Pain frames only (PSPI 1-16, 16 classes): the paper's Table 2 setting", "",
             "Same classes and frames as the paper's Table 2; different data and model: the "
             "paper trains a pretrained ViT-L on its 2,500 3DPain identities, ours is this "
             "dataset and config (backbone from scratch unless train.model.pretrained_file).",
             "",
             "| model | n | " + " | ".join(COLUMNS) + " | " + " | ".join(f"{c} (paper)"
                                                               for c in COLUMNS) + " |",
             "|---" * (2 * len(COLUMNS) + 2) + "|"]
    for key, label, *_ in ROWS:
        n = t[key]["pain_only"]["macro_auroc"][2]
        lines.append(f"| {label} | {n} | " + " | ".join(_cell(t[key]["pain_only"][c])
                                                        for c in COLUMNS)
                     + " | " + " | ".join(f"{PAPER_TABLE2[key][c]:.2f}" for c in COLUMNS) + " |")
    lines += ["", "Paired difference to the row above (pain frames only; mean ± std over "
              "seeds, paired t-test p):", "", "| model | " + " | ".join(COLUMNS) + " |",
              "|---" * (len(COLUMNS) + 1) + "|"]
    for key, label, *_ in ROWS[1:]:
        d = t[key]["vs_previous"]
        lines.append(f"| {label} | " + " | ".join(
            f"{d[c]['diff']:+.3f} ± {d[c]['diff_std']:.3f} (p {d[c]['p']:.3f})" for c in COLUMNS)
            + " |")
    lines += ["", "## All frames (PSPI 0-16, 17 classes; neutral frames included: not the "
              "paper's protocol)", "", "| model | " + " | ".join(COLUMNS) + " |",
              "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(_cell(t[key]["all"][c]) for c in COLUMNS) + " |"
              for key, label, *_ in ROWS]
    if summary["failures"]:
        lines += ["", "## Failed runs (left out of the means above)", ""]
        lines += [f"- seed {f['seed']}, {f['row']}: {f['error']}" for f in summary["failures"]]
    return "\n".join(lines) + "\n"
