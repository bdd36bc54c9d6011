"""A training run's folder ``<storage>/<name>/``: Ray Train's checkpoints (each holds
``model/`` with model.pt + model_config.json), ``split.json``, ``config.json``,
``history.json``, TensorBoard logs and ``best_checkpoint.txt``. Re-running with
``resume=True`` and the same name continues from the latest checkpoint; without it an
existing run is refused. A failed start leaves no half run behind."""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from pipelines import guard, storage

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
