"""Subject-grouped K-fold cross-validation on real data: the paper's Table 3 protocol
(UNBC-McMaster, 25 subjects in 5 folds of 5, binary pain at PSPI >= 3 and >= 2).

Each fold is one Ray Train run of the RGB model (no heatmaps in real data, so no teacher),
trained on the other folds' subjects minus a seeded ``crossval.val_fraction`` of them (the
validation subjects that pick the best epoch), then scored on the fold's own subjects, with
the F1 thresholds calibrated on its training subjects. The folds run as Ray Tune trials over
the fold index, as many at once as ``crossval.concurrent`` and the cluster allow. ``init``
fine-tunes every fold from one (synthetic-pretrained) checkpoint; without it the backbone
starts from ``train.model.pretrained_file``, or (without one) a seeded random initialisation.

Folder ``<train.storage>/<name>/``: ``record.json`` (data, init, config), ``folds.json``,
``fold-<k>/`` (the fold's training run, its ``test.json`` and evaluation plots),
``tune/``, ``crossval.json`` and ``crossval.md``. A finished fold has ``test.json``;
``resume`` trains only the folds without one.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np

from pipelines import guard, storage
from train.data import split_hash
from train.crossval_report import COLUMNS, markdown
from train.metrics import mean_std
from train.run import train
from train.run_folder import fetch_checkpoint
from train.stats import write_scored

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig

log = logging.getLogger(__name__)
class CrossvalExists(ValueError):
    pass


def make_folds(subjects: list[int], k: int, seed: int) -> list[list[int]]:
    """``k`` disjoint folds covering every subject, sizes differing by at most one; seeded."""
    subjects = sorted(set(int(s) for s in subjects))
    if not 2 <= k <= len(subjects):
        raise ValueError(f"--folds {k} needs between 2 and {len(subjects)} (the dataset's "
                         "subjects)")
    order = np.random.default_rng([seed, 13]).permutation(subjects)
    return [sorted(int(s) for s in part) for part in np.array_split(order, k)]


def fold_split(folds: list[list[int]], k: int, val_fraction: float, seed: int) -> dict:
    """Fold ``k``'s test subjects, and the others split into train and validation."""
    rest = sorted(s for j, f in enumerate(folds) if j != k for s in f)
    n_val = max(1, int(round(val_fraction * len(rest)))) if len(rest) > 1 else 0
    val = sorted(int(s) for s in np.random.default_rng([seed, 17, k]).choice(rest, n_val,
                                                                              replace=False))
    return {"train": [s for s in rest if s not in val], "val": val, "test": list(folds[k])}


def read_folds_file(path: str, data: str, subjects: list[int]) -> list[list[int]]:
    """A given subject-to-fold assignment: JSON (a list of folds, each a list of
    identities, as ``folds.json``) or CSV (``identity,fold`` or ``subject,fold``, the subject
    as the import names it, e.g. 042-ll042). It must cover the dataset's subjects exactly."""
    import csv
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--folds-file {path} is not there")
    text = p.read_text()
    if p.suffix.lower() == ".json":
        try:
            folds = [[int(i) for i in f] for f in json.loads(text)]
        except (ValueError, TypeError) as e:
            raise ValueError(f"--folds-file {path} is not a JSON list of folds of identities "
                             f"({e})") from None
    else:
        rows = list(csv.DictReader(text.splitlines()))
        key = next((k for k in ("identity", "subject") if rows and k in rows[0]), None)
        if key is None or "fold" not in rows[0]:
            raise ValueError(f"--folds-file {path} needs the columns identity,fold or "
                             "subject,fold")
        names = _subject_names(data) if key == "subject" else {}
        by_fold: dict[int, list[int]] = {}
        for r in rows:
            who = r[key].strip()
            if key == "subject" and who not in names:
                raise ValueError(f"--folds-file {path}: subject {who} is not in {data}")
            by_fold.setdefault(int(r["fold"]), []).append(names[who] if names else int(who))
        folds = [sorted(by_fold[k]) for k in sorted(by_fold)]
    flat = [i for f in folds for i in f]
    if len(folds) < 2 or any(not f for f in folds) or len(flat) != len(set(flat)):
        raise ValueError(f"--folds-file {path} must give at least 2 non-empty folds, each "
                         "subject in one")
    if set(flat) != set(subjects):
        extra, lack = sorted(set(flat) - set(subjects)), sorted(set(subjects) - set(flat))
        raise ValueError(f"--folds-file {path} does not cover {data}'s subjects exactly: "
                         + (f"{len(lack)} missing (e.g. {lack[0]})" if lack else
                            f"{len(extra)} not in the data (e.g. {extra[0]})"))
    return [sorted(f) for f in folds]


