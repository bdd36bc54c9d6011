"""The ``pain3d`` command line."""
from __future__ import annotations

import argparse
import os
import sys
import time

from cluster import console
from cluster.config import ConfigError
from cluster.options import add_config_args, config_of
from cluster.train_commands import (ablate_config, cmd_ablate, cmd_crossval, cmd_evaluate,
                                    cmd_train, cmd_tune, crossval_config, train_config,
                                    tune_config)
from cluster.validate import MAX_INDEX

MAX_PREVIEW = 64  # identities on one contact sheet


def cmd_preview(args) -> int:
    from tqdm import tqdm

    from faces.models import make_face_model
    from faces.preview import contact_sheet, is_preview

    if not 1 <= args.identities <= MAX_PREVIEW:
        raise ConfigError(f"--identities must be between 1 and {MAX_PREVIEW} for a contact "
                          f"sheet, got {args.identities}")
    if not 0 <= args.start <= MAX_INDEX:
        raise ConfigError(f"--start must be between 0 and {MAX_INDEX:,}, got {args.start}")
    if os.path.isdir(args.out):
        raise ConfigError(f"--out {args.out} is a folder; give the PNG file to write, e.g. "
                          f"{os.path.join(args.out, 'preview.png')}")
    if os.path.lexists(args.out) and not is_preview(args.out):
        raise ConfigError(f"--out {args.out} exists and is not a contact sheet pain3d wrote; "
                          "choose another file name")
    cfg = config_of(args)
    model = make_face_model(cfg.face)
    ids = list(range(args.start, args.start + args.identities))
    t0 = time.time()
    with tqdm(total=len(ids), desc="preview", unit="identity", file=sys.stderr) as bar:
        out = contact_sheet(model, ids, cfg.seed, args.out, cfg.render, cfg.heatmap,
                            cfg.demographics, cfg.pspi, progress=bar.update)
    print(f"wrote {out} ({len(ids)} identities, {time.time() - t0:.1f} s)")
    return 0


def generate_config(args):
    """The generate command's config: its flags become overrides, then the config's own."""
    overrides = []
    if args.identities is not None:
        overrides.append(f"generate.identities={args.identities}")
    if args.start is not None:
        overrides.append(f"generate.start={args.start}")
    if args.out is not None:
        overrides.append(f"generate.out={args.out}")
    if args.overwrite:
        overrides.append("generate.overwrite=true")
    return config_of(args, overrides)


def cmd_generate(args) -> int:
    from tqdm import tqdm

    from cluster.runtime import init_ray
    from pipelines.generate import check_output, preflight, run

    cfg = generate_config(args)
    preflight(cfg)  # missing weights or files, unusable output: fail before starting Ray
    check_output(cfg)
    init_ray(cfg.generate.ray, args.verbose)
    with tqdm(total=cfg.generate.identities, desc="generate", unit="identity",
              file=sys.stderr, dynamic_ncols=True) as bar:
        result = run(cfg, progress=bar.update)
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


def cmd_import(args) -> int:
    from tqdm import tqdm

    from pipelines import importers

    bar = dict(unit="subject" if args.source == "unbc" else "identity", file=sys.stderr,
               dynamic_ncols=True, desc=f"import {args.source}")
    if args.source == "unbc":
        from cluster.runtime import init_ray
        from pipelines import unbc

        cfg = config_of(args)
        unbc.check_size(args.size)  # bad input: one line, before Ray starts
        subjects = unbc.subjects_of(args.root)
        init_ray(cfg.generate.ray, args.verbose)
        with tqdm(total=len(subjects), **bar) as b:
            m = unbc.run(args.root, args.out, args.size, args.overwrite, progress=b.update)
        lines = unbc.summary_lines(m)
    else:
        from cluster.runtime import init_ray
        from pipelines.import3dpain import import_3dpain

        cfg = config_of(args)
        init_ray(cfg.generate.ray, args.verbose)
        with tqdm(total=None, **bar) as b:
            m = import_3dpain(args.root, args.out, args.missing_heatmaps, args.overwrite,
                              progress=b.update, start=lambda n: b.reset(total=n))
        c, f = m["counts"], m["files"]
        lines = [f"imported {c['frames']} frames ({c['heatmaps']} heatmaps) of "
                 f"{c['identities']} identities"]
        for kind, what in (("unmatched", "match no name rule"), ("duplicates", "repeat a frame")):
            if f[kind]["files"]:
                print(f"warning: {f[kind]['files']} file(s) {what} and were not imported (e.g. "
                      f"{f[kind]['examples'][0]}; listed in manifest.json)", file=sys.stderr)
    importers.warn_skips(m["skipped"])
    print("\n".join(lines + [f"wrote {args.out} (manifest.json)"]))
    return 0


