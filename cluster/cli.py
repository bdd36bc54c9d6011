"""The ``pain3d`` command line."""
from __future__ import annotations

import argparse
import logging
import re
import sys
import time

from cluster.config import ConfigError, load_config


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="local",
                   help="preset name (configs/<name>.yaml) or a YAML file (default: local)")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. render.size=512 face.texture_size=512")


def _config(args):
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return load_config(args.config, overrides)


def cmd_preview(args) -> int:
    from tqdm import tqdm

    from faces.models import make_face_model
    from faces.preview import contact_sheet

    if args.identities < 1:
        raise ConfigError(f"--identities must be >= 1, got {args.identities}")
    if args.start < 0:
        raise ConfigError(f"--start must be >= 0, got {args.start}")
    cfg = _config(args)
    model = make_face_model(cfg.face)
    ids = list(range(args.start, args.start + args.identities))
    t0 = time.time()
    with tqdm(total=len(ids), desc="preview", unit="identity", file=sys.stderr) as bar:
        out = contact_sheet(model, ids, cfg.seed, args.out, cfg.render, cfg.heatmap,
                            cfg.demographics, cfg.pspi, progress=bar.update)
    print(f"wrote {out} ({len(ids)} identities, {time.time() - t0:.1f} s)")
    return 0


def cmd_generate(args) -> int:
    from cluster.runtime import init_ray
    from pipelines.generate import check_output, preflight, run

    overrides = []
    if args.identities is not None:
        overrides.append(f"generate.identities={args.identities}")
    if args.start is not None:
        overrides.append(f"generate.start={args.start}")
    if args.out is not None:
        overrides.append(f"generate.out={args.out}")
    if args.overwrite:
        overrides.append("generate.overwrite=true")
    args.overrides = overrides + list(args.overrides)
    cfg = _config(args)
    preflight(cfg)  # missing weights or files, unusable output: fail before starting Ray
    check_output(cfg)
    init_ray(cfg.generate.ray)
    result = run(cfg)
    print(result.line())
    return 0


def cmd_export(args) -> int:
    from pipelines.layout3dpain import export_3dpain

    if args.format != "3dpain":
        raise ConfigError(f"unknown export format {args.format!r}; supported: 3dpain")
    counts = export_3dpain(args.dataset, args.out, overwrite=args.overwrite)
    print(f"exported {counts['images']} images, {counts['heatmaps']} heatmaps, "
          f"{counts['annotations']} annotations, {counts['meshes']} mesh files -> {args.out}")
    return 0


def cmd_report(args) -> int:
    from pipelines.card import write_card

    path = write_card(args.dataset, args.out)
    print(f"wrote {path}")
    return 0


def cmd_train(args) -> int:
    from cluster.runtime import init_ray
    from train.run import train

    cfg = _config(args)
    name = args.name or f"{args.mode}-s{cfg.seed}"
    init_ray(cfg.generate.ray)
    res = train(cfg, args.mode, args.data, name, teacher=args.teacher, resume=args.resume)
    m = res.best_metrics
    print(f"{args.mode} run {res.run}: best val macro AUROC "
          f"{m.get('val_macro_auroc', float('nan')):.3f} (epoch {m.get('epoch', '?')}), "
          f"acc {m.get('val_acc', float('nan')):.3f}, +-1 {m.get('val_acc_pm1', float('nan')):.3f}"
          f"; best checkpoint {res.best_checkpoint}")
    return 0


def cmd_evaluate(args) -> int:
    import json
    from pathlib import Path

    from train.evaluate import evaluate
    from train.run import fetch_checkpoint

    model_dir = fetch_checkpoint(args.checkpoint)
    run = next((p for p in Path(args.checkpoint).resolve().parents
                if (p / "split.json").is_file()), None) if "://" not in args.checkpoint else None
    if run is not None:
        split = json.loads((run / "split.json").read_text())
        mode = json.loads((run / "config.json").read_text())["mode"]
        history = json.loads((run / "history.json").read_text()) \
            if (run / "history.json").is_file() else None
        which = args.split
    else:  # a bare checkpoint: every identity of the dataset
        from train.data import identity_table

        split, mode, history, which = {"all": sorted(identity_table(path=args.data))}, \
            args.mode, None, "all"
    out = args.out or str(Path(args.checkpoint).resolve().parent / f"eval-{which}")
    r = evaluate(model_dir, args.data, mode, split, which, out, history)
    m = r["metrics"]
    print(f"{mode} on {which} ({r['frames']} frames): macro AUROC {m['macro_auroc']:.3f}, "
          f"acc {m['acc']:.3f}, +-1 {m['acc_pm1']:.3f}, +-2 {m['acc_pm2']:.3f}, "
          f"MAE {m['mae']:.2f} -> {out}/metrics.md")
    return 0


def cmd_ablate(args) -> int:
    from cluster.runtime import init_ray
    from train.ablate import ablate, markdown

    cfg = _config(args)
    init_ray(cfg.generate.ray)
    summary = ablate(cfg, args.data, args.seeds, args.name)
    print(markdown(summary["rows"], args.seeds))
    print(f"wrote {cfg.train.storage.rstrip('/')}/{args.name}/ablation.md")
    return 0


