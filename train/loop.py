"""The per-worker training loop for Ray Train (TorchTrainer; DDP over gloo or NCCL).

Teacher: ViTPain on heatmap images. Student: ViTPain on RGB frames, distilled from the
frozen teacher run on the paired heatmap (the same row's heatmap column).
"""
from __future__ import annotations

import json
import math
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from train import progress, steps
from train.metrics import compute_metrics
from train.model import BINARY_THRESHOLDS, N_AUS, N_PSPI, ModelConfig, ViTPain
from train.seeds import derive


def save_model(model: ViTPain, folder: Path, meta: dict | None = None) -> None:
    """model.pt + model_config.json, and ``meta`` (mode, split, split hash) as
    checkpoint.json: what evaluation and distillation check against."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.saved_state(), folder / "model.pt")
    (folder / "model_config.json").write_text(json.dumps(model.cfg.to_dict()))
    if meta is not None:
        (folder / "checkpoint.json").write_text(json.dumps(meta))


def checkpoint_meta(folder: str | Path) -> dict | None:
    """The checkpoint's mode, split and split hash, or None for a bare model."""
    p = Path(folder) / "checkpoint.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON ({e}); re-save the checkpoint") from e


def load_model(folder: str | Path, map_location="cpu") -> ViTPain:
    folder = Path(folder)
    if not (folder / "model.pt").is_file() or not (folder / "model_config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a pain3d checkpoint (model.pt and "
                                "model_config.json expected)")
    try:
        # checkpoints from before the face crop saw whole frames
        cfg = ModelConfig.from_dict({"face_crop": False,
                                     **json.loads((folder / "model_config.json").read_text())})
    except (json.JSONDecodeError, TypeError) as e:  # not JSON, or keys of another version
        raise ValueError(f"{folder / 'model_config.json'} is not valid JSON for a pain3d "
                         f"model config ({e}); re-save the checkpoint") from e
    if not cfg.lora.rank:
        cfg.pretrained_file = None  # the checkpoint holds the weights (LoRA: not the base's)
    model = ViTPain(cfg, weights_follow=True)
    state = load_torch_file(folder / "model.pt", map_location, weights_only=True)
    try:
        model.load_saved_state(state)
    except RuntimeError as e:
        raise ValueError(f"checkpoint {folder} does not match its model config ({e})") from e
    return model


def load_torch_file(path: Path, map_location="cpu", weights_only: bool = True):
    """torch.load, with a truncated or garbage file named in one sentence."""
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # a disk or permission problem, said as such by the console
        raise ValueError(f"{path} is truncated or not a torch checkpoint "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); use "
                         "another checkpoint or train it again") from e


def complete_checkpoint(folder: Path) -> bool:
    """A checkpoint folder as :func:`report_checkpoint` writes it, every torch file whole
    (their zip members' CRCs checked): what a disk-full or killed upload does not leave."""
    files = [folder / "state.pt", *sorted((folder / "model").glob("*.pt"))]
    if len(files) < 2 or not files[0].is_file():
        return False
    try:
        for p in files:
            with zipfile.ZipFile(p) as z:
                if z.testzip() is not None:
                    return False
    except (zipfile.BadZipFile, OSError, EOFError):
        return False
    return True


def average_outputs(outs: list[dict]) -> dict[str, torch.Tensor]:
    """One answer from several (multi-shot: one per neutral reference): class and binary
    probabilities, the regression and the AUs averaged; logits come back as the log of the
    mean probabilities, so a softmax of them is that mean."""
    if len(outs) == 1:
        return outs[0]
    mean = {}
    for k in ("pspi_logits", "pspi_logits_2d", "pspi_logits_3d"):  # late fusion: 2d, 3d
        if k in outs[0]:
            mean[k] = torch.stack([o[k].float().softmax(-1) for o in outs]).mean(0).log()
    if "binary_logits" in outs[0]:
        p = torch.stack([o["binary_logits"].float().sigmoid() for o in outs]).mean(0)
        mean["binary_logits"] = torch.logit(p)
    for k in ("pspi_reg", "au"):
        if k in outs[0]:
            mean[k] = torch.stack([o[k].float() for o in outs]).mean(0)
    return mean


def _shots(b: dict, device) -> list:
    """The neutral references of a batch: none, one (``neutral``), or several
    (``neutral_shots``, (B, K, 3, S, S): evaluation's multi-shot)."""
    if "neutral_shots" in b:
        return [n.to(device).float() for n in b["neutral_shots"].unbind(1)]
    return [b["neutral"].to(device).float()] if "neutral" in b else [None]


