"""The paper's Table 2 ablation: four models on the same data split, over several seeds,
evaluated on the test split. The table compares the pain-only protocol (PSPI 1-16, the
paper's 16-class setting) with the paper; all-frames numbers are listed apart, labelled.
Means +- sample std (ddof=1) over the seeds that finished; failed seeds are reported."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines import guard, storage
from train.config import FUSIONS
from train.evaluate import PAPER_TABLE2, evaluate
from train.metrics import cell, mean_std, paired
from train.run import fetch_checkpoint, train

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One model of the table: its input, whether it distils from the teacher, the
    ``train.model`` / ``train`` settings it changes, and the row it is compared with."""

    label: str
    mode: str = "student"
    distill: bool = False
    model: tuple = ()  # (train.model field, value) pairs
    train: tuple = ()  # (train field, value) pairs
    base: str | None = "au_queries"  # paired differences against this row


ROWS = {  # the paper's Table 2 first (the default rows), then the authors' later options
    "baseline": Row("ViTPain baseline (CLS only)", model=(("au_queries", False),), base=None),
    "au_queries": Row("+ AU queries", base="baseline"),
    "au_queries_distill": Row("+ AU queries + heatmap distillation", distill=True),
    "teacher": Row("teacher on heatmaps", mode="teacher", base="au_queries_distill"),
    "neutral_reference": Row("+ AU queries + neutral reference",
                             model=(("neutral_reference", True),)),
    "neutral_reference_shared": Row("+ AU queries + neutral reference (shared encoder)",
                                    model=(("neutral_reference", True), ("shared_encoder", True))),
    "neutral_reference_distill": Row("+ AU queries + neutral reference + distillation",
                                     distill=True, model=(("neutral_reference", True),),
                                     base="au_queries_distill"),
    "lora": Row("+ AU queries + LoRA (backbone frozen)", model=(("lora", "on"),)),
    "regression": Row("+ AU queries, regression + binary heads",
                      model=(("head", "regression"),)),
    "both_heads": Row("+ AU queries, class + regression + binary heads",
                      model=(("head", "both"),)),
    "weighted_sampling": Row("+ AU queries, weighted sampling",
                             train=(("sampling", "weighted"),)),
}
for _how in FUSIONS[1:]:  # paper 003: the frames' own 3D parameters, or an encoder's
    for _params, _said in (("truth", "true"), ("encoder", "encoder-predicted")):
        ROWS[f"fusion_{_how}" + ("_encoder" if _params == "encoder" else "")] = Row(
            f"+ AU queries + {_how.replace('_', ' ')} fusion of {_said} 3D parameters",
            model=(("fusion", _how), ("fusion_params", _params)))
DEFAULT_ROWS = ("baseline", "au_queries", "au_queries_distill", "teacher")
COLUMNS = ("macro_auroc", "acc", "acc_pm1", "acc_pm2")