def _subject_names(data: str) -> dict[str, int]:
    from pipelines import importers

    return {s.get("subject", s.get("name")): int(s["identity"])
            for s in importers.summaries(storage.resolve(data))}


def _subjects(data: str) -> list[int]:
    from pipelines.layout3dpain import load_frames_columns

    return sorted(set(load_frames_columns(data, ["identity"]).column("identity").to_pylist()))


def _start(cfg, data, name, init, resume, loc, folds_file=None) -> tuple[dict, "Pain3DConfig"]:
    """The run's record (new, or as it started when resumed) and its config."""
    from cluster.config import config_from_dict

    prior = storage.read_json(loc, f"{name}/record.json")
    guard.check_resume(prior, resume, "cross-validation", name, cfg.train.storage, "finish",
                       CrossvalExists)
    if prior is not None:  # a resumed run trains exactly what it started with
        c = config_from_dict(prior["config"])
        c.train.storage = cfg.train.storage
        return prior, c
    cfg = copy.deepcopy(cfg)
    if init:  # fine-tuning keeps the pretrained model's architecture and input
        from train.loop import load_model

        cfg.train.model = dataclasses.replace(load_model(fetch_checkpoint(init)).cfg)
    folds = (read_folds_file(folds_file, data, _subjects(data)) if folds_file else
             make_folds(_subjects(data), cfg.crossval.folds, cfg.seed))
    record = {"data": data, "init": init, "folds": folds, "folds_file": folds_file,
              "folds_hash": split_hash(
        {"train": [], "val": [], "test": [s for f in folds for s in f]}) + f"-k{len(folds)}",
        "config": cfg.to_dict()}
    guard.mark_root(loc, "runs")
    storage.write_json(loc, f"{name}/folds.json", folds)
    storage.write_json(loc, f"{name}/record.json", record)
    return record, cfg


def run_fold(params: dict, cfg, data: str, init: str | None, name: str, folds) -> None:
    """One Tune trial: fold ``params['fold']``'s training run (continued if interrupted),
    then its test evaluation, written last (``test.json`` marks the fold finished)."""
    from ray import tune

    from train.evaluate import evaluate

    k = int(params["fold"])
    c = copy.deepcopy(cfg)
    c.train.storage = f"{cfg.train.storage.rstrip('/')}/{name}"
    split = fold_split(folds, k, cfg.crossval.val_fraction, cfg.seed)
    from ray.tune.integration.ray_train import TuneReportCallback

    res = train(c, "student", data, f"fold-{k}", distill=False, resume=True, split=split,
                init=init, show_progress=False, callbacks=[TuneReportCallback()],  # epoch bar
                select=cfg.crossval.select_metric)
    loc = storage.resolve(c.train.storage)
    out = None if loc.is_s3 else loc.join(f"fold-{k}", "eval-test")
    r = evaluate(fetch_checkpoint(res.best_checkpoint), data, "student", res.split, "test",
                 out, res.history, shots=cfg.train.eval.neutral_shots, calibrate_on="val",
                 keep=True)
    if "frames_scored" in r:  # for the interval over test subjects (classifying heads)
        write_scored(loc, f"fold-{k}/scored.npz", r.pop("frames_scored"))
    result = {"fold": k, "test_subjects": split["test"], "val_subjects": split["val"],
              "train_subjects": split["train"], "frames": r["frames"],
              "checkpoint": res.best_checkpoint, "metrics": r["metrics"],
              "thresholds": r["thresholds"]}
    storage.write_json(loc, f"fold-{k}/test.json", result)
    tune.report({"fold": k, **{m: r["metrics"].get(m, float("nan")) for m in COLUMNS}})