@torch.no_grad()
def predict(model: ViTPain, batches, mode: str, device) -> dict[str, np.ndarray]:
    """Per frame: ``logits`` (17 classes), ``reg`` (PSPI / 16) and ``binary`` (P(PSPI >= 1,
    2, 3)) as the model has them, ``au``; with labels ``y``, ``au_true`` and groups."""
    model.eval()
    keys = {"pspi_logits": "logits", "pspi_reg": "reg", "binary_logits": "binary", "au": "au",
            "pspi_logits_2d": "logits_2d", "pspi_logits_3d": "logits_3d"}
    got: dict[str, list] = {}
    for b in batches:
        x = (b["heatmap"] if mode == "teacher" else b["image"]).to(device).float()
        params = model.params_of(x, b)
        out = average_outputs([model(x, n, params) for n in _shots(b, device)])
        for k, name in keys.items():
            if k in out:
                v = out[k].float()
                got.setdefault(name, []).append((v.sigmoid() if k == "binary_logits" else v)
                                                .cpu().numpy())
        got.setdefault("y", []).append(b["pspi"].cpu().numpy())
        got.setdefault("au_true", []).append(b["aus"].cpu().numpy())
        for g in ("age_group", "gender", "ethnicity"):
            if g in b:
                got.setdefault(g, []).append(np.asarray(b[g]))
        if "sample_id" in b:  # evaluation: which frame each answer is
            for g in ("sample_id", "view", "identity"):
                v = b.get(g)
                if v is not None:
                    got.setdefault(g, []).append(v.cpu().numpy() if torch.is_tensor(v) else
                                                 np.asarray(v))
    if not got:  # an empty shard (fewer frames than workers)
        empty = {"au": (0, N_AUS), "y": (0,), "au_true": (0, N_AUS)}
        if model.cfg.classifies:
            empty["logits"] = (0, N_PSPI)
        if model.cfg.late_fusion:
            empty.update(logits_2d=(0, N_PSPI), logits_3d=(0, N_PSPI))
        if model.cfg.regresses:
            empty.update(reg=(0,), binary=(0, len(BINARY_THRESHOLDS)))
        return {k: np.zeros(v, np.int64 if k == "y" else np.float32) for k, v in empty.items()}
    return {k: np.concatenate(v) for k, v in got.items()}


def scores(p: dict) -> dict:
    """The keyword arguments of the metrics for a :func:`predict` result."""
    return {"logits": p.get("logits"), "reg": p.get("reg"), "binary": p.get("binary")}


def train_func(config: dict) -> None:
    """Ray Train's per-worker function: set up, then per epoch train, validate, checkpoint."""
    import ray.train

    cfg, ctx = config["train"], ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    w = _setup(config, rank, world)
    start, history = _restore(w)
    train_shard = config.get("train_cached")  # a CachedSplit, else a Ray Data shard
    if train_shard is None:
        train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    hook = config.get("epoch_hook")  # tests only: fault injection
    for epoch in range(start, cfg.epochs):
        if hook is not None:
            hook(epoch, rank, world)
        steps.set_frozen(w, epoch < cfg.freeze_backbone_epochs)
        # epochs are numbered from 1 for people; epochs_done (the same number) is ASHA's clock
        metrics = {"epoch": epoch + 1, "epochs_done": epoch + 1,
                   "started_at_epoch": start + 1,  # > 1 once resumed
                   "backbone_frozen": bool(w.frozen),
                   **steps.run_epoch(w, epoch_batches(train_shard, cfg, config["seed"], epoch,
                                                      rank, w.device, world), epoch)}
        metrics.update(_validate(w, val_shard, rank, world))
        history.append(metrics)
        _checkpoint(w, epoch, history, metrics, rank)
        if rank == 0:
            progress.write(config.get("progress_to"), metrics, cfg.epochs)


def _setup(config: dict, rank: int, world: int) -> steps.Worker:
    import ray.train.torch

    cfg = config["train"]
    torch.manual_seed(derive(config["seed"], "rank", rank))  # dropout; never seed + rank
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    device = ray.train.torch.get_device()
    teacher = load_model(config["teacher_dir"]) if config.get("teacher_dir") else None
    steps_per_epoch = max(1, math.ceil(config["n_train"] / (cfg.batch_size * world)))
    init = load_model(config["init_dir"]).saved_state() if config.get("init_dir") else None
    w = steps.build(cfg, config["mode"], teacher, device, config["seed"], steps_per_epoch,
                    rank=rank, wrap=_ddp if world > 1 else (lambda m: m), init=init,
                    ce_weight=config.get("class_weights"), fusion=config.get("fusion_init"))
    w.meta = config.get("meta")
    return w


def _ddp(module: nn.Module) -> nn.Module:
    import ray.train.torch

    return ray.train.torch.prepare_model(module, move_to_device=False)


