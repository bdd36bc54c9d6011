"""The training-side commands of ``pain3d``: train, evaluate, ablate, tune. Each ``*_config``
function does every local check of its command (``submit`` runs them too)."""
from __future__ import annotations

import json
from pathlib import Path

from cluster.config import ConfigError, absolute_path
from cluster.options import config_of
from pipelines import guard


JOBS = ("rig", "encoder")  # papers 001 and 002: their preset (configs/<job>.yaml) is a layer


def check_backbone(cfg):
    """train.model.backbone must be a model timm knows: said now, naming the key, not by
    timm on every worker after Ray has started."""
    import timm

    name = cfg.train.model.backbone
    if not timm.is_model(name):
        close = timm.list_models(f"{name.split('_')[0]}*")[:4]
        raise ConfigError(f"train.model.backbone {name!r} is not a timm model"
                          + (f" (close: {', '.join(close)})" if close else "")
                          + "; see timm.list_models() for the names")
    return cfg


def train_config(args):
    """train: a plain run name, a resumable run for --resume, and a split that leaves no
    part empty for this dataset, all checked before Ray starts."""
    from train.run import plan_split
    from train.run_folder import check_resumable

    job = [args.mode] if args.mode in JOBS else []
    cfg = check_backbone(config_of(args, layers=job + list(getattr(args, "layer", None) or [])))
    args.name = guard.check_name("run", args.name or f"{args.mode}-s{cfg.seed}")
    if args.mode in JOBS and getattr(args, "split_file", None):
        raise ConfigError(f"--split-file is for teacher and student runs; pain3d train "
                          f"{args.mode} splits by train.split")
    if args.mode in JOBS and (args.teacher or args.no_distill):
        raise ConfigError(f"--teacher and --no-distill are for the student; pain3d train "
                          f"{args.mode} takes neither")
    if getattr(args, "remote", False):  # submit: storage and data live on the cluster
        return cfg
    if args.resume:
        check_resumable(cfg.train.storage, args.name)
    else:
        args.planned_split = plan_split(cfg, args.data, getattr(args, "split_file", None))
    return cfg


def cmd_train(args) -> int:
    from cluster.runtime import init_ray

    cfg = train_config(args)
    if args.no_distill and args.teacher:
        raise ConfigError("--no-distill and --teacher contradict each other; give one")
    init_ray(cfg.generate.ray, args.verbose)
    if args.mode in JOBS:
        return _train_job(cfg, args)
    from train.run import train

    res = train(cfg, args.mode, args.data, args.name, teacher=args.teacher, resume=args.resume,
                distill=not args.no_distill,
                split=getattr(args, "planned_split", None) if args.split_file else None)
    m = res.best_metrics
    print(f"{args.mode} run {res.run}: best val macro AUROC "
          f"{m.get('val_macro_auroc', float('nan')):.3f} (epoch {m.get('epoch', '?')}), "
          f"acc {m.get('val_acc', float('nan')):.3f}, +-1 {m.get('val_acc_pm1', float('nan')):.3f}"
          f"; best checkpoint {res.best_checkpoint}")
    return 0


def _train_job(cfg, args) -> int:
    if args.mode == "rig":
        from train.rig import train_rig

        res, r = train_rig(cfg, args.data, args.name, resume=args.resume)
        d = r["diversity"]
        print(f"rig run {res.run} ({r['model']}): best val parameter MAE "
              f"{res.best_metrics.get('val_param_mae', float('nan')):.3f} (epoch "
              f"{res.best_metrics.get('epoch', '?')}); test AU read-back MAE "
              f"{r['generated']['mae_mean']:.3f} (real parameters {r['real']['mae_mean']:.3f}), "
              f"diversity {d['param_std']:.3f}; best checkpoint {res.best_checkpoint} -> "
              f"{res.run}/rig_eval.md")
        return 0
    from train.encoder_job import train_encoder

    res, r = train_encoder(cfg, args.data, args.name, resume=args.resume)
    print(f"encoder run {res.run}: test expression-parameter r {r['expression_r']:.3f}, "
          f"RMSE {r['expression_rmse']:.3f}" + (f", vertex error {r['vertex_mm']:.2f} mm"
                                               if "vertex_mm" in r else "")
          + f"; PSPI from parameters MAE {r['pspi_mae']:.2f}; best checkpoint "
          f"{res.best_checkpoint} -> {res.run}/encoder_eval.md")
    return 0


