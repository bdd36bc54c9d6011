"""The per-worker training loop for Ray Train (TorchTrainer; DDP over gloo or NCCL).

Teacher: ViTPain on heatmap images. Student: ViTPain on RGB frames, distilled from the
frozen teacher run on the paired heatmap (the same row's heatmap column).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from train import progress
from train.losses import FeatureProjection, vitpain_loss
from train.metrics import compute_metrics
from train.model import N_AUS, N_PSPI, ModelConfig, ViTPain


class StudentNet(nn.Module):
    """The student and its feature projection, one module so DDP syncs both."""

    def __init__(self, model: ViTPain, projection: nn.Module):
        super().__init__()
        self.model, self.projection = model, projection

    def forward(self, x):
        return self.model(x)


def save_model(model: ViTPain, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "model_config.json").write_text(json.dumps(model.cfg.__dict__))


def load_model(folder: str | Path, map_location="cpu") -> ViTPain:
    folder = Path(folder)
    if not (folder / "model.pt").is_file() or not (folder / "model_config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a pain3d checkpoint (model.pt and "
                                "model_config.json expected)")
    try:
        cfg = ModelConfig(**json.loads((folder / "model_config.json").read_text()))
    except (json.JSONDecodeError, TypeError) as e:  # not JSON, or keys of another version
        raise ValueError(f"{folder / 'model_config.json'} is not valid JSON for a pain3d "
                         f"model config ({e}); re-save the checkpoint") from e
    cfg.pretrained_file = None  # the checkpoint holds the weights
    model = ViTPain(cfg, weights_follow=True)
    state = torch.load(folder / "model.pt", map_location=map_location, weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"checkpoint {folder} does not match its model config ({e})") from e
    return model


def _lr_lambdas(cfg, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)

    def cosine(step):
        t = min(step, total) / total
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    def backbone(step):  # frozen (lr 0) for the first epochs, then the shared schedule
        return 0.0 if step < cfg.freeze_backbone_epochs * steps_per_epoch else cosine(step)

    return [backbone, cosine]


def _augment(x: torch.Tensor, h: torch.Tensor | None, gen: torch.Generator, jitter: bool):
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None].to(x.device), x.flip(-1), x)
    if h is not None:  # the paired heatmap flips with its image
        h = torch.where(flip[:, None, None, None].to(h.device), h.flip(-1), h)
    if jitter:
        x = x * (1 + 0.2 * (torch.rand(x.shape[0], 1, 1, 1, generator=gen).to(x.device) - 0.5))
    return x, h


@torch.no_grad()
def predict(model: ViTPain, batches, mode: str, device) -> dict[str, np.ndarray]:
    model.eval()
    logits, aus, y, au_true, groups = [], [], [], [], {}
    for b in batches:
        x = (b["heatmap"] if mode == "teacher" else b["image"]).to(device)
        out = model(x)
        logits.append(out["pspi_logits"].float().cpu().numpy())
        aus.append(out["au"].float().cpu().numpy())
        y.append(b["pspi"].cpu().numpy())
        au_true.append(b["aus"].cpu().numpy())
        for g in ("age_group", "gender", "ethnicity"):
            if g in b:
                groups.setdefault(g, []).append(np.asarray(b[g]))
    if not logits:  # an empty shard (fewer frames than workers)
        return {"logits": np.zeros((0, N_PSPI), np.float32), "au": np.zeros((0, N_AUS), np.float32),
                "y": np.zeros(0, np.int64), "au_true": np.zeros((0, N_AUS), np.float32)}
    res = {"logits": np.concatenate(logits), "au": np.concatenate(aus), "y": np.concatenate(y),
           "au_true": np.concatenate(au_true)}
    res.update({g: np.concatenate(v) for g, v in groups.items()})
    return res


def train_func(config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg, mode = config["train"], config["mode"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(config["seed"] + rank)
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    device = ray.train.torch.get_device()
    model = ViTPain(cfg.model)
    teacher = None
    net: nn.Module = model
    if config.get("teacher_dir"):
        teacher = load_model(config["teacher_dir"]).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        net = StudentNet(model, FeatureProjection(model.feature_dim, teacher.feature_dim))
    net = ray.train.torch.prepare_model(net)
    inner = net.module if hasattr(net, "module") else net
    student_model = inner.model if teacher is not None else inner
    projection = inner.projection if teacher is not None else None
    backbone = list(student_model.backbone.parameters())
    heads = [p for n, p in inner.named_parameters() if "backbone." not in n]
    opt = torch.optim.AdamW([{"params": backbone, "lr": cfg.lr_backbone},
                             {"params": heads, "lr": cfg.lr_heads}], weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(config["n_train"] / (cfg.batch_size * world)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambdas(cfg, steps_per_epoch))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, history = 0, []
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # resumed: after a worker failure or with --resume
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", map_location=device, weights_only=False)
        inner.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, history = state["epoch"] + 1, state["history"]
    gen = torch.Generator().manual_seed(config["seed"] * 1000 + rank)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    kill = config.get("kill_worker")  # fault injection for tests: {"epoch": k, "marker": path}
    for epoch in range(start, cfg.epochs):
        if kill and epoch == kill["epoch"] and rank == world - 1 and not os.path.exists(kill["marker"]):
            Path(kill["marker"]).touch()  # die once: the retried run must get past this epoch
            os._exit(1)
        net.train()
        losses = []
        for b in train_shard.iter_torch_batches(batch_size=cfg.batch_size, device=device,
                                                drop_last=False):
            x = b["heatmap"] if mode == "teacher" else b["image"]
            h = b["heatmap"] if teacher is not None else None
            if cfg.augment:
                x, h = _augment(x, h, gen, jitter=mode == "student")
            with torch.autocast(device.type, enabled=use_amp):
                out = net(x)
                t_out = None
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(h)
                loss, _ = vitpain_loss(out, b["pspi"], b["aus"], cfg.weights, t_out, projection)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(float(loss.detach()))
        metrics = {"epoch": epoch, "epochs_done": epoch + 1,  # ASHA's clock
                   "started_at_epoch": start,  # > 0 once resumed
                   "train_loss": float(np.mean(losses)) if losses else float("nan"),
                   "lr_heads": opt.param_groups[1]["lr"], "lr_backbone": opt.param_groups[0]["lr"]}
        # every rank predicts its share of the validation set; rank 0 scores the union
        p = predict(student_model, val_shard.iter_torch_batches(batch_size=64, device=device),
                    mode, device)
        if world > 1:
            parts = [None] * world
            torch.distributed.all_gather_object(parts, p)
            p = {k: np.concatenate([q[k] for q in parts]) for k in p}
        if rank == 0:
            metrics.update({f"val_{k}": v for k, v in
                            compute_metrics(p["logits"], p["y"], p["au"], p["au_true"]).items()})
        history.append(metrics)
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if rank == 0:
                torch.save({"net": inner.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict(), "epoch": epoch, "history": history},
                           Path(d) / "state.pt")
                save_model(student_model, Path(d) / "model")
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=checkpoint)
        if rank == 0:
            progress.write(config.get("progress_to"), metrics, cfg.epochs)
