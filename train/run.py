"""Driver side of training: split, datasets, TorchTrainer, and the run folder.

Run folder ``<storage>/<name>/``: Ray Train's checkpoints (each holds ``model/`` with
model.pt + model_config.json), ``split.json``, ``config.json``, ``history.json`` and
``best_checkpoint.txt``. Re-running with ``resume=True`` and the same name continues from
the latest checkpoint; without it an existing run is refused.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from pipelines import guard, storage
from pipelines.layout3dpain import require_columns
from train.data import (READ_COLUMNS, identity_table, make_split, qa_failures, split_datasets,
                        split_hash)
from train.losses import class_weights, pain_x2_weights
from train.loop import train_func
from train.progress import Watcher

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig

log = logging.getLogger(__name__)


class RunExists(ValueError):
    pass


@dataclass
class TrainResult:
    run: str
    best_checkpoint: str | None
    best_metrics: dict
    history: list[dict]
    split: dict


def _frames_per_identity(data: str) -> dict[int, int]:
    from collections import Counter

    from pipelines.layout3dpain import load_frames_columns

    t = load_frames_columns(data, ["identity"])
    return Counter(int(i) for i in t.column("identity").to_pylist())


def count_frames(data: str, ids: list[int], max_frames: int | None = None,
                 excluded: int = 0) -> int:
    """Training frames of the identities ``ids``, less ``excluded`` ones, at most
    ``max_frames`` (what a run's steps per epoch are planned from)."""
    per_id = _frames_per_identity(data)
    n = sum(per_id.get(i, 0) for i in ids) - excluded
    return min(n, max_frames) if max_frames else n


def fetch_checkpoint(uri: str, files: tuple[str, str] = ("model.pt", "model_config.json")
                     ) -> str:
    """A local folder holding a checkpoint's ``files`` (weights, config; ViTPain's unless
    given) for a checkpoint given as a local path or s3:// URI (a run checkpoint folder or
    its model/ subfolder)."""
    what = f"pain3d checkpoint ({' and '.join(files)} expected)"
    if not uri.startswith("s3://"):
        p = Path(uri)
        p = p / "model" if (p / "model" / files[0]).exists() else p
        if not all((p / f).is_file() for f in files):
            raise FileNotFoundError(f"{uri} is not a {what}")
        return str(p)
    loc = storage.resolve(uri)
    tmp = tempfile.mkdtemp(prefix="pain3d-ckpt-")
    for sub in ("model/", ""):
        ok = True
        for name in (*files, "checkpoint.json"):
            data = storage.read_bytes(loc, sub + name)
            if data is None:
                ok = ok and name == "checkpoint.json"  # absent for bare models
                continue
            Path(tmp, name).write_bytes(data)
        if ok:
            return tmp
    raise FileNotFoundError(f"no {what} at {uri}")


def plan_split(cfg: "Pain3DConfig", data: str, split_file: str | None = None
               ) -> dict[str, list[int]]:
    """The split this dataset gets: the authors' ``split_file`` (CSV) when given, else
    ``train.split``; refuses one with an empty part (before Ray starts, not 30 s into a
    run)."""
    require_columns(data, READ_COLUMNS)
    ids = identity_table(path=data)
    if split_file:
        from pipelines.import3dpain import split_from_file

        split = split_from_file(data, split_file)
    else:
        split = make_split(ids, cfg.train.split, cfg.seed)
    empty = [k for k in ("train", "val", "test") if not split[k]]
    if empty:
        raise ValueError(f"train.split {list(cfg.train.split)} leaves the {empty[0]} split "
                         f"empty for the {len(ids)} identities of {data}; give every part a "
                         "fraction that holds at least one identity")
    return split


def check_teacher_split(teacher: str, teacher_dir: str, student_hash: str) -> None:
    """A teacher trained on another split has seen this run's val/test identities."""
    from train.loop import checkpoint_meta

    meta = checkpoint_meta(teacher_dir) or {}
    if meta.get("mode") not in (None, "teacher"):
        raise ValueError(f"--teacher {teacher} is a {meta['mode']} checkpoint; give a "
                         "checkpoint of pain3d train teacher")
    if meta.get("split_hash") != student_hash:
        raise ValueError(f"--teacher {teacher} was trained on another split (hash "
                         f"{meta.get('split_hash', 'not recorded')}, this run "
                         f"{student_hash}), so it has seen this run's validation or test "
                         "identities; train the teacher on the same dataset with the same "
                         "seed and train.split")


def check_resumable(storage_uri: str, name: str) -> None:
    """--resume of a run that never started is refused (as ``tune --resume`` does)."""
    if storage.read_json(storage.resolve(storage_uri), f"{name}/split.json") is None:
        raise FileNotFoundError(f"no run {name!r} in {storage_uri} to resume; run it without "
                                "--resume first")


def open_run(storage_uri: str, name: str, resume: bool) -> tuple[storage.Location, dict | None]:
    """The storage of run ``name`` and its recorded split (None: a new run). A run that exists
    is refused without ``resume``, a folder that is not a run always."""
    guard.check_name("run", name)
    loc = storage.resolve(storage_uri)
    if not loc.is_s3:
        if os.path.exists(loc.root) and not os.path.isdir(loc.root):
            raise RunExists(f"train.storage {storage_uri} is a file; point train.storage at a "
                            "folder for the runs (e.g. runs/)")
        try:
            loc.fs.create_dir(loc.root, recursive=True)
        except OSError as e:
            raise storage.explain(loc, e) from e
    existing = storage.read_json(loc, f"{name}/split.json")
    if existing is not None and not resume:
        raise RunExists(f"run {name!r} already exists in {storage_uri}; pass --resume to "
                        "continue it or choose another --name")
    if existing is None and loc.fs.get_file_info(loc.join(name)).type != pafs.FileType.NotFound:
        raise RunExists(f"{storage_uri}/{name} exists but is not a pain3d run (no split.json); "
                        "choose another --name")
    guard.mark_root(loc, "runs")
    return loc, existing


def check_same_data(loc, name: str, data: str) -> None:
    """--resume continues on the dataset the run started on, never silently on another."""
    recorded = (storage.read_json(loc, f"{name}/config.json") or {}).get("data")
    if recorded and not guard.same_place(recorded, data):
        raise RunExists(f"run {name!r} was trained on {recorded}, not {data}; resume it with "
                        f"--data {recorded}, or start a new run (another --name) on {data}")


# validation metrics that can pick a run's best checkpoint, and which way is better
SELECTABLE = {"val_macro_auroc": "max", "val_auroc_pspi_ge1": "max", "val_auroc_pspi_ge2": "max",
              "val_auroc_pspi_ge3": "max", "val_acc": "max", "val_pearson_r": "max",
              "val_mae_expected": "min"}


def train(cfg: "Pain3DConfig", mode: str, data: str, name: str, teacher: str | None = None,
          resume: bool = False, epoch_hook=None, distill: bool = True,
          seed: int | None = None, callbacks: list | None = None,
          show_progress: bool = True, split: dict | None = None,
          init: str | None = None, select: str = "val_macro_auroc") -> TrainResult:
    """``distill=False`` trains the RGB model without a teacher (the ablation's first rows);
    ``seed`` seeds training (the split always uses the config's seed); ``callbacks`` go to
    Ray Train's RunConfig (a sweep passes Tune's report callback); ``show_progress``: an
    epoch bar on stderr (off inside sweep trials); ``split``: the identities of each part
    (a cross-validation fold's) instead of ``train.split``'s; ``init``: a checkpoint whose
    weights the model starts from (its model config must be ``train.model``); ``select``: the
    validation metric that picks the best checkpoint (:data:`SELECTABLE`)."""
    if select not in SELECTABLE:
        raise ValueError(f"unknown checkpoint selection metric {select!r}; use one of "
                         f"{sorted(SELECTABLE)}")
    tc = cfg.train
    if mode not in ("teacher", "student"):
        raise ValueError(f"unknown training mode {mode!r}; use teacher or student")
    if mode == "teacher" and tc.model.neutral_reference:
        raise ValueError("train.model.neutral_reference is for the RGB student (a neutral "
                         "frame has no heatmap to compare with); train the teacher with "
                         "train.model.neutral_reference=false")
    if mode == "teacher" and tc.model.fusion != "none":
        raise ValueError("train.model.fusion is for the RGB student (the heatmap teacher it "
                         "distils from takes no 3D parameters); train the teacher with "
                         "train.model.fusion=none")
    teacher_dir = None
    if mode == "student" and distill:
        if not teacher:
            raise ValueError("student training needs --teacher CKPT (a teacher checkpoint), or "
                             "--no-distill to train on the labels alone")
        teacher_dir = fetch_checkpoint(teacher)
        from train.loop import load_model

        load_model(teacher_dir)  # fail here, with one sentence, not on every worker
    from train.model import check_model

    check_model(tc.model)
    loc, existing = open_run(tc.storage, name, resume)
    # one sentence now, not a worker traceback later (columns, an empty part of the split)
    if existing is not None:
        check_same_data(loc, name, data)
        require_columns(data, READ_COLUMNS)
    split = existing if existing is not None else split or plan_split(cfg, data)
    from train.fusion import with_fusion

    cfg, fusion_init = with_fusion(cfg, data, split)
    tc = cfg.train
    meta = {"mode": mode, "split": split, "split_hash": split_hash(split), "data": data}
    init_dir = _init_dir(init, cfg) if init else None
    if tc.model.neutral_reference:
        require_columns(data, ["neutral_sample_id"])
    train_pspi = _pspi_of(data, split["train"])
    weights = class_weights(train_pspi, tc.class_weights)
    # weighted sampling: the inverse-frequency level weights, a mean of 1 per training frame
    sampling = (class_weights(train_pspi, "inverse") if tc.sampling == "weighted" else
                pain_x2_weights(train_pspi) if tc.sampling == "pain_x2" else None)
    if teacher_dir is not None:
        check_teacher_split(teacher, teacher_dir, meta["split_hash"])
    files = {"split.json": split, "config.json": {
        "mode": mode, "data": data, "teacher": teacher, "init": init, "class_weights": weights,
        "sampling_weights": sampling, "config": cfg.to_dict()}}
    result = fit_run(loc, name, existing, [data, teacher or ""], files, lambda: _trainer(
        cfg, mode, data, name, split, loc, {
            "seed": cfg.seed if seed is None else seed, "teacher_dir": teacher_dir,
            "epoch_hook": epoch_hook, "meta": meta, "init_dir": init_dir,
            "class_weights": weights, "fusion_init": fusion_init}, callbacks, sampling,
        select),
        Watcher(tc.storage, name, tc.epochs, f"{mode} {name}") if show_progress else None)
    return finish(result, loc, name, tc.storage, split, select, SELECTABLE[select])


def fit_run(loc, name: str, existing, inputs: list[str], files: dict, make_trainer,
            watcher=None):
    """Writes the run's first files, builds the trainer and fits it. A failure or Ctrl-C
    removes the checkpoints it left half-written and, for a new run with no whole checkpoint
    yet, its folder too (never ``inputs``)."""
    if existing is not None:
        remove_partial_checkpoints(loc, name)  # left by an earlier crash (a full disk)
    try:
        for rel, obj in files.items():
            storage.write_json(loc, f"{name}/{rel}", obj)
        trainer = make_trainer()
        with watcher or contextlib.nullcontext():
            return _fit(trainer)
    except BaseException as e:
        remove_partial_checkpoints(loc, name)
        # the folder did not exist before this call (open_run checked)
        if existing is None and not _has_checkpoint(loc, name):
            guard.guarded_delete(loc, name, inputs=inputs)
            e.pain3d_nothing_kept = True  # so no --resume is advised
        raise


def _pspi_of(data: str, ids: list[int]):
    from train.data import identity_frames

    return identity_frames(data, ids, ["pspi"]).column("pspi").to_numpy()


def _init_dir(init: str, cfg: "Pain3DConfig") -> str:
    """The local folder of the ``init`` checkpoint, whose model must be ``train.model``."""
    from dataclasses import asdict

    from train.loop import load_model

    folder = fetch_checkpoint(init)
    have = asdict(load_model(folder).cfg)
    want = dict(asdict(cfg.train.model), pretrained_file=None)
    if have != want:
        diff = sorted(k for k in want if have.get(k) != want[k])
        raise ValueError(f"--init {init} is a {have['backbone']} model that differs from "
                         f"train.model in {', '.join(diff)}; train with the checkpoint's model "
                         "config (pain3d crossval takes it from the checkpoint)")
    return folder


def _fit(trainer):
    """``trainer.fit()`` in a helper thread. On the main thread Ray Train installs a SIGINT
    handler that exits the process from inside the handler (no clean-up, no message, exit
    code 1); off it, Ctrl-C and SIGTERM stay ours: a KeyboardInterrupt here, the run folder
    handled by the caller, and the training actors ended with the driver."""
    import threading

    box: dict = {}

    def target():
        try:
            box["result"] = trainer.fit()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            box["error"] = e

    t = threading.Thread(target=target, name="pain3d-fit", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.5)
    if "error" in box:
        raise box["error"]
    return box["result"]


def _trainer(cfg: "Pain3DConfig", mode: str, data: str, name: str, split: dict, loc,
             loop: dict, callbacks, sampling: list[float] | None = None,
             select: str = "val_macro_auroc"):
    """The TorchTrainer of one run: datasets of the split, workers, storage, checkpoints."""
    from ray.train import DataConfig
    from ray.train.torch import TorchTrainer

    tc = cfg.train
    exclude = qa_failures(data, split["train"]) if tc.exclude_qa_failures else None
    n_train = count_frames(data, split["train"], tc.max_frames, len(exclude or ()))
    datasets = split_datasets(data, {k: split[k] for k in ("train", "val")},
                              tc.model.img_size, tc.max_frames, tc.decode_cpus,
                              seed=loop["seed"], crop=tc.model.face_crop,
                              cache=tc.cache_decoded, exclude=exclude,
                              neutral=tc.model.neutral_reference, sampling=sampling,
                              params=tc.model.fusion != "none"
                              and tc.model.fusion_params == "truth")
    cached = datasets.pop("train") if tc.cache_decoded else None  # a CachedSplit
    return TorchTrainer(
        train_func,
        train_loop_config={"train": tc, "mode": mode, "n_train": n_train,
                           "progress_to": (tc.storage, name), "train_cached": cached,
                           "threads": max(1, int(tc.cpus_per_worker)), **loop},
        scaling_config=scaling(tc), datasets=datasets,
        # val is sharded too (each rank predicts a share, rank 0 scores the gathered union);
        # Ray's equal split may drop up to num_workers - 1 validation frames per epoch
        dataset_config=DataConfig(datasets_to_split=list(datasets)),
        run_config=run_config(tc, loc, name, select, SELECTABLE[select], callbacks))


def scaling(tc):
    """Ray Train's workers: ``train.num_workers``, on GPUs when asked or when the cluster has
    them."""
    import ray
    from ray.train import ScalingConfig

    use_gpu = tc.use_gpu
    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= 1
    return ScalingConfig(num_workers=tc.num_workers, use_gpu=use_gpu,
                         resources_per_worker={"CPU": tc.cpus_per_worker})


def run_config(tc, loc, name: str, metric: str, order: str, callbacks=None):
    """Where a run's checkpoints go, how many are kept (the best by ``metric``), retries."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    return RunConfig(
        name=name, storage_path=tc.storage if not loc.is_s3 else loc.root,
        storage_filesystem=loc.fs if loc.is_s3 else None,
        failure_config=FailureConfig(max_failures=tc.max_failures), callbacks=callbacks,
        checkpoint_config=CheckpointConfig(num_to_keep=tc.num_to_keep,
                                           checkpoint_score_attribute=metric,
                                           checkpoint_score_order=order))


def finish(result, loc, name: str, storage_uri: str, split: dict,
           metric: str = "val_macro_auroc", order: str = "max") -> TrainResult:
    """After fit(): the best checkpoint (by ``metric``), history.json, TensorBoard logs."""
    best = result.get_best_checkpoint(metric=metric, mode=order)
    history = _history(result.checkpoint)
    best_path = best.path if best is not None else None
    if best_path and loc.is_s3 and not best_path.startswith("s3://"):
        best_path = f"s3://{best_path}"  # usable as --teacher / --checkpoint as printed
    best_metrics = {}
    if best is not None:
        for ck, m in result.best_checkpoints or []:
            if ck.path == best.path:
                best_metrics = m
    storage.write_json(loc, f"{name}/history.json", history)
    _write_tensorboard(loc, name, history)
    storage.write_bytes(loc, f"{name}/best_checkpoint.txt", (best_path or "").encode())
    return TrainResult(run=f"{storage_uri.rstrip('/')}/{name}", best_checkpoint=best_path,
                       best_metrics=best_metrics, history=history, split=split)


def _checkpoints(loc, name: str) -> list[str]:
    """The names of the run's checkpoint folders."""
    sel = pafs.FileSelector(loc.join(name), allow_not_found=True, recursive=False)
    return sorted(i.base_name for i in loc.fs.get_file_info(sel)
                  if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_"))


def _has_checkpoint(loc, name: str) -> bool:
    return bool(_checkpoints(loc, name))


def remove_partial_checkpoints(loc, name: str) -> list[str]:
    """Deletes (through the guard) the run's checkpoint folders that are not whole: a torch
    file truncated or missing, as a full disk or a killed upload leaves them. Local runs only
    (an S3 upload is whole or absent)."""
    from train.loop import complete_checkpoint

    if loc.is_s3:
        return []
    bad = [c for c in _checkpoints(loc, name)
           if not complete_checkpoint(Path(loc.join(name, c)))]
    if bad:
        guard.guarded_delete(loc, [f"{name}/{c}" for c in bad])
        log.warning("removed %d half-written checkpoint(s) of run %s: %s", len(bad), name,
                    ", ".join(bad))
    return bad


CLOCK_KEYS = ("epoch", "epochs_done", "started_at_epoch")


def _write_tensorboard(loc, name: str, history: list[dict]) -> None:
    """TensorBoard event logs of every epoch in <run>/tensorboard (`tensorboard --logdir`)."""
    from tensorboardX import SummaryWriter

    with tempfile.TemporaryDirectory() as d:
        w = SummaryWriter(d)
        for h in history:
            for k, v in h.items():
                if k not in CLOCK_KEYS and isinstance(v, (int, float)):
                    w.add_scalar(k.replace("val_", "val/").replace("train_", "train/"), v,
                                 h["epoch"])
        w.close()
        for f in Path(d).iterdir():
            storage.write_bytes(loc, f"{name}/tensorboard/{f.name}", f.read_bytes())


def _history(checkpoint) -> list[dict]:
    """Every epoch's metrics, from the latest checkpoint's own state (Ray keeps only the
    best few checkpoints' metrics)."""
    import torch

    if checkpoint is None:
        return []
    with checkpoint.as_directory() as d:
        state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=False)
    return state["history"]

