"""One worker's training, step by step, in plain PyTorch (no Ray): build the model, its
optimiser and schedule; freeze or unfreeze the backbone; one step; one epoch with its loss
terms averaged. ``train/loop.py`` wires these to Ray Train.

The backbone freeze is real: frozen, its parameters do not require grad, so no gradient is
computed for them (their ``.grad`` stays None), its batch-norm statistics (conv backbones)
stay as they are, and DDP is rebuilt over the parameters that train; gradient clipping
covers only those.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from train.data import MEAN, STD
from train.losses import FeatureProjection, HeatmapDecoder, vitpain_loss
from train.model import ViTPain
from train.seeds import derive, part_seed

# the history's names of the loss terms (absent terms are omitted)
TERMS = {"ce": "loss_pspi", "au_mse": "loss_au", "kl": "loss_pspi_distill",
         "au_distill": "loss_au_distill", "feature_distill": "loss_feat_distill",
         "reg_mse": "loss_pspi_reg", "bce": "loss_binary", "ce_3d": "loss_pspi_3d",
         "ce_weight": "loss_fusion_weight", "fusion_weight": "fusion_weight_3d",
         "heatmap_distill": "loss_heatmap_distill", "au_attention_distill": "loss_au_attention"}


class StudentNet(nn.Module):
    """The student and its training-only parts (the feature projection, the heatmap
    decoder: either may be None), one module so DDP syncs them all."""

    def __init__(self, model: ViTPain, projection: nn.Module | None,
                 decoder: nn.Module | None = None):
        super().__init__()
        self.model, self.projection, self.decoder = model, projection, decoder

    def forward(self, x, neutral=None, params=None):
        return self.model(x, neutral, params)


@dataclass
class Worker:
    """Everything one worker trains with."""

    model: ViTPain  # the network being trained
    inner: nn.Module  # model, or StudentNet(model, projection)
    teacher: ViTPain | None
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    cfg: object  # TrainConfig
    mode: str  # teacher | student
    device: torch.device
    gen: torch.Generator
    wrap: Callable[[nn.Module], nn.Module] = lambda m: m  # DDP for several processes
    net: nn.Module | None = None  # inner as wrapped (what forward runs through)
    frozen: bool | None = None
    scaler: torch.amp.GradScaler = field(default=None)
    meta: dict | None = None  # saved with each checkpoint (mode, split, split hash)
    ce_weight: torch.Tensor | None = None  # PSPI class weights (train.class_weights)
    seed: int = 0  # the run's seed and this worker's rank: they seed each step's draws
    rank: int = 0

    @property
    def projection(self):
        return self.inner.projection if isinstance(self.inner, StudentNet) else None

    @property
    def decoder(self):
        return self.inner.decoder if isinstance(self.inner, StudentNet) else None

    @property
    def use_amp(self) -> bool:
        return bool(self.cfg.amp) and self.device.type == "cuda"


def lr_lambdas(cfg, steps_per_epoch: int):
    """Per-step multipliers (backbone, heads): cosine from 1 to ``min_lr_ratio`` over all
    epochs; the backbone's is 0 while it is frozen."""
    total = max(1, cfg.epochs * steps_per_epoch)

    def cosine(step):
        t = min(step, total) / total
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    def backbone(step):
        return 0.0 if step < cfg.freeze_backbone_epochs * steps_per_epoch else cosine(step)

    return [backbone, cosine]


def distills(cfg) -> bool:
    """Whether any term needs the teacher (the heatmap regression does not)."""
    w = cfg.weights
    return any(v > 0 for v in (w.pspi_distill, w.au_distill, w.feature_distill,
                               w.au_attention_distill))


