"""Driver side of training: split, datasets and the TorchTrainer of one run (its folder:
train/run_folder.py)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipelines.layout3dpain import require_columns
from train.data import (READ_COLUMNS, identity_table, make_split, qa_failures, split_datasets,
                        split_hash)
from train.losses import class_weights, pain_x2_weights
from train.loop import train_func
from train.progress import Watcher
from train.run_folder import (TrainResult, check_same_data, fetch_checkpoint, finish, fit_run,
                              open_run)

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig

log = logging.getLogger(__name__)


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

