"""The paper's Table 2 ablation: the rows trained on the same data splits (``splits``, each
over ``seeds`` seeds), evaluated on each split's test identities. The table compares the
pain-only protocol (PSPI 1-16, the paper's 16-class setting) with the paper; all-frames
numbers are listed apart, labelled. Means +- sample std (ddof=1) over the runs that
finished, and 95% CIs from a cluster bootstrap over test identities and seeds
(train/stats.py) with paired, Holm-corrected differences and the effect the design could
detect; failed runs are reported."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines import guard, storage
from train.config import FUSIONS
from train.evaluate import PAPER_TABLE2, evaluate
from train.metrics import cell, mean_std, paired
from train.run import plan_split, train
from train.run_folder import fetch_checkpoint
from train.seeds import host
from train.stats import pspi_0_15_macro_auroc

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
    # issue 31: ways for the student to use what the teacher knows (not in the paper)
    "heatmap": Row("+ AU queries + heatmap regression (decoder)",
                   train=(("weights.heatmap_distill", 1.0),)),
    "local": Row("+ AU queries, stride-8 tokens + per-AU heads",
                 model=(("local_tokens", True), ("per_au_heads", True))),
    "attention_distill": Row("+ AU queries + distillation + AU-attention distillation",
                             distill=True, train=(("weights.au_attention_distill", 1.0),),
                             base="au_queries_distill"),
    "teacher_init": Row("+ AU queries + distillation, student from the teacher's backbone",
                        distill=True, train=(("student_init", "teacher"),),
                        base="au_queries_distill"),
    "linear_projection": Row("+ AU queries + distillation through a learnable projection",
                             distill=True, train=(("distill_projection", "linear"),),
                             base="au_queries_distill"),
    "spatial_all": Row("+ AU queries + distillation + all spatial options",
                       distill=True, model=(("local_tokens", True), ("per_au_heads", True)),
                       train=(("weights.heatmap_distill", 1.0),
                              ("weights.au_attention_distill", 1.0),
                              ("student_init", "teacher"))),
}
for _how in FUSIONS[1:]:  # paper 003: the frames' own 3D parameters, or an encoder's
    for _params, _said in (("truth", "true"), ("encoder", "encoder-predicted")):
        ROWS[f"fusion_{_how}" + ("_encoder" if _params == "encoder" else "")] = Row(
            f"+ AU queries + {_how.replace('_', ' ')} fusion of {_said} 3D parameters",
            model=(("fusion", _how), ("fusion_params", _params)))
DEFAULT_ROWS = ("baseline", "au_queries", "au_queries_distill", "teacher")
MIN_IDENTITIES = 5  # test identities per split below which the bootstrap cannot see their spread
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
    for key, value in row.train:  # "weights.x": a loss weight
        *owner, field = key.split(".")
        setattr(c.train.weights if owner else c.train, field, value)
    if row.mode == "teacher":
        c.train.model.neutral_reference = c.train.model.shared_encoder = False
        c.train.model.fusion = "none"
    return c


def _run_row(cfg, data, name, run, row: Row, seed, teacher_ckpt, split, resume=False):
    c = row_config(cfg, row)
    c.train.storage = f"{cfg.train.storage.rstrip('/')}/{name}"  # runs inside the ablation
    # --resume: a run interrupted in training continues from its last checkpoint
    again = resume and storage.read_json(storage.resolve(c.train.storage),
                                         f"{run}/split.json") is not None
    res = train(c, row.mode, data, run, teacher=teacher_ckpt if row.distill else None,
                distill=row.distill, seed=seed, split=split, resume=again)
    r = evaluate(fetch_checkpoint(res.best_checkpoint), data, row.mode, res.split, "test",
                 shots=c.train.eval.neutral_shots, keep=True)
    return res.best_checkpoint, r


def _finished(loc, name: str, run: str):
    """(checkpoint, report, scored frames) of a run an earlier call finished, else None."""
    from train.stats import read_scored

    rec = storage.read_json(loc, f"{name}/reports/{run}.json")
    if rec is None:
        return None
    scored = read_scored(loc, f"{name}/scored/{run}.npz", rec["split"], rec["seed"])
    return None if scored is None else (rec["checkpoint"], rec, scored)


def _earlier(loc, name: str, run_of: dict[str, str]) -> dict:
    """Per row of one split and seed, what :func:`_finished` read back (None: not finished).
    A finished teacher whose checkpoint is gone (reports kept, run folders not) is trained
    again when a student still needs it: runs are deterministic, so to the same weights."""
    done = {k: _finished(loc, name, run) for k, run in run_of.items()}
    students_left = any(ROWS[k].distill and done[k] is None for k in done)
    if students_left and done.get("teacher") is not None:
        try:
            fetch_checkpoint(done["teacher"][0])
        except FileNotFoundError:
            done["teacher"] = None
    return done


def split_of(cfg, data: str, j: int) -> dict:
    """Split ``j`` of the ablation: split 0 is the one pain3d train makes; split j > 0 is
    train.split's stratified split dealt in another seeded order (train.data.make_split's
    ``variant``)."""
    from train.data import identity_table, make_split

    if j == 0:
        return plan_split(cfg, data)
    split = make_split(identity_table(path=data), cfg.train.split, cfg.seed, variant=j)
    if any(not split[k] for k in ("train", "val", "test")):
        raise ValueError(f"split {j} of train.split {list(cfg.train.split)} leaves a part empty")
    return split


def _order(keys: list[str]) -> list[str]:
    """The teacher first when a row distils from it (it is a prerequisite, shown only when
    asked for)."""
    needs = "teacher" in keys or any(ROWS[k].distill for k in keys)
    return (["teacher"] if needs else []) + [k for k in keys if k != "teacher"]


def ablate(cfg: "Pain3DConfig", data: str, seeds: int, name: str = "ablation",
           progress=print, rows: list[str] | None = None, splits: int = 1,
           reps: int = 1000, resume: bool = False) -> dict:
    """``resume``: runs an earlier call of this ablation finished are read back, not
    trained again (the same config, data and seeds are assumed: the caller's to keep)."""
    if seeds < 1 or splits < 1:
        raise ValueError(f"--seeds and --splits must be >= 1, got {seeds} and {splits}")
    keys = list(rows or DEFAULT_ROWS)
    guard.check_name("ablation", name)
    loc = storage.resolve(cfg.train.storage)
    runs: dict[str, list] = {k: [] for k in _order(keys)}  # per row: per run, a report or None
    scored: dict[str, list] = {k: [] for k in runs}  # per row: stats.Run of each finished run
    failures = []
    for j in range(splits):
        split = split_of(cfg, data, j)
        for s in range(seeds):
            seed, teacher_ckpt = cfg.seed + s, None
            run_of = {k: f"{k}-seed{seed}" if splits == 1 else f"{k}-split{j}-seed{seed}"
                      for k in _order(keys)}
            earlier = _earlier(loc, name, run_of) if resume else {}
            for key in _order(keys):
                row, run, done = ROWS[key], run_of[key], earlier.get(key)
                if done is not None:
                    teacher_ckpt = done[0] if key == "teacher" else teacher_ckpt
                    runs[key].append({k: done[1][k] for k in ("split", "seed", "all",
                                                              "pain_only")})
                    scored[key].append(done[2])
                    progress(f"split {j} seed {seed} {row.label}: finished earlier")
                    continue
                try:
                    if row.distill and teacher_ckpt is None:
                        raise RuntimeError("no teacher checkpoint (the teacher run failed)")
                    ckpt, r = _run_row(cfg, data, name, run, row, seed, teacher_ckpt, split,
                                       resume)
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # noqa: BLE001 - one failed run is reported, not fatal
                    log.warning("split %d seed %d %s failed: %s", j, seed, row.label, e)
                    failures.append({"split": j, "seed": seed, "row": key,
                                     "error": str(e).splitlines()[0]})
                    runs[key].append(None)
                    continue
                teacher_ckpt = ckpt if key == "teacher" else teacher_ckpt
                runs[key].append({"split": j, "seed": seed, "all": r["metrics"],
                                  "pain_only": r["pain_only"]})
                if "frames_scored" in r:
                    scored[key].append(_save_scored(loc, name, run, j, seed, r))
                    storage.write_json(loc, f"{name}/reports/{run}.json",  # for --resume
                                       dict(runs[key][-1], checkpoint=ckpt, host=host()))
                progress(f"split {j} seed {seed} {row.label}: test macro AUROC "
                         f"{r['metrics']['macro_auroc']:.3f} (pain frames only "
                         f"{r['pain_only'].get('macro_auroc', float('nan')):.3f})")
    runs = {k: runs[k] for k in keys}
    summary = {"data": data, "seeds": seeds, "splits": splits, "rows": summarise(runs),
               "bootstrap": bootstrap({k: scored[k] for k in keys}, reps, cfg.seed),
               # the caption's other reading: 16 classes PSPI 0-15 (neutral frames kept)
               "bootstrap_0_15": bootstrap({k: scored[k] for k in keys}, reps, cfg.seed,
                                           pspi_0_15_macro_auroc),
               "runs": runs, "failures": failures, "paper": PAPER_TABLE2}
    storage.write_json(loc, f"{name}/ablation.json", summary)
    storage.write_bytes(loc, f"{name}/ablation.md", markdown(summary).encode())
    return summary


def _save_scored(loc, name: str, run: str, j: int, seed: int, r: dict):
    """The run's scored frames: kept for the bootstrap and saved beside the runs (so the
    intervals can be recomputed) as ``<name>/scored/<run>.npz``."""
    from train.stats import Run, write_scored

    f = r.pop("frames_scored")
    write_scored(loc, f"{name}/scored/{run}.npz", f)
    return Run(j, seed, f["identity"], f["y"], f["probs"])


def bootstrap(scored: dict[str, list], reps: int, seed: int, metric=None) -> dict:
    """Per row its pain-only macro AUROC (or ``metric``) with a 95% CI, and each row against
    its base: the paired difference, its CI, the bootstrap p, Holm's p over the table's
    comparisons, and the smallest difference this design detects at 80% power."""
    from train.stats import compare, holm, interval, pain_only_macro_auroc, replicates

    have = {k: v for k, v in scored.items() if v}
    if not have:
        return {"rows": {}, "comparisons": [], "reps": 0}
    rep = replicates(have, metric or pain_only_macro_auroc, reps=reps, seed=seed)
    comps = [dict(compare(rep[ROWS[k].base], rep[k]), row=k, base=ROWS[k].base)
             for k in have if ROWS[k].base in have]
    for c, p in zip(comps, holm([c["p"] for c in comps])):
        c["p_holm"] = p
    per_split = [len(set(r.identity.tolist())) for v in have.values() for r in v]
    return {"rows": {k: interval(v) for k, v in rep.items()}, "comparisons": comps,
            "reps": reps, "identities": {k: len({(r.split, int(i)) for r in v
                                                for i in set(r.identity.tolist())})
                                         for k, v in have.items()},
            "min_test_identities_per_split": min(per_split)}


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
    t, seeds, splits = summary["rows"], summary["seeds"], summary.get("splits", 1)
    lines = [f"# Ablation: test split, {splits} split(s) × {seeds} seed(s), mean ± sample std "
             "(ddof=1) over the runs", "",
             "## Pain frames only (PSPI 1-16, 16 classes): the paper's Table 2 setting", "",
             "Pain frames scored on PSPI 1-16: one reading of the paper's Table 2 caption, "
             "which says 16 classes \"PSPI 0-15\" (ambiguous); different data and model: the "
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
    lines += _ci_lines(summary)
    if summary["failures"]:
        lines += ["", "## Failed runs (left out of the means above)", ""]
        lines += [f"- split {f.get('split', 0)}, seed {f['seed']}, {f['row']}: {f['error']}"
                  for f in summary["failures"]]
    return "\n".join(lines) + "\n"


def _ci_lines(summary: dict) -> list[str]:
    b = summary.get("bootstrap") or {}
    if not b.get("rows"):
        return []
    k, n = summary.get("splits", 1), summary["seeds"]
    lines = ["", f"## 95% confidence intervals: pain-only macro AUROC ({k} split(s) × {n} "
             f"seed(s); cluster bootstrap over test identities and seeds, {b['reps']} "
             "replicates)", "", "| model | test identities | estimate | 95% CI |",
             "|---|---|---|---|"]
    for key, r in b["rows"].items():
        lines.append(f"| {ROWS[key].label} | {b['identities'][key]} | {r['mean']:.3f} | "
                     f"[{r['lo']:.3f}, {r['hi']:.3f}] |")
    other = (summary.get("bootstrap_0_15") or {}).get("rows") or {}
    if other:
        lines += ["", "The same runs under the caption's other reading (16 classes PSPI 0-15: "
                  "frames with PSPI <= 15, classes 0-15 renormalised):", "",
                  "| model | estimate | 95% CI |", "|---|---|---|"]
        lines += [f"| {ROWS[key].label} | {r['mean']:.3f} | [{r['lo']:.3f}, {r['hi']:.3f}] |"
                  for key, r in other.items()]
    few = b.get("min_test_identities_per_split", MIN_IDENTITIES)
    if few < MIN_IDENTITIES:
        lines += ["", f"**Too few test identities for these intervals:** a split tests only "
                  f"{few}; resampling so few identities cannot show how much the result "
                  "depends on which identities are tested, so the intervals are too narrow. "
                  f"Use a dataset or train.split with at least {MIN_IDENTITIES} test "
                  "identities per split."]
    if b["comparisons"]:
        lines += ["", "Paired differences (the same resampled identities and seeds for both "
                  "rows), Holm-corrected over this table:", "",
                  "| model | vs | difference | 95% CI | p | Holm p | detectable at 80% power |",
                  "|---|---|---|---|---|---|---|"]
        for c in b["comparisons"]:
            lines.append(f"| {ROWS[c['row']].label} | {ROWS[c['base']].label} | "
                         f"{c['mean']:+.3f} | [{c['lo']:+.3f}, {c['hi']:+.3f}] | {c['p']:.3f} | "
                         f"{c['p_holm']:.3f} | ±{c['mde']:.3f} |")
        mdes = [c["mde"] for c in b["comparisons"] if c["mde"] == c["mde"]]
        if mdes:
            span = (f"{min(mdes):.3f}" if round(min(mdes), 3) == round(max(mdes), 3) else
                    f"{min(mdes):.3f}–{max(mdes):.3f}")
            lines += ["", f"This design detects a difference of {span} macro AUROC at 80% "
                      "power (two-sided, 5%): smaller effects would likely be missed."]
    return lines