def _run_folder(checkpoint: str):
    """The run folder (holding split.json) a local checkpoint lies in, or None."""
    if "://" in checkpoint:
        return None
    return next((p for p in Path(checkpoint).resolve().parents
                 if (p / "split.json").is_file()), None)


def _recorded(args, model_dir: str) -> tuple[dict | None, str | None, list | None]:
    """(split, mode, history) as the checkpoint records them (checkpoint.json), else as its
    run folder does, else (None, --mode, None)."""
    from train.loop import checkpoint_meta

    meta, run = checkpoint_meta(model_dir), _run_folder(args.checkpoint)
    history = None
    if run is not None and (run / "history.json").is_file():
        history = json.loads((run / "history.json").read_text())
    if meta and meta.get("split"):
        return meta["split"], meta.get("mode"), history
    if run is not None:
        return (json.loads((run / "split.json").read_text()),
                json.loads((run / "config.json").read_text())["mode"], history)
    return None, args.mode, None


def _neutral_shots(args) -> int:
    """--neutral-shots, else the run's own train.eval.neutral_shots, else 1."""
    if args.neutral_shots is not None:
        return args.neutral_shots
    run = _run_folder(args.checkpoint)
    if run is None or not (run / "config.json").is_file():
        return 1
    cfg = json.loads((run / "config.json").read_text()).get("config", {})
    return int(cfg.get("train", {}).get("eval", {}).get("neutral_shots", 1))


def cmd_evaluate(args) -> int:
    from train.evaluate import evaluate
    from train.run_folder import fetch_checkpoint

    if args.neutral_shots is not None and args.neutral_shots < 1:  # before any loading
        raise ConfigError(f"--neutral-shots must be >= 1, got {args.neutral_shots}")
    out = args.out or str(Path(args.checkpoint).resolve().parent / f"eval-{args.split}")
    guard.check_output_folder(out, [args.checkpoint, args.data], overwrite=True,
                              kind="evaluation")  # before any work: a file, a user's folder
    model_dir = fetch_checkpoint(args.checkpoint)
    split, mode, history = _recorded(args, model_dir)
    which = args.split
    if split is None and which != "all":
        raise ConfigError(f"{args.checkpoint} records no split (no checkpoint.json, outside a "
                          f"run folder), so the identities it trained on are unknown; pass "
                          f"--split all to score every identity of {args.data} knowingly")
    if mode is None:
        raise ConfigError(f"{args.checkpoint} does not record whether it is a teacher or a "
                          "student; pass --mode teacher or --mode student")
    from train.data import identity_table

    have = identity_table(path=args.data)
    if split is None:
        split = {"all": sorted(have)}
    else:
        split = dict(split, all=sorted(i for k in ("train", "val", "test")
                                       for i in split.get(k, [])))
        if which in split and split[which] and not set(split[which]) & set(have):
            raise ConfigError(
                f"{args.data} holds none of the {len(split[which])} identities of the "
                f"{which} split that {args.checkpoint} records (e.g. {split[which][:3]}); "
                "evaluate on the dataset the run was trained on")
    r = evaluate(model_dir, args.data, mode, split, which, out, history,
                 shots=_neutral_shots(args))
    m, po = r["metrics"], r["pain_only"]
    print(f"{mode} on {which} ({r['frames']} frames): macro AUROC {m['macro_auroc']:.3f}, "
          f"acc {m['acc']:.3f}, +-1 {m['acc_pm1']:.3f}, MAE {m['mae_argmax']:.2f}; pain frames "
          f"only (16 classes): macro AUROC {po.get('macro_auroc', float('nan')):.3f}, "
          f"acc {po.get('acc', float('nan')):.3f} -> {out}/metrics.md")
    return 0


def ablate_config(args):
    from train.run import plan_split

    cfg = check_backbone(config_of(args))
    guard.check_name("ablation", args.name)
    for flag in ("seeds", "splits"):
        if getattr(args, flag, 1) < 1:
            raise ConfigError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if getattr(args, "bootstrap", 1000) < 10:
        raise ConfigError(f"--bootstrap must be at least 10 replicates, got {args.bootstrap}")
    from train.ablate import parse_rows

    try:
        args.rows = parse_rows(args.rows)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not getattr(args, "remote", False):
        plan_split(cfg, args.data)
    return cfg


def cmd_ablate(args) -> int:
    from cluster.runtime import init_ray
    from train.ablate import ablate, markdown

    cfg = ablate_config(args)
    init_ray(cfg.generate.ray, args.verbose)
    summary = ablate(cfg, args.data, args.seeds, args.name, rows=args.rows, splits=args.splits,
                     reps=args.bootstrap, resume=args.resume)
    print(markdown(summary))
    print(f"wrote {cfg.train.storage.rstrip('/')}/{args.name}/ablation.md")
    return 0