def concurrency(cfg, resources: dict) -> int:
    """Folds at once: ``crossval.concurrent``, or (0) as many training runs as the cluster's
    GPUs (GPU training) or CPUs hold, each run's workers, decoding and trial process counted."""
    if cfg.crossval.concurrent:
        return cfg.crossval.concurrent
    t = cfg.train
    gpus = resources.get("GPU", 0)
    if t.use_gpu or (t.use_gpu is None and gpus >= 1):
        return max(1, int(gpus // t.num_workers))
    per_run = t.num_workers * t.cpus_per_worker + t.decode_cpus + cfg.crossval.cpus_per_trial
    return max(1, int(resources.get("CPU", 1) // per_run))


def _train_folds(cfg, data, init, name, folds, todo, progress, verbose) -> None:
    import ray
    from ray import tune

    from train.tune_progress import RunBars, quiet

    at_once = concurrency(cfg, ray.cluster_resources())
    progress(f"training folds {todo} ({at_once} at a time)")
    fn = tune.with_parameters(run_fold, cfg=cfg, data=data, init=init, name=name, folds=folds)
    loc = storage.resolve(cfg.train.storage)
    root = loc.root if loc.is_s3 else cfg.train.storage
    tuner = tune.Tuner(
        tune.with_resources(fn, {"CPU": cfg.crossval.cpus_per_trial}),
        param_space={"fold": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(max_concurrent_trials=at_once),
        run_config=tune.RunConfig(name=f"folds-{'-'.join(map(str, todo))}",
                                  verbose=int(verbose),  # else our bars over folds and epochs
                                  callbacks=[RunBars(len(todo), cfg.train.epochs, "fold")],
                                  storage_path=f"{root.rstrip('/')}/{name}/tune",
                                  storage_filesystem=loc.fs if loc.is_s3 else None))
    with quiet(verbose):
        grid = tuner.fit()
    errors = [r.error for r in grid if r.error]
    if errors:
        raise RuntimeError(f"{len(errors)} fold(s) failed; the first: "
                           f"{str(errors[0]).strip().splitlines()[-1]}") from errors[0]


def crossval(cfg: "Pain3DConfig", data: str, name: str = "crossval", init: str | None = None,
             resume: bool = False, progress=print, verbose: bool = False,
             folds_file: str | None = None) -> dict:
    """Runs (or finishes) the cross-validation; returns its summary (crossval.json)."""
    from train.run import SELECTABLE

    guard.check_name("cross-validation", name)
    if cfg.crossval.select_metric not in SELECTABLE:
        raise ValueError(f"crossval.select_metric {cfg.crossval.select_metric!r} is not a "
                         f"validation metric; use one of {sorted(SELECTABLE)}")
    loc = storage.resolve(cfg.train.storage)
    if not loc.is_s3:
        loc.fs.create_dir(loc.root, recursive=True)
    record, cfg = _start(cfg, data, name, init, resume, loc, folds_file)
    data, init, folds = record["data"], record["init"], record["folds"]
    todo = [k for k in range(len(folds))
            if storage.read_json(loc, f"{name}/fold-{k}/test.json") is None]
    if len(todo) < len(folds):
        progress(f"{len(folds) - len(todo)} of {len(folds)} folds already finished: not retrained")
    if todo:
        _train_folds(cfg, data, init, name, folds, todo, progress, verbose)
    results = [storage.read_json(loc, f"{name}/fold-{k}/test.json") for k in range(len(folds))]
    if any(r is None for r in results):  # Tune stopped gracefully (Ctrl-C / SIGTERM)
        raise KeyboardInterrupt
    summary = summarise(record, results, cfg, name)
    storage.write_json(loc, f"{name}/crossval.json", summary)
    others = _siblings(loc, name, record["folds_hash"], data)
    storage.write_bytes(loc, f"{name}/crossval.md", markdown(summary, name, others).encode())
    return {**summary, "trained": todo}


UNBC_FRAMES = 48_398  # the whole archive, as the paper uses it


def protocol_differences(data: str, folds: int, max_frames: int | None) -> list[str]:
    """How this run's protocol differs from the paper's Table 3 (empty: it matches)."""
    m = storage.read_json(storage.resolve(data), "manifest.json") or {}
    out = []
    if m.get("source") != "unbc-mcmaster":
        out.append(f"the data is not the UNBC-McMaster archive (source: "
                   f"{m.get('source', 'a generated pain3d dataset')})")
    elif m.get("counts", {}).get("frames") != UNBC_FRAMES:
        out.append(f"{m['counts']['frames']:,} frames, not the archive's {UNBC_FRAMES:,}")
    if folds != 5:
        out.append(f"{folds} folds, not 5")
    if max_frames:
        out.append(f"train.max_frames={max_frames} subsamples the frames")
    return out


def summarise(record: dict, results: list[dict], cfg, name: str) -> dict:
    table = {m: dict(zip(("mean", "std", "n"), mean_std([r["metrics"].get(m) for r in results])))
             for m in COLUMNS}
    return {"data": record["data"], "init": record["init"], "folds": record["folds"],
            "ci_auroc_pspi_ge3": subject_interval(cfg, name, len(results)),
            "folds_hash": record["folds_hash"], "class_weights": cfg.train.class_weights,
            "backbone": cfg.train.model.backbone, "epochs": cfg.train.epochs,
            "pretrained_file": cfg.train.model.pretrained_file,
            "select_metric": cfg.crossval.select_metric,
            "neutral_reference": bool(cfg.train.model.neutral_reference),
            "sampling": cfg.train.sampling, "augment": cfg.train.augment,
            "augment_style": cfg.train.augment_style,
            "protocol_differences": protocol_differences(record["data"], len(record["folds"]),
                                                         cfg.train.max_frames),
            "per_fold": results, "mean_std": table}


def subject_interval(cfg, name: str, folds: int, reps: int = 1000) -> dict | None:
    """The mean over folds of the PSPI >= 3 AUROC with a 95% CI from a cluster bootstrap over
    each fold's test subjects (a subject's frames move together); None when a fold kept no
    class probabilities (a regression-only head)."""
    from train.stats import auroc_pspi_ge3, read_scored, row_interval

    loc = storage.resolve(cfg.train.storage)
    runs = [read_scored(loc, f"{name}/fold-{k}/scored.npz", k, 0) for k in range(folds)]
    if any(r is None for r in runs):
        return None
    return dict(row_interval(runs, auroc_pspi_ge3, reps, cfg.seed), reps=reps)


def _siblings(loc, name: str, folds_hash: str, data: str) -> dict[str, dict]:
    """Other finished cross-validations in the same storage with the same folds and data."""
    import pyarrow.fs as pafs

    out = {}
    for info in loc.fs.get_file_info(pafs.FileSelector(loc.root, allow_not_found=True)):
        other = info.base_name
        if info.type != pafs.FileType.Directory or other == name:
            continue
        s = storage.read_json(loc, f"{other}/crossval.json")
        if s and s.get("folds_hash") == folds_hash and s.get("data") == data:
            out[other] = s
    return out