def parse_rows(text: str | None) -> list[str]:
    """``--rows a,b,c`` -> row keys (the paper's four when empty)."""
    keys = [k.strip() for k in (text or "").split(",") if k.strip()] or list(DEFAULT_ROWS)
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        raise ValueError(f"unknown ablation row {unknown[0]!r}; choose from {', '.join(ROWS)}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"--rows names a row twice: {','.join(keys)}")
    return keys


def row_config(cfg, row: Row):
    """The config of one row: ``cfg`` with the row's settings (LoRA: ``lora.rank`` 8 unless
    the config gives one; the teacher never takes a neutral reference or 3D parameters)."""
    c = copy.deepcopy(cfg)
    c.train.model.au_queries = True
    for key, value in row.model:
        if key == "lora":
            c.train.model.lora.rank = c.train.model.lora.rank or 8
        else:
            setattr(c.train.model, key, value)
    for key, value in row.train:
        setattr(c.train, key, value)
    if row.mode == "teacher":
        c.train.model.neutral_reference = c.train.model.shared_encoder = False
        c.train.model.fusion = "none"
    return c


def _run_row(cfg, data, name, key, row: Row, seed, teacher_ckpt):
    c = row_config(cfg, row)
    c.train.storage = f"{cfg.train.storage.rstrip('/')}/{name}"  # runs inside the ablation
    res = train(c, row.mode, data, f"{key}-seed{seed}",
                teacher=teacher_ckpt if row.distill else None, distill=row.distill, seed=seed)
    r = evaluate(fetch_checkpoint(res.best_checkpoint), data, row.mode, res.split, "test",
                 shots=c.train.eval.neutral_shots)
    return res.best_checkpoint, r


def _order(keys: list[str]) -> list[str]:
    """The teacher first when a row distils from it (it is a prerequisite, shown only when
    asked for)."""
    needs = "teacher" in keys or any(ROWS[k].distill for k in keys)
    return (["teacher"] if needs else []) + [k for k in keys if k != "teacher"]


def ablate(cfg: "Pain3DConfig", data: str, seeds: int, name: str = "ablation",
           progress=print, rows: list[str] | None = None) -> dict:
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    keys = list(rows or DEFAULT_ROWS)
    guard.check_name("ablation", name)
    loc = storage.resolve(cfg.train.storage)
    runs: dict[str, list] = {k: [] for k in _order(keys)}  # per row: per seed, a report or None
    failures = []
    for s in range(seeds):
        seed, teacher_ckpt = cfg.seed + s, None
        for key in _order(keys):
            row = ROWS[key]
            try:
                if row.distill and teacher_ckpt is None:
                    raise RuntimeError("no teacher checkpoint (the teacher run failed)")
                ckpt, r = _run_row(cfg, data, name, key, row, seed, teacher_ckpt)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one failed seed is reported, not fatal
                log.warning("seed %d %s failed: %s", seed, row.label, e)
                failures.append({"seed": seed, "row": key, "error": str(e).splitlines()[0]})
                runs[key].append(None)
                continue
            teacher_ckpt = ckpt if key == "teacher" else teacher_ckpt
            runs[key].append({"all": r["metrics"], "pain_only": r["pain_only"]})
            progress(f"seed {seed} {row.label}: test macro AUROC {r['metrics']['macro_auroc']:.3f} "
                     f"(pain frames only {r['pain_only'].get('macro_auroc', float('nan')):.3f})")
    runs = {k: runs[k] for k in keys}
    summary = {"data": data, "seeds": seeds, "rows": summarise(runs), "runs": runs,
               "failures": failures, "paper": PAPER_TABLE2}
    storage.write_json(loc, f"{name}/ablation.json", summary)
    storage.write_bytes(loc, f"{name}/ablation.md", markdown(summary).encode())
    return summary


def _column(reports: list, protocol: str, col: str) -> list:
    return [None if r is None else r[protocol].get(col) for r in reports]


def summarise(runs: dict[str, list]) -> dict:
    """Per row and protocol: (mean, std, n) per column; and paired differences to the row's
    base when the table has it (baseline -> + AU queries -> + distillation -> teacher; the
    later options against + AU queries)."""
    table = {key: {p: {c: mean_std(_column(reports, p, c)) for c in COLUMNS}
                   for p in ("pain_only", "all")} for key, reports in runs.items()}
    for key in runs:
        a = ROWS[key].base
        if a in runs:
            table[key]["vs_base"] = {c: paired(_column(runs[a], "pain_only", c),
                                               _column(runs[key], "pain_only", c))
                                     for c in COLUMNS}
    return table


def _paper(key: str) -> str:
    paper = PAPER_TABLE2.get(key)
    return " | ".join(f"{paper[c]:.2f}" if paper else "—" for c in COLUMNS)


def markdown(summary: dict) -> str:
    t, seeds = summary["rows"], summary["seeds"]
    lines = [f"# Ablation: test split, {seeds} seed(s), mean ± sample std (ddof=1)", "",
             "## Pain frames only (PSPI 1-16, 16 classes): the paper's Table 2 setting", "",
             "Same classes and frames as the paper's Table 2; different data and model: the "
             "paper trains a pretrained ViT-L on its 2,500 3DPain identities, ours is this "
             "dataset and config (backbone from scratch unless train.model.pretrained_file). "
             "Rows the paper does not have show — in its columns.",
             "",
             "| model | n | " + " | ".join(COLUMNS) + " | " + " | ".join(f"{c} (paper)"
                                                               for c in COLUMNS) + " |",
             "|---" * (2 * len(COLUMNS) + 2) + "|"]
    for key in t:
        n = t[key]["pain_only"]["macro_auroc"][2]
        lines.append(f"| {ROWS[key].label} | {n} | " + " | ".join(
            cell(t[key]["pain_only"][c]) for c in COLUMNS) + f" | {_paper(key)} |")
    lines += ["", "Paired difference to the row it adds to (pain frames only; mean ± std over "
              "seeds, paired t-test p):", "", "| model | vs | " + " | ".join(COLUMNS) + " |",
              "|---" * (len(COLUMNS) + 2) + "|"]
    for key in t:
        if "vs_base" in t[key]:
            d = t[key]["vs_base"]
            lines.append(f"| {ROWS[key].label} | {ROWS[ROWS[key].base].label} | " + " | ".join(
                f"{d[c]['diff']:+.3f} ± {d[c]['diff_std']:.3f} (p {d[c]['p']:.3f})"
                for c in COLUMNS) + " |")
    lines += ["", "## All frames (PSPI 0-16, 17 classes; neutral frames included: not the "
              "paper's protocol)", "", "| model | " + " | ".join(COLUMNS) + " |",
              "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {ROWS[key].label} | " + " | ".join(cell(t[key]["all"][c]) for c in COLUMNS)
              + " |" for key in t]
    if summary["failures"]:
        lines += ["", "## Failed runs (left out of the means above)", ""]
        lines += [f"- seed {f['seed']}, {f['row']}: {f['error']}" for f in summary["failures"]]
    return "\n".join(lines) + "\n"
