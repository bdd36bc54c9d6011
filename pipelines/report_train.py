"""The report's training sections, read from what the training commands leave on disk:
a run folder (``history.json``, ``config.json``, ``eval-*/metrics.json``), an ablation folder
(``ablation.json``) and a sweep folder (``results.csv``, its plots, ``final.json``).
No torch: the figures are redrawn from JSON with ``train.plots``."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

from train import plots

METRIC_ROWS = (("macro_auroc", "macro AUROC"), ("acc", "accuracy"), ("acc_pm1", "±1"),
               ("acc_pm2", "±2"), ("mae_argmax", "MAE"))
GROUP_METRICS = ("macro_auroc", "acc", "acc_pm1", "mae_argmax")
SWEEP_PLOTS = ("history.png", "importance.png")


class MissingRunFiles(FileNotFoundError):
    pass


def check_inputs(runs: list[str], ablation: str | None, sweep: str | None) -> None:
    """One sentence per kind of wrong folder, before the report does any work."""
    for r in runs:
        if not (Path(r) / "history.json").is_file():
            raise MissingRunFiles(f"--run {r} is not a finished pain3d training run (no "
                                  "history.json); give a folder written by pain3d train")
    if ablation and not (Path(ablation) / "ablation.json").is_file():
        raise MissingRunFiles(f"--ablation {ablation} holds no ablation.json; give the folder "
                              "pain3d ablate wrote (train.storage/NAME)")
    if sweep and not (Path(sweep) / "results.csv").is_file():
        raise MissingRunFiles(f"--sweep {sweep} holds no results.csv; give the folder pain3d "
                              "tune wrote (tune.storage/NAME) after its trials finished")


def _fmt(v, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return format(v, spec)


def _evaluation(metrics_json: Path, folder: Path, prefix: str) -> dict:
    r = json.loads(metrics_json.read_text())
    m, po = r["metrics"], r.get("pain_only", {})
    e = {"name": metrics_json.parent.name, "split": r.get("split"), "frames": r.get("frames"),
         "rows": [(label, _fmt(m.get(k)), _fmt(po.get(k))) for k, label in METRIC_ROWS],
         "pain_frames": po.get("frames"), "groups": [], "confusion": None}
    for attr, per in r.get("groups", {}).items():
        e["groups"].append({"attr": attr, "rows": [
            (g, *(_fmt(gm.get(k)) for k in GROUP_METRICS)) for g, gm in per.items()]})
    png = f"{prefix}-{e['name']}-confusion.png"
    if r.get("confusion"):
        plots.confusion_png(r["confusion"], folder / png,
                            f"Confusion matrix ({r.get('split')} split)")
        e["confusion"] = png
    elif (metrics_json.parent / "confusion.png").is_file():  # older evaluations
        shutil.copyfile(metrics_json.parent / "confusion.png", folder / png)
        e["confusion"] = png
    return e


def run_section(run: str, folder: Path, index: int) -> dict:
    """A run's curves, best epoch and evaluations (any ``metrics.json`` under the run)."""
    root = Path(run)
    history = json.loads((root / "history.json").read_text())
    cfg = json.loads((root / "config.json").read_text()) if (root / "config.json").is_file() \
        else {}
    prefix = f"run{index}"
    curves = None
    if history:
        curves = f"{prefix}-curves.png"
        plots.curves_png(history, folder / curves)
    best = max(history, key=lambda h: h.get("val_macro_auroc", -1.0)) if history else {}
    evals = [_evaluation(p, folder, prefix) for p in sorted(root.rglob("metrics.json"))]
    return {"name": root.name, "path": str(run), "mode": cfg.get("mode", "?"),
            "teacher": cfg.get("teacher"), "epochs": len(history), "curves": curves,
            "best": {"epoch": best.get("epoch"), "auroc": _fmt(best.get("val_macro_auroc")),
                     "acc": _fmt(best.get("val_acc")), "pm1": _fmt(best.get("val_acc_pm1"))},
            "evaluations": evals}


def ablation_section(path: str) -> dict:
    from train.ablate import COLUMNS, ROWS
    from train.metrics import cell

    s = json.loads((Path(path) / "ablation.json").read_text())
    paper = s.get("paper", {})
    rows = []
    order = list(ROWS)  # the table's order (ablation.json's keys are sorted on writing)
    for key, t in sorted(s["rows"].items(),
                         key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        label = ROWS[key].label if key in ROWS else key
        rows.append({"label": label, "n": t["pain_only"]["macro_auroc"][2],
                     "pain_only": [cell(t["pain_only"][c]) for c in COLUMNS],
                     "all": [cell(t["all"][c]) for c in COLUMNS],
                     "paper": [_fmt(paper[key][c], ".2f") if key in paper else "—"
                               for c in COLUMNS]})
    return {"path": path, "seeds": s.get("seeds"), "columns": list(COLUMNS), "rows": rows,
            "data": s.get("data"), "failures": s.get("failures", [])}


def sweep_section(path: str, folder: Path) -> dict:
    """The leaderboard (best first, as results.csv is written), the Optuna plots, and the
    final best-vs-paper comparison when the sweep got that far."""
    with open(Path(path) / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fixed = {"trial", "paper_weights", "status", "epochs", "val_macro_auroc", "val_acc",
             "val_acc_pm1", "val_mae"}
    weights = [k for k in (rows[0] if rows else {}) if k not in fixed]
    head = ["trial", *weights, "val macro AUROC", "val acc", "val ±1", "epochs", "status"]

    def num(v):
        return _fmt(float(v)) if v not in ("", None) else "—"

    body = [[r["trial"] + (" (paper's weights)" if r.get("paper_weights") == "True" else ""),
             *(_fmt(float(r[k]), ".3g") for k in weights), num(r.get("val_macro_auroc")),
             num(r.get("val_acc")), num(r.get("val_acc_pm1")), r.get("epochs", ""),
             r.get("status", "")] for r in rows]
    shown = []
    for name in SWEEP_PLOTS:
        if (Path(path) / name).is_file():
            shutil.copyfile(Path(path) / name, folder / f"sweep-{name}")
            shown.append(f"sweep-{name}")
    final = None
    if (Path(path) / "final.json").is_file():
        from train.metrics import cell

        fj = json.loads((Path(path) / "final.json").read_text())
        final = {"seeds": fj.get("seeds"), "columns": list(next(iter(fj["rows"].values()))),
                 "rows": [(label, [cell(v) for v in cols.values()])
                          for label, cols in fj["rows"].items()]}
    return {"path": path, "head": head, "rows": body, "plots": shown, "final": final}