def cmd_tune(args) -> int:
    import dataclasses

    from cluster.config import config_from_dict
    from cluster.runtime import init_ray
    from tune.sweep import read_sweep, sweep

    overrides = []
    for flag, key in (("samples", "samples"), ("concurrent", "concurrent"),
                      ("storage", "storage")):
        if getattr(args, flag) is not None:
            overrides.append(f"tune.{key}={getattr(args, flag)}")
    args.overrides = overrides + list(args.overrides)
    cfg = load_config(args.config, args.overrides, layers=[args.sweep])
    data, teacher = args.data, args.teacher
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
    # Tune needs the dashboard: without it, trials stopped by ASHA leak their CPUs
    init_ray(dataclasses.replace(cfg.generate.ray, include_dashboard=True))
    res = sweep(cfg, data, teacher, args.name, resume=args.resume)
    print(f"sweep {res['folder']}: {len(res['rows'])} trials; best val macro AUROC "
          f"{res['best']['val_macro_auroc']:.3f} -> {res['folder']}/best.yaml, leaderboard.md, "
          "results.csv, history.png, importance.png" + (", final.md" if res["final"] else ""))
    return 0


def cmd_submit(args) -> int:
    from cluster.resources import unplaceable
    from cluster.submit import follow, submit

    rest = list(args.args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    # validate the config here: a typo should fail in one second, not on the cluster
    if args.command_name in ("generate", "train", "tune", "ablate"):
        sub, extra = build_parser().parse_known_args([args.command_name, *rest])
        overrides = list(getattr(sub, "overrides", [])) + [e for e in extra if "=" in e]
        if getattr(sub, "seed", None) is not None:
            overrides.append(f"seed={sub.seed}")
        cfg = load_config(sub.config, overrides,
                          layers=[sub.sweep] if args.command_name == "tune" else [])
        if args.cluster_config:
            bad = unplaceable(cfg, args.cluster_config)
            if bad:
                raise ConfigError(bad[0] + "; change the config or add a node type")
    job_id, addr, passed = submit(args.command_name, rest, args.address, args.submission_id)
    print(f"submitted job {job_id} to {addr}: pain3d {args.command_name} {' '.join(rest)}")
    print("environment passed: " + (", ".join(passed) if passed else "(none)")
          + " (values not shown)")
    print(f"follow:  ray job logs --address {addr} --follow {job_id}")
    print(f"status:  ray job status --address {addr} {job_id}")
    print(f"stop:    ray job stop --address {addr} {job_id}")
    if args.wait:
        status = follow(job_id, addr)
        print(f"job {job_id}: {status}")
        return 0 if status.endswith("SUCCEEDED") else 1
    return 0


def cmd_make_tiny_diffusion(args) -> int:
    from actors.tiny_diffusion import make_tiny_kandinsky

    paths = make_tiny_kandinsky(args.out)
    print("wrote tiny random-initialised Kandinsky 2.2 pipelines: "
          + ", ".join(f"{k}={v}" for k, v in paths.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pain3d", description="Synthetic 3D pain faces and ViTPain training on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preview", help="labelled contact sheet of a few identities (no Ray)")
    p.add_argument("--identities", type=int, default=6, help="how many identities (default 6)")
    p.add_argument("--start", type=int, default=0, help="first identity index (default 0)")
    p.add_argument("--out", default="preview.png", help="PNG to write (default preview.png)")
    _add_config_args(p)
    p.set_defaults(func=cmd_preview)

    g = sub.add_parser("generate", help="generate the dataset on Ray (RAY_ADDRESS or a local Ray)")
    g.add_argument("--identities", type=int, default=None, help="how many identities")
    g.add_argument("--start", type=int, default=None, help="first identity index")
    g.add_argument("--out", default=None, help="output folder or s3://bucket/prefix")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing dataset instead of skipping finished identities")
    _add_config_args(g)
    g.set_defaults(func=cmd_generate)

    e = sub.add_parser("export", help="write a dataset in another layout (the authors' 3DPain)")
    e.add_argument("--format", default="3dpain", help="layout (3dpain)")
    e.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    e.add_argument("dataset", help="pain3d dataset folder or s3:// URI")
    e.add_argument("out", help="folder to write")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="dataset card: PSPI histogram, demographics, preview")
    r.add_argument("dataset", help="pain3d dataset (folder or s3://) or a 3DPain-layout folder")
    r.add_argument("--out", default=None, help="card folder (default DATASET/card)")
    r.set_defaults(func=cmd_report)

    tr = sub.add_parser("train", help="train the teacher (heatmaps) or the student (RGB) on Ray")
    tr.add_argument("mode", choices=["teacher", "student"])
    tr.add_argument("--data", required=True, help="dataset (pain3d folder/s3, or 3DPain layout)")
    tr.add_argument("--teacher", default=None, help="teacher checkpoint (student mode)")
    tr.add_argument("--name", default=None, help="run name (default <mode>-s<seed>)")
    tr.add_argument("--resume", action="store_true", help="continue the run of that name")
    _add_config_args(tr)
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="metrics, per-group gaps, confusion matrix, curves")
    ev.add_argument("--checkpoint", required=True, help="a run's checkpoint folder")
    ev.add_argument("--data", required=True, help="dataset the run was trained on")
    ev.add_argument("--split", default="test", choices=["train", "val", "test"])
    ev.add_argument("--mode", default="teacher", choices=["teacher", "student"],
                    help="input type when the checkpoint is outside a run folder")
    ev.add_argument("--out", default=None, help="report folder (default beside the checkpoint)")
    ev.set_defaults(func=cmd_evaluate)

    ab = sub.add_parser("ablate", help="the paper's Table 2: four models x seeds on one split")
    ab.add_argument("--data", required=True)
    ab.add_argument("--seeds", type=int, default=3)
    ab.add_argument("--name", default="ablation", help="folder under train.storage")
    _add_config_args(ab)
    ab.set_defaults(func=cmd_ablate)

    tu = sub.add_parser("tune", help="loss-weight sweep: Ray Tune + Optuna TPE + ASHA")
    tu.add_argument("--data", default=None, help="dataset (as for pain3d train)")
    tu.add_argument("--teacher", default=None, help="teacher checkpoint (local or s3://)")
    tu.add_argument("--sweep", default="sweep",
                    help="sweep file with the tune section (default configs/sweep.yaml)")
    tu.add_argument("--samples", type=int, default=None, help="trials in all")
    tu.add_argument("--concurrent", type=int, default=None, help="trials at once")
    tu.add_argument("--storage", default=None, help="sweeps folder or s3://bucket/prefix")
    tu.add_argument("--name", default="sweep", help="sweep folder name under the storage")
    tu.add_argument("--resume", action="store_true",
                    help="restore an interrupted sweep (finished trials are not re-run)")
    _add_config_args(tu)
    tu.set_defaults(func=cmd_tune)

    sm = sub.add_parser("submit", help="run generate/train/tune/... as a Ray job on a cluster",
                        description="Submits `pain3d COMMAND ARGS` as a Ray job: the project "
                        "as working_dir (no data, outputs or weights), S3/model-cache variables "
                        "passed through (values never printed).")
    sm.add_argument("--address", default=None,
                    help="the cluster's dashboard, http://<head>:8265 (default: RAY_ADDRESS, "
                    "else http://127.0.0.1:8265 as opened by `ray dashboard ray_config.yaml`)")
    sm.add_argument("--cluster-config", default=None,
                    help="check the job's resource demands against this launcher config "
                    "(e.g. ray_config.yaml) before submitting")
    sm.add_argument("--submission-id", default=None, help="job id to use (default: Ray's)")
    sm.add_argument("--wait", action="store_true", help="follow the logs until the job ends")
    sm.add_argument("command_name", metavar="COMMAND",
                    choices=["generate", "train", "tune", "evaluate", "ablate", "export",
                             "report"])
    sm.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments")
    sm.set_defaults(func=cmd_submit)

    t = sub.add_parser("make-tiny-diffusion",
                       help="write tiny random Kandinsky 2.2 pipelines (for tiny-diffusion.yaml)")
    t.add_argument("out", nargs="?", default="models/tiny-kandinsky")
    t.set_defaults(func=cmd_make_tiny_diffusion)
    return parser


USER_ERRORS = (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError,
               PermissionError, IsADirectoryError, OSError)


_USER_ERROR_NAMES = {t.__name__ for t in USER_ERRORS} | {
    "StorageError", "OutputConflict", "ModuleNotFoundError", "ImportError", "KeyError",
    "CorruptImage", "SweepExists"}
_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+): (.+)$")


