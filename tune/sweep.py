"""Loss-weight sweeps: Ray Tune, Optuna's TPE (seeded; the config's own weights, the paper's,
evaluated first) and ASHA on validation macro AUROC. Each trial is a student training run
(train.run.train) distilled from one teacher checkpoint that every trial reads from storage.

Sweep folder ``<tune.storage>/<name>/``:
    sweep.json          what was swept (config, data, teacher)
    tune/               Ray Tune's experiment (what ``--resume`` restores)
    trials/<trial_id>/  each trial's training run (checkpoints, history, split)
    results.csv, leaderboard.md, best.yaml, history.png, importance.png
    final/, final.md, final.json   best vs paper weights retrained over seeds, test split
"""
from __future__ import annotations

import copy
import io
import logging
from typing import TYPE_CHECKING

import numpy as np

from pipelines import guard, storage
from train.metrics import cell, mean_std
from train.run import train
from train.run_folder import fetch_checkpoint
from train.stats import Run

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig

log = logging.getLogger(__name__)
METRIC = "val_macro_auroc"
REPORT = ("val_macro_auroc", "val_acc", "val_acc_pm1", "val_mae")  # at the best epoch
FINAL_COLUMNS = ("macro_auroc", "acc", "acc_pm1", "acc_pm2", "mae_argmax")
MIN_IMPORTANCE_TRIALS = 10  # fewer, and the importance plot says it is indicative only


class SweepExists(ValueError):
    pass


def read_sweep(storage_uri: str, name: str) -> dict | None:
    """What a sweep was started with (its config as a dict, data, teacher), or None. A
    resumed sweep is rebuilt from this, so that it runs exactly what it started with."""
    return storage.read_json(storage.resolve(storage_uri), f"{name}/sweep.json")


def asha_grace(cfg: "Pain3DConfig") -> int:
    """ASHA's first rung: never before a trial has trained one epoch with its backbone
    unfrozen (the frozen epochs judge only the heads)."""
    t = cfg.train
    if t.epochs <= t.freeze_backbone_epochs:
        raise ValueError(f"a sweep needs train.epochs ({t.epochs}) > "
                         f"train.freeze_backbone_epochs ({t.freeze_backbone_epochs}): ASHA "
                         "would judge trials whose backbone never trained")
    return min(t.epochs, max(cfg.tune.grace_epochs, t.freeze_backbone_epochs + 1))


def swept(cfg: "Pain3DConfig") -> list[str]:
    """The swept weights in one fixed (sorted) order: a resumed sweep reads its config back
    from sweep.json with sorted keys, so the config's own order would change its columns."""
    return sorted(cfg.tune.space)


def search_space(cfg: "Pain3DConfig") -> dict:
    from ray import tune

    make = {"loguniform": tune.loguniform, "uniform": tune.uniform}
    space = cfg.tune.space
    return {k: make[space[k].dist](space[k].low, space[k].high) for k in swept(cfg)}


def config_weights(cfg: "Pain3DConfig") -> dict[str, float]:
    """The config's own values of the swept weights (the paper's, by default)."""
    return {k: float(getattr(cfg.train.weights, k)) for k in swept(cfg)}


def with_weights(cfg: "Pain3DConfig", weights: dict) -> "Pain3DConfig":
    c = copy.deepcopy(cfg)
    for k, v in weights.items():
        setattr(c.train.weights, k, float(v))
    return c