def tune_config(args):
    """tune: flags as overrides over the preset with the sweep layer; a plain sweep name."""
    flags = [f"tune.{key}={getattr(args, key)}" for key in ("samples", "concurrent", "storage")
             if getattr(args, key) is not None]
    guard.check_name("sweep", args.name)
    cfg = check_backbone(config_of(args, flags, layers=[args.sweep]))
    from tune.sweep import asha_grace

    asha_grace(cfg)  # a sweep whose trials would be judged frozen is refused now
    return cfg


def cmd_tune(args) -> int:
    import dataclasses

    from cluster.config import config_from_dict
    from cluster.runtime import init_ray
    from train.run import plan_split
    from tune.sweep import read_sweep, sweep

    cfg = tune_config(args)
    data, teacher = absolute_path(args.data), absolute_path(args.teacher)
    if args.resume:  # a restored sweep runs exactly what it started with
        prior = read_sweep(cfg.tune.storage, args.name)
        if prior is not None:
            storage_uri = cfg.tune.storage
            cfg = config_from_dict(prior["config"])
            cfg.tune.storage = storage_uri
            data, teacher = prior["data"], prior["teacher"]
    if not data or not teacher:
        raise ConfigError("pain3d tune needs --data D and --teacher CKPT (a teacher checkpoint "
                          "from pain3d train teacher)")
    plan_split(cfg, data)
    # Tune needs the dashboard: without it, trials stopped by ASHA leak their CPUs
    init_ray(dataclasses.replace(cfg.generate.ray, include_dashboard=True), args.verbose)
    res = sweep(cfg, data, teacher, args.name, resume=args.resume, verbose=args.verbose)
    print(f"sweep {res['folder']}: {len(res['rows'])} trials; best val macro AUROC "
          f"{res['best']['val_macro_auroc']:.3f} -> {res['folder']}/best.yaml, leaderboard.md, "
          "results.csv, history.png, importance.png" + (", final.md" if res["final"] else ""))
    return 0


def crossval_config(args):
    """crossval: the protocol layer over the preset, --folds as an override, a plain name."""
    flags = [f"crossval.folds={args.folds}"] if args.folds is not None else []
    guard.check_name("cross-validation", args.name)
    cfg = check_backbone(config_of(args, flags, layers=[args.protocol]))
    if not args.resume and not args.data:
        raise ConfigError("pain3d crossval needs --data D (a dataset from pain3d import unbc, "
                          "or any pain3d dataset)")
    return cfg


def cmd_crossval(args) -> int:
    import dataclasses

    from cluster.runtime import init_ray
    from train.crossval import crossval

    cfg = crossval_config(args)
    if not getattr(args, "remote", False) and args.data and not args.resume:
        from pipelines.layout3dpain import require_columns
        from train.data import READ_COLUMNS

        require_columns(args.data, READ_COLUMNS)
    if args.init:  # a missing or broken checkpoint: one sentence before Ray starts
        from train.loop import load_model
        from train.run_folder import fetch_checkpoint

        load_model(fetch_checkpoint(args.init))
    # Tune needs the dashboard (Ray Train's placement-group cleaner uses the state API)
    init_ray(dataclasses.replace(cfg.generate.ray, include_dashboard=True), args.verbose)
    if args.folds_file and not args.resume:  # a bad assignment: one sentence before Ray
        from train.crossval import _subjects, read_folds_file

        read_folds_file(args.folds_file, args.data, _subjects(args.data))
    s = crossval(cfg, absolute_path(args.data), args.name, init=absolute_path(args.init),
                 resume=args.resume, verbose=args.verbose,
                 folds_file=absolute_path(args.folds_file))
    m = s["mean_std"]
    folder = f"{cfg.train.storage.rstrip('/')}/{args.name}"
    print(f"cross-validation {args.name} ({len(s['folds'])} folds, {len(s['trained'])} trained "
          f"now): AUROC PSPI>=3 {m['auroc_pspi_ge3']['mean']:.3f} +- "
          f"{m['auroc_pspi_ge3']['std']:.3f}, F1 {m['f1_pspi_ge3']['mean']:.3f}; AUROC PSPI>=2 "
          f"{m['auroc_pspi_ge2']['mean']:.3f}, PSPI>=1 {m['auroc_pspi_ge1']['mean']:.3f} -> "
          f"{folder}/crossval.md, crossval.json")
    return 0