def build(cfg, mode: str, teacher: ViTPain | None, device, seed: int, steps_per_epoch: int,
          wrap=lambda m: m, init: dict | None = None, ce_weight=None,
          fusion: dict | None = None, rank: int = 0) -> Worker:
    """The model (a new ViTPain of ``cfg.model``, each part seeded by (seed, its name), or
    starting from the ``init`` state dict of a pretrained checkpoint), the frozen teacher
    (student mode, used only when a distillation weight is positive), AdamW with backbone
    and head rates. ``fusion``: a new fusion model's parameter statistics and encoder
    weights (``train.fusion.prepare``). ``rank`` seeds this worker's augmentation draws."""
    model = ViTPain(cfg.model, weights_follow=init is not None, seed=seed)
    if init is not None:
        model.load_saved_state(init)
    elif fusion is not None:
        model.params_in.set_stats(fusion["mean"], fusion["std"])
        if fusion["encoder"] is not None:
            model.param_encoder.load_state_dict(fusion["encoder"])
    if mode == "student" and cfg.student_init == "teacher" and init is None:
        start_from_teacher(model, teacher)
    if teacher is not None and not distills(cfg):
        teacher = None  # all distillation weights 0: the teacher plays no part
    inner = _student_net(cfg, mode, model, teacher, seed)
    if teacher is not None:
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    inner = inner.to(device)
    heads = [p for n, p in inner.named_parameters() if "backbone." not in n]
    # LoRA: the adapters are the backbone group, at a tenth of the heads' rate
    lr_backbone = cfg.lr_heads * 0.1 if cfg.model.lora.rank else cfg.lr_backbone
    opt = torch.optim.AdamW([{"params": model.backbone_parameters(), "lr": lr_backbone},
                             {"params": heads, "lr": cfg.lr_heads}], weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambdas(cfg, steps_per_epoch))
    w = Worker(model, inner, teacher, opt, sched, cfg, mode, torch.device(device),
               torch.Generator().manual_seed(derive(seed, "augment", rank)), wrap,
               seed=seed, rank=rank)
    w.scaler = torch.amp.GradScaler("cuda", enabled=w.use_amp)
    if ce_weight is not None:
        w.ce_weight = torch.as_tensor(ce_weight, dtype=torch.float32, device=device)
    return w


def _student_net(cfg, mode: str, model: ViTPain, teacher, seed: int) -> nn.Module:
    """The model alone, or wrapped with its training-only parts (each seeded by name)."""
    projection = decoder = None
    if teacher is not None:
        with part_seed(seed, "projection"):
            projection = FeatureProjection(model.feature_dim, teacher.feature_dim,
                                           learnable=cfg.distill_projection == "linear")
    if mode == "student" and cfg.weights.heatmap_distill > 0:
        with part_seed(seed, "heatmap_decoder"):
            decoder = HeatmapDecoder(model.feature_dim)
    return model if projection is None and decoder is None else \
        StudentNet(model, projection, decoder)


def start_from_teacher(model: ViTPain, teacher: ViTPain | None) -> None:
    """``train.student_init: teacher``: the student's backbone starts as a copy of the
    teacher's trained one (the heads stay the student's own)."""
    if teacher is None:
        raise ValueError("train.student_init is teacher but the student has no teacher; pass "
                         "--teacher CKPT (and not --no-distill), or set train.student_init to "
                         "scratch")
    try:
        model.backbone.load_state_dict(teacher.backbone.state_dict())
    except RuntimeError as e:
        raise ValueError(f"train.student_init teacher: the teacher's backbone "
                         f"({teacher.cfg.backbone}) does not fit the student's "
                         f"({model.cfg.backbone}; {str(e).splitlines()[0]}); train both with "
                         "the same train.model backbone settings") from None


def set_frozen(w: Worker, frozen: bool) -> None:
    """Freezes or unfreezes the backbone and (re)builds the DDP wrapper over the parameters
    that train now (DDP registers only parameters that require grad)."""
    if w.frozen == frozen and w.net is not None:
        return
    w.model.set_backbone_trainable(not frozen)
    w.net = w.wrap(w.inner)
    w.frozen = frozen


def augment(x: torch.Tensor, h: torch.Tensor | None, gen: torch.Generator, jitter: bool,
            n: torch.Tensor | None = None, style: str = "pain3d"):
    """Horizontal flip (the paired heatmap and neutral frame flip with their image) and, for
    RGB, brightness (the neutral frame keeps its own). ``style='authors'``: flip p 0.3, a
    rotation of up to 15 degrees (paired frames turn alike) and colour jitter 0.2."""
    p_flip = 0.3 if style == "authors" else 0.5
    flip = (torch.rand(x.shape[0], generator=gen) < p_flip)[:, None, None, None].to(x.device)
    x = torch.where(flip, x.flip(-1), x)
    h = None if h is None else torch.where(flip, h.flip(-1), h)
    n = None if n is None else torch.where(flip, n.flip(-1), n)
    if style == "authors":
        angle = (torch.rand(x.shape[0], generator=gen) * 2 - 1) * 15.0
        x, h, n = (None if t is None else _rotate(t, angle) for t in (x, h, n))
        if jitter:
            x = _in_pixels(x, lambda p: _colour_jitter(p, gen, 0.2))
    elif jitter:
        scale = 1 + 0.2 * (torch.rand(x.shape[0], 1, 1, 1, generator=gen).to(x.device) - 0.5)
        x = _in_pixels(x, lambda p: p * scale)
    return x, h, n


