"""ViTPain: a timm ViT backbone, learnable AU queries cross-attending to the patch tokens, and
a 17-class PSPI head on the CLS token (paper 000, section 4).

A convolutional timm backbone (the laptop preset's: it learns from scratch on a CPU) works the
same way: its last feature map's cells, layer-normalised, are the tokens the AU queries attend
over, and their mean stands in for the CLS token.

    A = Q P^T / sqrt(D), alpha = softmax over patches, F_AU = alpha P,
    y_AU = ReLU(Linear(ReLU(Linear(F_AU))))                 one intensity per AU, >= 0
    PSPI: CLS -> LayerNorm -> [Linear -> GELU -> Dropout] x 2 -> Linear -> 17 logits

With ``au_queries=False`` (the paper's baseline) the AUs come from the CLS token instead.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

N_AUS = 6  # AU4, AU6, AU7, AU9, AU10, AU43
N_PSPI = 17  # PSPI 0..16


@dataclass
class LoRAConfig:
    """LoRA adapters (peft) on the backbone: ``rank`` 0 is off. With adapters, the backbone's
    own weights stay frozen, only adapters and heads train, and a checkpoint holds just those."""

    rank: int = 0
    alpha: float = 16.0
    dropout: float = 0.1
    targets: list[str] = field(default_factory=lambda: ["qkv", "proj"])
    # the base weights when no pretrained_file is given: a random init under this seed, so a
    # checkpoint of adapters and heads loads onto the same base again
    base_seed: int = 0


@dataclass
class ModelConfig:
    backbone: str = "vit_tiny_patch16_224"
    backbone_kwargs: dict = field(default_factory=dict)  # e.g. {depth: 4} for a smaller ViT
    img_size: int = 224
    pretrained_file: str | None = None  # local weights (.safetensors/.bin/.pth) for the backbone
    au_queries: bool = True
    head_hidden: int = 512
    dropout: float = 0.1
    face_crop: bool = True  # the input is the face square of the frame's mask (train/crop.py)
    lora: LoRAConfig = field(default_factory=LoRAConfig)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        lora = LoRAConfig(**d.pop("lora", None) or {})
        return cls(**d, lora=lora)


class AUQueryHead(nn.Module):
    """Six learnable queries attend over the patch tokens; a shared MLP reads each out."""

    def __init__(self, dim: int, n_aus: int = N_AUS, hidden: int = 256):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_aus, dim) * dim ** -0.5)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.ReLU())

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.einsum("qd,bnd->bqn", self.queries, patches) / math.sqrt(patches.shape[-1])
        alpha = scores.softmax(dim=-1)
        feats = torch.einsum("bqn,bnd->bqd", alpha, patches)
        return self.mlp(feats).squeeze(-1), alpha


class CLSAUHead(nn.Module):
    """Baseline: AU intensities from the CLS token."""

    def __init__(self, dim: int, n_aus: int = N_AUS, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_aus),
                                 nn.ReLU())

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.mlp(cls)


class PSPIHead(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float, n_classes: int = N_PSPI):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, n_classes))

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.net(cls)


def create_backbone(cfg: ModelConfig, warn: bool = True) -> nn.Module:
    import timm

    kwargs = dict(cfg.backbone_kwargs, num_classes=0, img_size=cfg.img_size)
    if cfg.pretrained_file:
        path = Path(cfg.pretrained_file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained backbone weights {path} do not exist; download the timm weights "
                f"of {cfg.backbone} (e.g. its model.safetensors) and set "
                "train.model.pretrained_file to that file")
        # timm loads the file through its own pretrained path (resizing position embeddings)
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    elif warn:
        log.warning("backbone %s: no pretrained_file given, random initialisation", cfg.backbone)
    try:
        return timm.create_model(cfg.backbone, **kwargs)
    except TypeError as e:
        if "img_size" not in str(e):
            raise
        # a convolutional net takes any input size (ViTs size their position embeddings)
        del kwargs["img_size"]
        return timm.create_model(cfg.backbone, **kwargs)


def add_lora(backbone: nn.Module, lc: LoRAConfig) -> nn.Module:
    """peft's LoRA layers injected into the ``lc.targets`` modules; every other backbone
    weight frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    backbone = inject_adapter_in_model(LoraConfig(
        r=lc.rank, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
        target_modules=list(lc.targets)), backbone)
    for name, p in backbone.named_parameters():
        p.requires_grad_("lora_" in name)
    return backbone


class ViTPain(nn.Module):
    def __init__(self, cfg: ModelConfig, weights_follow: bool = False):
        """``weights_follow``: a checkpoint's weights are loaded next (no init warning)."""
        super().__init__()
        self.cfg = cfg
        if cfg.lora.rank:
            # the base must come back identical for a checkpoint of adapters and heads
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.lora.base_seed)
                self.backbone = add_lora(create_backbone(cfg, warn=False), cfg.lora)
        else:
            self.backbone = create_backbone(cfg, warn=not weights_follow)
        dim = self.backbone.num_features
        self.prefix = getattr(self.backbone, "num_prefix_tokens", 1)
        # a conv net's feature map has no norm of its own (a ViT's tokens end in one)
        self.spatial = not hasattr(self.backbone, "num_prefix_tokens")
        self.token_norm = nn.LayerNorm(dim) if self.spatial else None
        self.au_head = AUQueryHead(dim, hidden=cfg.head_hidden // 2) if cfg.au_queries \
            else CLSAUHead(dim, hidden=cfg.head_hidden // 2)
        self.pspi_head = PSPIHead(dim, cfg.head_hidden, cfg.dropout)

    @property
    def feature_dim(self) -> int:
        return self.backbone.num_features

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CLS (B, D), patch tokens (B, N, D))."""
        feats = self.backbone.forward_features(x)
        if self.spatial:  # (B, D, H, W) -> H*W tokens; their mean is the CLS
            patches = self.token_norm(feats.flatten(2).transpose(1, 2))
            return patches.mean(1), patches
        return feats[:, 0], feats[:, self.prefix:]  # (B, prefix + N, D), normed

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cls, patches = self.tokens(x)
        if self.cfg.au_queries:
            au, attn = self.au_head(patches)
        else:
            au, attn = self.au_head(cls), None
        out = {"pspi_logits": self.pspi_head(cls), "au": au, "cls": cls}
        if attn is not None:
            out["au_attention"] = attn
        return out

    def head_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.")]

    def backbone_parameters(self):
        """What trains in the backbone: all of it, or only the LoRA adapters."""
        return [p for n, p in self.backbone.named_parameters()
                if not self.cfg.lora.rank or "lora_" in n]

    def set_backbone_trainable(self, trainable: bool) -> None:
        for p in self.backbone_parameters():
            p.requires_grad_(trainable)

    def saved_state(self) -> dict:
        """The weights a checkpoint keeps: all, or (LoRA) the adapters and the heads."""
        state = self.state_dict()
        if not self.cfg.lora.rank:
            return state
        return {k: v for k, v in state.items() if not k.startswith("backbone.") or "lora_" in k}

    def load_saved_state(self, state: dict) -> None:
        """Loads :meth:`saved_state` (a LoRA checkpoint fills in everything but the base)."""
        if not self.cfg.lora.rank:
            self.load_state_dict(state)
            return
        res = self.load_state_dict(state, strict=False)
        missing = [k for k in res.missing_keys if not k.startswith("backbone.") or "lora_" in k]
        if missing or res.unexpected_keys:
            raise RuntimeError(f"missing {missing[:3]}, unexpected {res.unexpected_keys[:3]}")
