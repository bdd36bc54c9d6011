"""ViTPain's heads (paper 000, section 4, and the authors' later training code):

    AU queries     A = Q P^T / sqrt(D), alpha = softmax over patches, F_AU = alpha P,
                   y_AU = ReLU(Linear(ReLU(Linear(F_AU))))          one intensity per AU, >= 0
    PSPI classes   CLS -> LayerNorm -> [Linear -> GELU -> Dropout] x 2 -> Linear -> 17 logits
    PSPI regression  the same trunk -> 1 -> sigmoid: PSPI / 16 (MSE)
    binary         the same trunk -> 3 logits: PSPI >= 1, 2, 3 (BCE)
    neutral reference  pain tokens query a neutral frame's tokens (8-head cross-attention),
                   then a residual connection and LayerNorm
"""
from __future__ import annotations

import math

import torch
from torch import nn

N_AUS = 6  # AU4, AU6, AU7, AU9, AU10, AU43
N_PSPI = 17  # PSPI 0..16
PSPI_MAX = 16
BINARY_THRESHOLDS = (1, 2, 3)  # the binary heads: pain at PSPI >= k
HEADS = ("classification", "regression", "both")
FUSION_HEADS = 8


class AUQueryHead(nn.Module):
    """Six learnable queries attend over the patch tokens; a shared MLP reads each out (or,
    ``per_au``, each AU its own MLP)."""

    def __init__(self, dim: int, n_aus: int = N_AUS, hidden: int = 256, per_au: bool = False):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_aus, dim) * dim ** -0.5)

        def mlp():
            return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1),
                                 nn.ReLU())

        if per_au:
            self.mlps = nn.ModuleList(mlp() for _ in range(n_aus))
        else:
            self.mlp = mlp()

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.einsum("qd,bnd->bqn", self.queries, patches) / math.sqrt(patches.shape[-1])
        alpha = scores.softmax(dim=-1)
        feats = torch.einsum("bqn,bnd->bqd", alpha, patches)
        if hasattr(self, "mlps"):
            return torch.cat([m(feats[:, i]) for i, m in enumerate(self.mlps)], 1), alpha
        return self.mlp(feats).squeeze(-1), alpha


class LocalTokens(nn.Module):
    """A stride-8 feature map as tokens: its cells projected to the backbone's width, plus
    the final map upsampled onto them (a feature pyramid's top-down path), layer-normed."""

    def __init__(self, local_channels: int, dim: int):
        super().__init__()
        self.lateral = nn.Conv2d(local_channels, dim, 1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, local: torch.Tensor, final: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(final, size=local.shape[-2:], mode="nearest")
        return self.norm((self.lateral(local) + up).flatten(2).transpose(1, 2))


class CLSAUHead(nn.Module):
    """Baseline: AU intensities from the CLS token."""

    def __init__(self, dim: int, n_aus: int = N_AUS, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_aus),
                                 nn.ReLU())

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.mlp(cls)


class PSPIHead(nn.Module):
    """An MLP on CLS; ``n_out`` 17 class logits, 1 regression logit or 3 binary logits."""

    def __init__(self, dim: int, hidden: int, dropout: float, n_out: int = N_PSPI):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, n_out))

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.net(cls)


def bn_mlp(n_in: int, hidden: int, n_out: int, blocks: int, dropout: tuple = ()
           ) -> nn.Sequential:
    """``blocks`` x [Linear, BatchNorm, LeakyReLU] (then Dropout, at the given rates, after
    the first blocks), and a linear output: 002's intensity head and 003's 3D classifier."""
    layers: list[nn.Module] = []
    for i in range(blocks):
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.BatchNorm1d(hidden),
                   nn.LeakyReLU(0.2)]
        if i < len(dropout):
            layers.append(nn.Dropout(dropout[i]))
    return nn.Sequential(*layers, nn.Linear(hidden, n_out))


class NeutralFusion(nn.Module):
    """Pain tokens (queries) attend over the neutral frame's tokens (keys and values); the
    result is added back to the pain tokens and layer-normalised, so the model sees each
    token beside what the same face looks like at rest."""

    def __init__(self, dim: int, heads: int = FUSION_HEADS, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"the neutral reference's {heads}-head cross-attention needs a "
                             f"feature width divisible by {heads}; the backbone gives {dim}: "
                             "choose another train.model.backbone or backbone_kwargs")
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, pain: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attn(pain, neutral, neutral, need_weights=False)
        return self.norm(pain + attended)