def cmd_report(args) -> int:
    from functools import partial

    from tqdm import tqdm

    from pipelines.report import write_report

    bar = partial(tqdm, desc="report", unit="identity", file=sys.stderr, dynamic_ncols=True)
    page = write_report(args.dataset, args.out, args.run, args.ablation, args.sweep,
                        args.identities, args.frame_size, progress=bar)
    print(f"wrote {page} (open it in a browser; the folder is self-contained)")
    return 0


# what each command checks locally before anything runs (submit runs these too)
LOCAL_CHECKS = {"generate": generate_config, "train": train_config, "ablate": ablate_config,
                "tune": tune_config, "crossval": crossval_config}


def cmd_submit(args) -> int:
    from cluster.resources import unplaceable
    from cluster.submit import follow, submit

    rest = list(args.args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    # the whole command line is checked here: a typo fails in one second, not on the cluster
    sub = parse_args(build_parser(), [args.command_name, *rest])
    check = LOCAL_CHECKS.get(args.command_name)
    if check is not None:
        sub.remote = True  # data and storage are the cluster's: not looked at from here
        cfg = check(sub)
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


def cmd_demo(args) -> int:
    from cluster.demo import demo_config, run_demo

    d, cfg = demo_config(args)
    t0 = time.time()
    state = run_demo(d, cfg, args.verbose)
    ev = state["done"]["evaluate"]
    print(f"demo finished in {time.time() - t0:.0f} s ({d.identities} identities): test macro "
          f"AUROC teacher {ev['teacher']['macro_auroc']:.3f}, distilled student "
          f"{ev['student']['macro_auroc']:.3f}")
    print(f"report: {state['done']['report']['page']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pain3d", description="Synthetic 3D pain faces and ViTPain training on Ray.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="show Ray's own messages and the workers' output (otherwise they "
                        "go to a log file in $PAIN3D_LOG_DIR or /tmp/pain3d-logs)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **kw: _add(*a, parents=[common], **kw)  # -v on every command
    p = sub.add_parser("preview", help="labelled contact sheet of a few identities (no Ray)")
    p.add_argument("--identities", type=int, default=6, help="how many identities (default 6)")
    p.add_argument("--start", type=int, default=0, help="first identity index (default 0)")
    p.add_argument("--out", default="preview.png", help="PNG to write (default preview.png)")
    add_config_args(p)
    p.set_defaults(func=cmd_preview)

    dm = sub.add_parser("demo", help="the whole loop on the built-in models: generate, teacher, "
                        "distilled student, evaluate, HTML report (resumable)")
    dm.add_argument("--out", default="demo", help="folder for everything (default demo/)")
    dm.add_argument("--identities", type=int, default=24, help="identities (default 24)")
    add_config_args(dm)
    dm.set_defaults(func=cmd_demo)

    g = sub.add_parser("generate", help="generate the dataset on Ray (RAY_ADDRESS or a local Ray)")
    g.add_argument("--identities", type=int, default=None, help="how many identities")
    g.add_argument("--start", type=int, default=None, help="first identity index")
    g.add_argument("--out", default=None, help="output folder or s3://bucket/prefix")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing dataset instead of skipping finished identities")
    add_config_args(g)
    g.set_defaults(func=cmd_generate)

    e = sub.add_parser("export", help="write a dataset in another layout (the authors' 3DPain)")
    e.add_argument("--format", default="3dpain", help="layout (3dpain)")
    e.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    e.add_argument("dataset", help="pain3d dataset folder or s3:// URI")
    e.add_argument("out", help="folder to write")
    e.set_defaults(func=cmd_export)

    im = sub.add_parser("import", help="a real or released dataset into the frames table: "
                        "UNBC-McMaster (aligned faces, labels checked) or the authors' 3DPain")
    im.add_argument("source", choices=["unbc", "3dpain"], help="the layout of ROOT")
    im.add_argument("root", help="the archive's folder (UNBC: the one holding Images/, "
                    "Frame_Labels/, AAM_landmarks/; 3DPain: images/, annotations/, heatmaps/)")
    im.add_argument("--out", required=True, help="dataset folder or s3://bucket/prefix to write")
    im.add_argument("--size", type=int, default=224,
                    help="UNBC: side of the aligned face square in pixels (default 224)")
    im.add_argument("--missing-heatmaps", default="error", choices=["error", "skip"],
                    help="3DPain: a pain frame without a heatmap stops the import (error, "
                    "default) or is left out and counted (skip)")
    im.add_argument("--overwrite", action="store_true",
                    help="replace an import made with other settings")
    add_config_args(im)
    im.set_defaults(func=cmd_import)

    r = sub.add_parser("report", help="HTML report: gallery with filters, PSPI and demographic "
                       "plots, QA; training runs, an ablation and a sweep when given")
    r.add_argument("dataset", help="pain3d dataset (folder or s3://) or a 3DPain-layout folder")
    r.add_argument("--out", default=None, help="report folder (default DATASET/report)")
    r.add_argument("--run", action="append", default=[], metavar="RUN",
                   help="a training run folder (train.storage/NAME); repeat for several")
    r.add_argument("--ablation", default=None, help="an ablation folder (pain3d ablate)")
    r.add_argument("--sweep", default=None, help="a sweep folder (pain3d tune)")
    r.add_argument("--identities", type=int, default=48,
                   help="identities in the gallery, the first by index (default 48)")
    r.add_argument("--frame-size", type=int, default=192,
                   help="side of the gallery's frame copies in pixels (default 192)")
    r.set_defaults(func=cmd_report)

    tr = sub.add_parser("train", help="train on Ray: the teacher (heatmaps), the student (RGB),"
                        " the learned AU rig (paper 001) or the image-to-3D encoder (002)")
    tr.add_argument("mode", choices=["teacher", "student", "rig", "encoder"])
    tr.add_argument("--data", required=True, help="dataset (pain3d folder/s3, or 3DPain layout)")
    tr.add_argument("--teacher", default=None, help="teacher checkpoint (student mode)")
    tr.add_argument("--no-distill", action="store_true",
                    help="student mode without a teacher: labels alone (e.g. the synthetic "
                    "pretraining of pain3d crossval --init without heatmaps)")
    tr.add_argument("--name", default=None, help="run name (default <mode>-s<seed>)")
    tr.add_argument("--resume", action="store_true", help="continue the run of that name")
    tr.add_argument("--split-file", default=None, metavar="CSV",
                    help="the authors' split (annotation_base_name,split: 0 train, 1 val, "
                    "2 test) instead of train.split; split.json records it")
    tr.add_argument("--layer", action="append", default=[],
                    help="a preset merged over --config (repeatable), e.g. fusion "
                    "(configs/fusion.yaml: paper 003's fusion for the student)")
    add_config_args(tr)
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="metrics, per-group gaps, confusion matrix, curves")
    ev.add_argument("--checkpoint", required=True, help="a run's checkpoint folder")
    ev.add_argument("--data", required=True, help="dataset the run was trained on")
    ev.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                    help="identities to score, from the run's split.json (default test); "
                    "'all' scores every identity, training ones included")
    ev.add_argument("--mode", default=None, choices=["teacher", "student"],
                    help="input type, only for a bare model that does not record it")
    ev.add_argument("--out", default=None, help="report folder (default beside the checkpoint)")
    ev.add_argument("--neutral-shots", type=int, default=None,
                    help="a neutral-reference model's answers averaged over N references per "
                    "frame (default: the run's train.eval.neutral_shots, else 1)")
    ev.set_defaults(func=cmd_evaluate)

    ab = sub.add_parser("ablate", help="the paper's Table 2: four models x seeds on one split")
    ab.add_argument("--data", required=True)
    ab.add_argument("--seeds", type=int, default=3)
    ab.add_argument("--splits", type=int, default=1,
                    help="identity splits (train.split's stratified split dealt in K "
                    "seeded orders), each with --seeds seeds: the CIs then include which "
                    "identities were tested")
    ab.add_argument("--resume", action="store_true",
                    help="continue an interrupted ablation of this --name: finished runs are "
                    "read back, an interrupted one continues from its last checkpoint")
    ab.add_argument("--bootstrap", type=int, default=1000, metavar="REPS",
                    help="bootstrap replicates of the CIs (default 1000)")
    ab.add_argument("--name", default="ablation", help="folder under train.storage")
    ab.add_argument("--rows", default=None,
                    help="comma-separated rows (default: the paper's baseline,au_queries,"
                    "au_queries_distill,teacher); also neutral_reference, "
                    "neutral_reference_shared, neutral_reference_distill, lora, regression, "
                    "both_heads, weighted_sampling, fusion_intermediate, fusion_late_max, "
                    "fusion_late_mean, fusion_late_weighted (true 3D parameters; each with "
                    "_encoder: an encoder's, train.model.fusion_encoder); heatmap, local, "
                    "attention_distill, teacher_init, linear_projection, spatial_all (the "
                    "student's spatial options)")
    add_config_args(ab)
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
    add_config_args(tu)
    tu.set_defaults(func=cmd_tune)

    cv = sub.add_parser("crossval", help="subject-grouped K-fold cross-validation on real "
                        "data (the paper's Table 3), folds as Ray Tune trials")
    cv.add_argument("--data", default=None, help="dataset (e.g. from pain3d import unbc)")
    cv.add_argument("--folds", type=int, default=None, help="K (default crossval.folds: 5)")
    cv.add_argument("--folds-file", default=None, metavar="FILE",
                    help="a given subject-to-fold assignment: JSON (folds of identities, as "
                    "folds.json) or CSV (identity,fold or subject,fold)")
    cv.add_argument("--init", default=None, help="checkpoint to fine-tune every fold from (a "
                    "teacher or a student pretrained on pain3d data); default: "
                    "train.model.pretrained_file, or a seeded random start")
    cv.add_argument("--name", default="crossval", help="folder under train.storage")
    cv.add_argument("--protocol", default="crossval", help="YAML layered over the preset with "
                    "the fine-tuning settings (default configs/crossval.yaml)")
    cv.add_argument("--resume", action="store_true",
                    help="finish an interrupted cross-validation (finished folds are kept)")
    add_config_args(cv)
    cv.set_defaults(func=cmd_crossval)

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
                             "report", "import", "crossval"])
    sm.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments")
    sm.set_defaults(func=cmd_submit)

    from cluster.model_commands import add_parsers

    add_parsers(sub)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None):
    """argparse, with key=value overrides allowed after options (left unparsed by it)."""
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    command = None
    try:
        args = parse_args(build_parser(), argv)
        command = args.command
        console.setup_logging(args.command, args.verbose)  # Ray's chatter: a log file
        console.install_signal_handlers()
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: whatever was half done is removed
        print(console.interrupted_line(command, e), file=sys.stderr)
        return console.INTERRUPTED_EXIT
    except Exception as e:  # noqa: BLE001 - user errors become one line; bugs keep tracebacks
        if console.was_interrupted(e):
            print(console.interrupted_line(command, e), file=sys.stderr)
            return console.INTERRUPTED_EXIT
        msg = console.user_error(e)
        if msg is None:
            raise
        print(f"pain3d: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