def run_trial(params: dict, base: "Pain3DConfig", data: str, teacher: str, trials: str) -> None:
    """One trial: a student run whose metrics reach Tune through Ray Train's callback. A trial
    restarted by ``--resume`` continues its run from the last checkpoint."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    cfg = with_weights(base, params)
    cfg.train.storage = trials
    train(cfg, "student", data, tune.get_context().get_trial_id(), teacher=teacher, resume=True,
          callbacks=[TuneReportCallback()], show_progress=False)


def _trainable(cfg, data, teacher, trials):
    from ray import tune

    fn = tune.with_parameters(run_trial, base=cfg, data=data, teacher=teacher, trials=trials)
    return tune.with_resources(fn, {"CPU": cfg.tune.cpus_per_trial})


def sweep(cfg: "Pain3DConfig", data: str, teacher: str, name: str = "sweep",
          resume: bool = False, progress=print, verbose: bool = False) -> dict:
    """Run (or, with ``resume``, restore) the sweep, then write its outputs. Returns the
    summary: the sweep folder, the best weights and the final comparison. Progress shows as
    bars over trials and epochs; Tune's tables and Optuna's warnings only when ``verbose``."""
    from train.tune_progress import quiet

    with quiet(verbose):
        return _sweep(cfg, data, teacher, name, resume, progress, verbose)


def _sweep(cfg, data, teacher, name, resume, progress, verbose) -> dict:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from train.tune_progress import RunBars

    tc = cfg.tune
    guard.check_name("sweep", name)
    if not tc.space:
        raise ValueError("tune.space is empty; pass --sweep sweep (configs/sweep.yaml) or a "
                         "YAML with a tune.space section")
    # the teacher is checked once here; each trial then reads it from storage itself
    from train.loop import load_model

    load_model(fetch_checkpoint(teacher))
    loc = storage.resolve(tc.storage)
    if not loc.is_s3:
        loc.fs.create_dir(loc.root, recursive=True)
    folder = f"{tc.storage.rstrip('/')}/{name}"
    prior = storage.read_json(loc, f"{name}/sweep.json")
    guard.check_resume(prior, resume, "sweep", name, tc.storage, "continue", SweepExists)
    if prior is None:
        storage.write_json(loc, f"{name}/sweep.json", {"data": data, "teacher": teacher,
                                                      "config": cfg.to_dict()})
    trials = f"{folder}/trials"
    trainable = _trainable(cfg, data, teacher, trials)
    tune_root = loc.root if loc.is_s3 else tc.storage
    exp_path = f"{tune_root.rstrip('/')}/{name}/tune"
    if resume and tune.Tuner.can_restore(exp_path, storage_filesystem=_fs(loc)):
        progress(f"restoring sweep {folder}")
        tuner = tune.Tuner.restore(exp_path, trainable, resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=_fs(loc))
    else:
        searcher = OptunaSearch(
            sampler=optuna.samplers.TPESampler(seed=cfg.seed),
            points_to_evaluate=[config_weights(cfg)] if tc.warm_start else None)
        tuner = tune.Tuner(
            trainable, param_space=search_space(cfg),
            tune_config=tune.TuneConfig(
                metric=METRIC, mode="max", num_samples=tc.samples,
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=tc.concurrent),
                scheduler=ASHAScheduler(time_attr="epochs_done", max_t=cfg.train.epochs,
                                        grace_period=asha_grace(cfg),
                                        reduction_factor=tc.reduction_factor)),
            run_config=tune.RunConfig(name="tune", storage_path=f"{tune_root.rstrip('/')}/{name}",
                                      storage_filesystem=_fs(loc), verbose=int(verbose),
                                      callbacks=[RunBars(tc.samples, cfg.train.epochs)]))
    grid = tuner.fit()
    rows = result_rows(grid, cfg)
    finished = sum(r["status"] in ("completed", "stopped early (ASHA)") for r in rows)
    if len(rows) < tc.samples or any(r["status"] == "unfinished" for r in rows):
        # Tune returns normally after Ctrl-C / SIGTERM (its own graceful stop, state saved):
        # an interrupted sweep, which --resume continues
        log.warning("sweep %s stopped after %d of %d trials", name, finished, tc.samples)
        raise KeyboardInterrupt
    if finished == 0:
        raise RuntimeError(f"every trial of sweep {name!r} failed; see the trial errors in "
                           f"{folder}/tune")
    best = max((r for r in rows if r["status"] != "error"), key=lambda r: r[METRIC])
    best_weights = {k: best[k] for k in swept(cfg)}
    write_tables(loc, name, rows, cfg)
    write_best_yaml(loc, name, with_weights(cfg, best_weights))
    write_plots(loc, name, rows, cfg)
    progress(f"best trial {best['trial']}: val macro AUROC {best[METRIC]:.3f} with "
             + ", ".join(f"{k}={v:.3g}" for k, v in best_weights.items()))
    final = final_comparison(cfg, data, teacher, name, best_weights, progress) \
        if tc.final_seeds else None
    return {"folder": folder, "best": best, "best_weights": best_weights, "rows": rows,
            "final": final}


def _fs(loc):
    return loc.fs if loc.is_s3 else None


def result_rows(grid, cfg: "Pain3DConfig") -> list[dict]:
    """One row per trial: its weights, status and the metrics of its best epoch."""
    paper = config_weights(cfg)
    # the ResultGrid is built from these Trials, in order; they carry Tune's own states
    # (TERMINATED, ERROR, or unfinished after an interruption), which Results do not expose
    trials = getattr(grid, "_experiment_analysis").trials
    rows = []
    for trial, r in zip(trials, grid):
        df = r.metrics_dataframe
        row = {"trial": trial.trial_id}
        params = r.config or trial.config  # a trial that never started has no Result config
        row.update({k: float(params[k]) for k in swept(cfg)})
        row["paper_weights"] = all(np.isclose(row[k], v) for k, v in paper.items())
        state = trial.status
        reported = df is not None and METRIC in getattr(df, "columns", ())
        row.update({k: float("nan") for k in REPORT}, epochs=0)
        if reported:
            i = int(df[METRIC].fillna(-1).to_numpy().argmax())
            row.update({k: float(df[k].iloc[i]) for k in REPORT if k in df})
            row["epochs"] = int(df["epochs_done"].max())
        if state == "ERROR" or r.error:
            row["status"] = "error"
        elif state != "TERMINATED":
            row["status"] = "unfinished"
        else:
            row["status"] = ("completed" if row["epochs"] >= cfg.train.epochs
                             else "stopped early (ASHA)")
        rows.append(row)
    return rows


def write_tables(loc, name: str, rows: list[dict], cfg: "Pain3DConfig") -> None:
    import pandas as pd

    keys = swept(cfg)
    columns = ["trial", *keys, "paper_weights", *REPORT, "epochs", "status"]
    df = pd.DataFrame(rows, columns=columns).sort_values(METRIC, ascending=False,
                                                         na_position="last", kind="stable")
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    storage.write_bytes(loc, f"{name}/results.csv", buf.getvalue().encode())
    head = ["rank", "trial", *keys, "val macro AUROC", "val acc", "val +-1", "epochs", "status"]
    lines = [f"# Sweep {name}: leaderboard (validation split, best epoch of each trial)", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for rank, r in enumerate(df.to_dict("records"), 1):
        trial = r["trial"] + (" (paper's weights)" if r["paper_weights"] else "")
        cells = [str(rank), trial, *(f"{r[k]:.3g}" for k in keys), f"{r[METRIC]:.3f}",
                 f"{r['val_acc']:.3f}", f"{r['val_acc_pm1']:.3f}", str(r["epochs"]), r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    storage.write_bytes(loc, f"{name}/leaderboard.md", ("\n".join(lines) + "\n").encode())


def write_best_yaml(loc, name: str, cfg: "Pain3DConfig") -> None:
    """A complete config (``pain3d train student --config best.yaml``) with the best weights."""
    import yaml

    d = cfg.to_dict()
    d.pop("tune", None)
    text = (f"# the best loss weights of sweep {name!r}; train with:\n"
            f"#   pain3d train student --config best.yaml --data D --teacher CKPT\n"
            + yaml.safe_dump(d, sort_keys=False))
    storage.write_bytes(loc, f"{name}/best.yaml", text.encode())


def study_from_rows(rows: list[dict], cfg: "Pain3DConfig"):
    """The trials as an Optuna study (each trial's best validation AUROC as its value), for
    Optuna's plots."""
    import optuna
    from optuna.distributions import FloatDistribution

    space = cfg.tune.space
    dists = {k: FloatDistribution(space[k].low, space[k].high, log=space[k].dist == "loguniform")
             for k in swept(cfg)}
    study = optuna.create_study(direction="maximize")
    for r in rows:
        if np.isfinite(r[METRIC]):
            study.add_trial(optuna.trial.create_trial(
                params={k: min(max(r[k], dists[k].low), dists[k].high) for k in dists},
                distributions=dists, value=r[METRIC]))
    return study


def write_plots(loc, name: str, rows: list[dict], cfg: "Pain3DConfig") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from matplotlib.ticker import MaxNLocator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = study_from_rows(rows, cfg)
    n = len(study.trials)
    plots = {"history.png": optuna.visualization.matplotlib.plot_optimization_history,
             "importance.png": optuna.visualization.matplotlib.plot_param_importances}
    for fname, plot in plots.items():
        try:
            ax = plot(study)
            fig = ax.figure
            if fname == "history.png":  # say what the objective is
                ax.set_ylabel("validation macro AUROC (best epoch)")
                ax.set_title(f"Sweep {name}: optimisation history")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole
            elif n < MIN_IMPORTANCE_TRIALS:  # a ranking from a handful of trials is noise
                # loc="left" replaces Optuna's own (left) title instead of printing over it
                ax.set_title(f"Sweep {name}: parameter importance\nINDICATIVE ONLY: {n} "
                             f"trial(s), fewer than {MIN_IMPORTANCE_TRIALS}", color="#b00020",
                             loc="left")
        except (ValueError, RuntimeError) as e:  # e.g. too few finished trials for importances
            fig, ax = plt.subplots(figsize=(6, 3))
            ax.axis("off")
            ax.text(0.5, 0.5, f"{fname[:-4]}: not enough trials\n({e})", ha="center",
                    va="center", wrap=True)
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        storage.write_bytes(loc, f"{name}/{fname}", buf.getvalue())


def final_comparison(cfg: "Pain3DConfig", data: str, teacher: str, name: str,
                     best_weights: dict, progress=print) -> dict:
    """The best and the paper's weights, each retrained with the same seeds for the full
    schedule and evaluated on the test split. Finished runs are reused on --resume."""
    from train.evaluate import evaluate

    loc = storage.resolve(cfg.tune.storage)
    variants = {"best": best_weights, "paper": config_weights(cfg)}
    if all(np.isclose(best_weights[k], v) for k, v in variants["paper"].items()):
        variants = {"best (= paper)": best_weights}
    runs: dict[str, list[dict]] = {}
    scored: dict[str, list] = {}  # per label: stats.Run of each seed (the CIs)
    for label, weights in variants.items():
        c = with_weights(cfg, weights)
        c.train.storage = f"{cfg.tune.storage.rstrip('/')}/{name}/final"
        for s in range(cfg.tune.final_seeds):
            seed = cfg.seed + s
            run = f"{label.split()[0]}-seed{seed}"
            floc = storage.resolve(c.train.storage)
            done = storage.read_bytes(floc, f"{run}/best_checkpoint.txt")
            if done:  # finished before an interruption: reuse it
                ckpt, split = done.decode(), storage.read_json(floc, f"{run}/split.json")
            else:
                res = train(c, "student", data, run, teacher=teacher, seed=seed, resume=True)
                ckpt, split = res.best_checkpoint, res.split
            r = evaluate(fetch_checkpoint(ckpt), data, "student", split, "test",
                         shots=cfg.train.eval.neutral_shots, keep=True)
            if "frames_scored" in r:
                f = r.pop("frames_scored")
                scored.setdefault(label, []).append(Run(0, seed, f["identity"], f["y"],
                                                        f["probs"]))
            runs.setdefault(label, []).append(r["metrics"])
            progress(f"final {label} seed {seed}: test macro AUROC "
                     f"{r['metrics']['macro_auroc']:.3f}")
    table = {label: {col: mean_std([m[col] for m in ms]) for col in FINAL_COLUMNS}
             for label, ms in runs.items()}  # (mean, sample std with ddof=1, n)
    summary = {"seeds": cfg.tune.final_seeds, "weights": variants, "rows": table, "runs": runs,
               "bootstrap": final_intervals(scored, cfg.seed)}
    storage.write_json(loc, f"{name}/final.json", summary)
    keys = swept(cfg)
    lines = [f"# Best vs paper loss weights (test split, mean ± std over "
             f"{cfg.tune.final_seeds} seed(s), {cfg.train.epochs} epochs each)", "",
             "| weights | " + " | ".join(FINAL_COLUMNS) + " | " + " | ".join(keys) + " |",
             "|---" * (1 + len(FINAL_COLUMNS) + len(keys)) + "|"]
    for label, row in table.items():
        lines.append(f"| {label} | " + " | ".join(cell(row[c]) for c in FINAL_COLUMNS) + " | "
                     + " | ".join(f"{variants[label][k]:.3g}" for k in keys) + " |")
    lines += interval_lines(summary["bootstrap"])
    storage.write_bytes(loc, f"{name}/final.md", ("\n".join(lines) + "\n").encode())
    return summary


def final_intervals(scored: dict[str, list], seed: int, reps: int = 1000) -> dict:
    """Per variant the macro AUROC (all frames) with a 95% CI from a cluster bootstrap over
    test identities and seeds; best - paper paired on the same resamples."""
    from train.stats import compare, interval, macro_auroc, replicates

    if not scored:
        return {}
    rep = replicates(scored, macro_auroc, reps, seed)
    out = {"reps": reps, "rows": {k: interval(v) for k, v in rep.items()}}
    if set(rep) == {"best", "paper"}:
        out["best_minus_paper"] = compare(rep["paper"], rep["best"])
    return out


def interval_lines(b: dict) -> list[str]:
    if not b:
        return []
    lines = ["", f"95% CIs of the macro AUROC (cluster bootstrap over test identities and "
             f"seeds, {b['reps']} replicates):", ""]
    lines += [f"- {k}: {r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"
              for k, r in b["rows"].items()]
    d = b.get("best_minus_paper")
    if d:
        lines.append(f"- best − paper: {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}], "
                     f"p {d['p']:.3f}; this design detects ±{d['mde']:.3f} at 80% power")
    return lines

