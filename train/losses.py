"""ViTPain losses: supervised CE + MSE, and heatmap-teacher distillation.

    L = l_pspi CE + l_au MSE + l_pspi_d T^2 KL(softmax(z_t/T) || softmax(z_s/T))
        + l_au_d MSE(y_s, y_t) + l_feat_d MSE(proj(CLS_s), CLS_t)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LossWeights:
    """The paper's values (found by its hyperparameter search)."""

    pspi: float = 1.0
    au: float = 1.0
    pspi_distill: float = 0.1
    au_distill: float = 0.3
    feature_distill: float = 0.5
    temperature: float = 4.0


CLASS_WEIGHTS = ("none", "inverse", "sqrt_inverse")


def class_weights(pspi, how: str, n_classes: int = 17) -> list[float] | None:
    """Cross-entropy weights per PSPI level from the training labels ``pspi``: 1/n_k
    (``inverse``) or 1/sqrt(n_k) (``sqrt_inverse``), scaled so that the training frames'
    mean weight is 1 (the loss keeps its scale); absent levels get 0. None for ``none``."""
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


def kl_distill(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 KL(P_teacher || P_student) at temperature T, averaged over the batch."""
    log_ps = F.log_softmax(student_logits / t, dim=-1)
    log_pt = F.log_softmax(teacher_logits / t, dim=-1)
    return (t * t) * F.kl_div(log_ps, log_pt, log_target=True, reduction="batchmean")


class FeatureProjection(nn.Module):
    """Maps the student's CLS to the teacher's width when they differ (identity otherwise)."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim,
                                                                               teacher_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def vitpain_loss(out: dict, pspi: torch.Tensor, aus: torch.Tensor, w: LossWeights,
                 teacher: dict | None = None, projection: nn.Module | None = None,
                 ce_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``ce_weight``: per-class weights of the PSPI cross-entropy (class imbalance)."""
    parts = {"ce": F.cross_entropy(out["pspi_logits"], pspi, weight=ce_weight),
             "au_mse": F.mse_loss(out["au"], aus)}
    total = w.pspi * parts["ce"] + w.au * parts["au_mse"]
    if teacher is not None:
        parts["kl"] = kl_distill(out["pspi_logits"], teacher["pspi_logits"], w.temperature)
        parts["au_distill"] = F.mse_loss(out["au"], teacher["au"])
        cls = projection(out["cls"]) if projection is not None else out["cls"]
        parts["feature_distill"] = F.mse_loss(cls, teacher["cls"])
        total = (total + w.pspi_distill * parts["kl"] + w.au_distill * parts["au_distill"]
                 + w.feature_distill * parts["feature_distill"])
    return total, {k: float(v.detach()) for k, v in parts.items()}