def epoch_batches(shard, cfg, seed: int, epoch: int, rank: int, device=None, world: int = 1):
    """This epoch's training batches. A cached split (``train.cache_decoded``): a
    permutation of (seed, epoch) over its sample ids, dealt to the ranks. Streamed: the
    dataset's block order is reshuffled (seeded) at every pass, and a local shuffle buffer
    seeded by (seed, epoch, rank) mixes identities within each batch (an order that also
    depends on how Ray Data cut the rows into blocks)."""
    from train.order import CachedSplit, cached_batches

    if isinstance(shard, CachedSplit):
        return cached_batches(shard, cfg.batch_size, seed, epoch, rank, world, device)
    where = {"device": device} if device is not None else {}
    return shard.iter_torch_batches(
        batch_size=cfg.batch_size, drop_last=False, **where,
        local_shuffle_buffer_size=cfg.shuffle_buffer or None,
        local_shuffle_seed=derive(seed, "shuffle", epoch, rank) % 2 ** 31
        if cfg.shuffle_buffer else None)


def load_state(map_location="cpu") -> dict | None:
    """The latest checkpoint's ``state.pt`` (after a worker failure or with --resume), else
    None. Every Ray Train loop here (ViTPain, rig, encoder) checkpoints this way."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return load_torch_file(Path(d) / "state.pt", map_location, weights_only=False)


def report_checkpoint(metrics: dict, rank: int, state, save) -> None:
    """Reports an epoch; rank 0 also checkpoints ``state()`` as state.pt and the model that
    ``save(folder)`` writes into model/."""
    import ray.train

    with tempfile.TemporaryDirectory() as d:
        checkpoint = None
        if rank == 0:
            torch.save(state(), Path(d) / "state.pt")
            save(Path(d) / "model")
            if not complete_checkpoint(Path(d)):  # verified before Ray persists it
                raise OSError(f"the checkpoint written to {d} does not read back whole; "
                              "check the disk holding the temporary folder")
            checkpoint = ray.train.Checkpoint.from_directory(d)
        ray.train.report(metrics, checkpoint=checkpoint)


def _restore(w: steps.Worker) -> tuple[int, list[dict]]:
    """(first epoch, history so far): from the latest checkpoint, else (0, [])."""
    state = load_state(w.device)
    if state is None:
        return 0, []
    w.inner.load_state_dict(state["net"])
    w.opt.load_state_dict(state["opt"])
    w.sched.load_state_dict(state["sched"])
    return state["epoch"] + 1, state["history"]


def _validate(w: steps.Worker, val_shard, rank: int, world: int) -> dict:
    """Every rank predicts its share of the validation set; rank 0 scores the union. Every
    rank validates with rank 0's batch-norm statistics (DDP copies them to the others only at
    the start of each training forward, so after a step each rank holds its own)."""
    if world > 1:
        share_rank0_buffers(w.inner)
    p = gather(predict(w.model, val_shard.iter_torch_batches(batch_size=64, device=w.device),
                       w.mode, w.device), world)
    if rank != 0:
        return {}
    m = compute_metrics(y=p["y"], au_pred=p["au"], au_true=p["au_true"], **scores(p))
    for part, pm in fusion_parts(p).items():  # late fusion: each classifier alone
        m[f"macro_auroc_{part}"] = pm["macro_auroc"]
    return {f"val_{k}": v for k, v in m.items()}


def share_rank0_buffers(module: nn.Module) -> None:
    """Every rank's buffers (batch-norm statistics) set to rank 0's: a collective, so every
    rank calls it."""
    for buf in module.buffers():
        torch.distributed.broadcast(buf, 0)


def gather(p: dict[str, np.ndarray], world: int) -> dict[str, np.ndarray]:
    """Every rank's share of the validation predictions, concatenated (on every rank)."""
    if world == 1:
        return p
    parts = [None] * world
    torch.distributed.all_gather_object(parts, p)
    return {k: np.concatenate([q[k] for q in parts if k in q]) for k in p}


def fusion_parts(p: dict) -> dict[str, dict]:
    """A late-fusion model's 2D head and 3D classifier scored alone (17 classes)."""
    return {part: compute_metrics(p[f"logits_{part}"], p["y"]) for part in ("2d", "3d")
            if f"logits_{part}" in p and len(p["y"])}


def _checkpoint(w: steps.Worker, epoch: int, history: list, metrics: dict, rank: int) -> None:
    report_checkpoint(metrics, rank, lambda: {
        "net": w.inner.state_dict(), "opt": w.opt.state_dict(), "sched": w.sched.state_dict(),
        "epoch": epoch, "history": history}, lambda folder: save_model(w.model, folder, w.meta))
