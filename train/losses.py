"""ViTPain losses: supervised CE + MSE, and heatmap-teacher distillation.

    L = l_pspi CE + l_au MSE + l_pspi_d T^2 KL(softmax(z_t/T) || softmax(z_s/T))
        + l_au_d MSE(y_s, y_t) + l_feat_d MSE(proj(CLS_s), CLS_t)

With regression heads (``train.model.head``): + l_reg MSE(r_s, PSPI/16) + l_bin sum_k
BCE(b_k, PSPI >= k); a student without class logits distils its r_s towards the teacher's
expected PSPI / 16 (MSE, weight l_pspi_d) instead of the KL term.

Not in the paper, each off at weight 0 (issue 31): + l_hm MSE(decoder(tokens_s),
pool(heatmap)), the student's token grid regressing the heatmap the teacher reads; + l_att
KL(attn_t || attn_s) per AU query, the teacher's attention over its grid.

Late fusion (paper 003, ``train/fusion.py``): the 2D head and the 3D classifier each get their
own cross-entropy (weight l_pspi), and a learned fusion weight the cross-entropy of the fused
answer with both classifiers held fixed; distillation acts on the fused answer.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from train.config import CLASS_WEIGHTS, LossWeights  # noqa: F401 - defined torch-free
from train.heads import BINARY_THRESHOLDS, PSPI_MAX


def class_weights(pspi, how: str, n_classes: int = 17) -> list[float] | None:
    """Cross-entropy weights per PSPI level from the training labels ``pspi``: 1/n_k
    (``inverse``) or 1/sqrt(n_k) (``sqrt_inverse``), scaled so that the training frames'
    mean weight is 1; absent levels get 0. None for ``none``. PyTorch's weighted
    cross-entropy divides each batch's loss by the batch's total weight, so that scaling
    does not change the loss: the weights act only relative to one another, per batch."""
    if how == "none":
        return None
    if how not in CLASS_WEIGHTS:
        raise ValueError(f"unknown train.class_weights {how!r}; use one of {CLASS_WEIGHTS}")
    n = np.bincount(np.asarray(pspi, int), minlength=n_classes).astype(float)
    if not n.sum():
        return None
    w = np.zeros(n_classes)
    seen = n > 0
    w[seen] = 1 / (n[seen] if how == "inverse" else np.sqrt(n[seen]))
    return (w * n.sum() / (w * n).sum()).tolist()


def pain_x2_weights(pspi, n_classes: int = 17) -> list[float] | None:
    """Sampling weights per PSPI level: PSPI >= 1 frames at twice the weight of PSPI 0 ones
    (the authors' sampler), scaled so that the training frames' mean weight is 1."""
    n = np.bincount(np.asarray(pspi, int), minlength=n_classes).astype(float)
    if not n.sum():
        return None
    w = np.where(np.arange(n_classes) >= 1, 2.0, 1.0)
    return (w * n.sum() / (w * n).sum()).tolist()


def kl_distill(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 KL(P_teacher || P_student) at temperature T, averaged over the batch."""
    log_ps = F.log_softmax(student_logits / t, dim=-1)
    log_pt = F.log_softmax(teacher_logits / t, dim=-1)
    return (t * t) * F.kl_div(log_ps, log_pt, log_target=True, reduction="batchmean")


class FeatureProjection(nn.Module):
    """Maps the student's CLS to the teacher's width when they differ (identity otherwise),
    or, ``learnable``, always through a linear map (two networks trained apart share no
    basis, so matching their features coordinate by coordinate asks for an arbitrary one)."""

    def __init__(self, student_dim: int, teacher_dim: int, learnable: bool = False):
        super().__init__()
        self.proj = nn.Identity() if student_dim == teacher_dim and not learnable else \
            nn.Linear(student_dim, teacher_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class HeatmapDecoder(nn.Module):
    """The student's token grid (B, N, D), N = s x s, to a (B, 3, 2s, 2s) heatmap: a 1 x 1
    convolution, GELU, 2x upsampling and a 3 x 3 convolution. Training-only (not saved with
    the model): it makes the student's features say where the face moved."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU(),
                                 nn.Upsample(scale_factor=2, mode="bilinear"),
                                 nn.Conv2d(hidden, 3, 3, padding=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, d = tokens.shape
        s = math.isqrt(n)
        if s * s != n:
            raise ValueError(f"the heatmap decoder needs a square token grid, got {n} tokens")
        return self.net(tokens.transpose(1, 2).reshape(b, d, s, s))


def heatmap_loss(decoder: nn.Module, tokens: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
    """MSE between the decoded grid and the heatmap averaged down to the grid's size."""
    pred = decoder(tokens).float()
    return F.mse_loss(pred, F.adaptive_avg_pool2d(heatmap.float(), pred.shape[-2:]))


def attention_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of each AU query's attention over the teacher's grid (B, 6, N);
    a finer student grid is summed onto the teacher's cells first."""
    b, q, n = student.shape
    nt = teacher.shape[-1]
    if n != nt:
        s, st = math.isqrt(n), math.isqrt(nt)
        student = F.adaptive_avg_pool2d(student.reshape(b * q, 1, s, s), st).reshape(b, q, nt)
        student = student / student.sum(-1, keepdim=True)
    eps = 1e-8
    t = teacher.float()
    return (t * ((t + eps).log() - (student.float() + eps).log())).sum(-1).mean()


def supervised(out: dict, pspi: torch.Tensor, aus: torch.Tensor, w: LossWeights,
               ce_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The label terms of whichever heads ``out`` has."""
    parts = {"au_mse": F.mse_loss(out["au"], aus)}
    total = w.au * parts["au_mse"]
    if "pspi_logits_3d" in out:  # late fusion: each classifier on its own
        parts["ce"] = F.cross_entropy(out["pspi_logits_2d"], pspi, weight=ce_weight)
        parts["ce_3d"] = F.cross_entropy(out["pspi_logits_3d"], pspi, weight=ce_weight)
        total = total + w.pspi * (parts["ce"] + parts["ce_3d"])
        if "pspi_logits_weight" in out:
            parts["ce_weight"] = F.nll_loss(out["pspi_logits_weight"], pspi, weight=ce_weight)
            total = total + w.pspi * parts["ce_weight"]
            parts["fusion_weight"] = out["fusion_weight"]  # reported, not a loss
    elif "pspi_logits" in out:
        parts["ce"] = F.cross_entropy(out["pspi_logits"], pspi, weight=ce_weight)
        total = total + w.pspi * parts["ce"]
    if "pspi_reg" in out:
        parts["reg_mse"] = F.mse_loss(out["pspi_reg"].float(), pspi.float() / PSPI_MAX)
        target = torch.stack([pspi >= k for k in BINARY_THRESHOLDS], 1).float()
        parts["bce"] = F.binary_cross_entropy_with_logits(out["binary_logits"].float(), target)
        total = total + w.pspi_reg * parts["reg_mse"] + w.binary * parts["bce"]
    return total, parts


def expected_pspi(out: dict) -> torch.Tensor:
    """PSPI / 16 as a model answers it: its regression, else its classes' expectation."""
    if "pspi_reg" in out:
        return out["pspi_reg"].float()
    p = out["pspi_logits"].float().softmax(-1)
    return p @ torch.arange(p.shape[-1], device=p.device, dtype=p.dtype) / PSPI_MAX


def vitpain_loss(out: dict, pspi: torch.Tensor, aus: torch.Tensor, w: LossWeights,
                 teacher: dict | None = None, projection: nn.Module | None = None,
                 ce_weight: torch.Tensor | None = None, heatmap: torch.Tensor | None = None,
                 decoder: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``ce_weight``: per-class weights of the PSPI cross-entropy (class imbalance);
    ``decoder`` and ``heatmap``: the heatmap regression (``weights.heatmap_distill``)."""
    total, parts = supervised(out, pspi, aus, w, ce_weight)
    if decoder is not None:
        parts["heatmap_distill"] = heatmap_loss(decoder, out["tokens"], heatmap)
        total = total + w.heatmap_distill * parts["heatmap_distill"]
    if teacher is not None and w.au_attention_distill > 0:
        if "au_attention" not in out or "au_attention" not in teacher:
            raise ValueError("train.weights.au_attention_distill needs AU queries in both the "
                             "student and the teacher (train.model.au_queries: true)")
        parts["au_attention_distill"] = attention_kl(out["au_attention"], teacher["au_attention"])
        total = total + w.au_attention_distill * parts["au_attention_distill"]
    if teacher is not None:
        if "pspi_logits" in out and "pspi_logits" in teacher:
            parts["kl"] = kl_distill(out["pspi_logits"], teacher["pspi_logits"], w.temperature)
        else:  # a regression student: towards the teacher's PSPI estimate
            parts["kl"] = F.mse_loss(expected_pspi(out), expected_pspi(teacher))
        parts["au_distill"] = F.mse_loss(out["au"], teacher["au"])
        cls = projection(out["cls"]) if projection is not None else out["cls"]
        parts["feature_distill"] = F.mse_loss(cls, teacher["cls"])
        total = (total + w.pspi_distill * parts["kl"] + w.au_distill * parts["au_distill"]
                 + w.feature_distill * parts["feature_distill"])
    return total, {k: float(v.detach()) for k, v in parts.items()}