def _in_pixels(x: torch.Tensor, f) -> torch.Tensor:
    """``f`` applied to the pixel values in [0, 1] of a normalised batch (brightness scales
    pixels; the same factor on normalised values would be a contrast change about the
    ImageNet mean), normalised again after."""
    mean = torch.as_tensor(MEAN, dtype=x.dtype, device=x.device)
    std = torch.as_tensor(STD, dtype=x.dtype, device=x.device)
    return (f(x * std + mean) - mean) / std


def _rotate(t: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Each image turned about its centre by its angle (border pixels repeated)."""
    import torch.nn.functional as F

    a = torch.deg2rad(degrees).to(t.device, t.dtype)
    rot = torch.stack([torch.stack([a.cos(), -a.sin(), torch.zeros_like(a)], 1),
                       torch.stack([a.sin(), a.cos(), torch.zeros_like(a)], 1)], 1)
    grid = F.affine_grid(rot, list(t.shape), align_corners=False)
    return F.grid_sample(t, grid, padding_mode="border", align_corners=False)


def _colour_jitter(x: torch.Tensor, gen: torch.Generator, s: float) -> torch.Tensor:
    """Brightness, contrast and saturation each scaled by a factor in [1 - s, 1 + s]."""
    def factor():
        return (1 + s * (2 * torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 1)).to(x.device)

    x = x * factor()
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    grey = x.mean(1, keepdim=True)
    return ((x - grey) * factor() + grey).clamp(0, 1)


def train_step(w: Worker, b: dict) -> dict[str, float]:
    """One optimiser step on batch ``b``; returns the loss and its terms."""
    x = (b["heatmap"] if w.mode == "teacher" else b["image"]).float()  # cached: float16
    h = b["heatmap"].float() if w.teacher is not None or w.decoder is not None else None
    n = b["neutral"].float() if w.model.cfg.neutral_reference else None
    params = w.model.params_of(x, b)  # of the frame as it is (an encoder saw no flips)
    if w.cfg.augment:
        x, h, n = augment(x, h, w.gen, jitter=w.mode == "student", n=n,
                          style=w.cfg.augment_style)
    with torch.autocast(w.device.type, enabled=w.use_amp):
        out = w.net(x, n, params)
        t_out = None
        if w.teacher is not None:
            with torch.no_grad():
                t_out = w.teacher(h)
        loss, parts = vitpain_loss(out, b["pspi"], b["aus"], w.cfg.weights, t_out, w.projection,
                                   w.ce_weight, h, w.decoder)
    w.opt.zero_grad(set_to_none=True)
    w.scaler.scale(loss).backward()
    w.scaler.unscale_(w.opt)
    nn.utils.clip_grad_norm_([p for p in w.inner.parameters() if p.requires_grad],
                             w.cfg.grad_clip)
    w.scaler.step(w.opt)
    w.scaler.update()
    w.sched.step()
    return {"loss": float(loss.detach()), **{TERMS[k]: v for k, v in parts.items()}}


def run_epoch(w: Worker, batches, epoch: int | None = None) -> dict[str, float]:
    """Trains over ``batches``; the loss and each term averaged over the epoch's steps.
    With ``epoch``, each step's augmentation draws are seeded by (seed, epoch, rank, step):
    the same for every run of that seed, whatever it draws besides."""
    w.net.train()
    if w.frozen:  # a frozen backbone keeps its batch-norm statistics too
        for encoder in w.model.encoders():
            encoder.eval()
    sums: dict[str, list[float]] = {}
    for i, b in enumerate(batches):
        if epoch is not None:
            w.gen.manual_seed(derive(w.seed, "augment", epoch, w.rank, i))
        for k, v in train_step(w, b).items():
            sums.setdefault(k, []).append(v)
    out = {("train_loss" if k == "loss" else k): float(np.mean(v)) for k, v in sums.items()}
    out.setdefault("train_loss", float("nan"))
    out["lr_heads"] = w.opt.param_groups[1]["lr"]
    out["lr_backbone"] = w.opt.param_groups[0]["lr"]
    return out