def _user_error(e: BaseException) -> str | None:
    """The user's problem behind an exception, through Ray's wrappers: a stage that failed on
    a worker arrives as RayTaskError / UserCodeException with the real error as its cause, or
    (an actor that could not start) as ActorDiedError whose message holds the traceback; a
    failed training run as WorkerGroupError (the workers' exceptions) or ControllerError."""
    seen = set()
    ray_text = []
    todo = [e]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if not type(e).__module__.startswith("ray.") and isinstance(e, USER_ERRORS):
            text = str(e).strip()
            return text.splitlines()[0] if text else type(e).__name__
        ray_text.append(str(e))
        todo.append(getattr(e, "cause", None) or e.__cause__)
        todo.extend((getattr(e, "worker_failures", None) or {}).values())
        todo.append(getattr(e, "controller_failure", None))
    for text in ray_text:
        for line in reversed(text.splitlines()):
            m = _ERROR_LINE.match(line.strip())
            if m and m.group(1) in _USER_ERROR_NAMES:
                return m.group(2)
    return None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    # key=value overrides may come after options (argparse leaves those unparsed)
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        return int(args.func(args) or 0)
    except Exception as e:  # noqa: BLE001 - user errors become one line; bugs keep tracebacks
        msg = _user_error(e)
        if msg is None:
            raise
        print(f"pain3d: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
