"""ViTPain: a timm ViT backbone, learnable AU queries cross-attending to the patch tokens, and
PSPI heads on the CLS token (paper 000, section 4; the heads are in ``train/heads.py``).

A convolutional timm backbone (the laptop preset's: it learns from scratch on a CPU) works the
same way: its last feature map's cells, layer-normalised, are the tokens the AU queries attend
over, and their mean stands in for the CLS token.

The authors' later options, each off by default: a neutral reference (a neutral frame of the
same face, encoded by a second or the shared backbone; the pain tokens cross-attend to its
tokens before the heads), PSPI regression and binary heads beside or instead of the 17
classes, and LoRA adapters on a frozen backbone (peft).

With ``au_queries=False`` (the paper's baseline) the AUs come from the CLS token instead.

Paper 003's fusion of 3D expression parameters (``train.model.fusion``, ``train/fusion.py``):
a 3D feature concatenated to CLS before the PSPI heads, or a 3D classifier whose probabilities
are combined with the PSPI head's. ``params_of`` gives a batch's parameters: the frames' own,
or a frozen encoder's predictions (the encoder is part of the model and its checkpoint).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from train.config import LoRAConfig, ModelConfig  # noqa: F401 - defined torch-free
from train.heads import (BINARY_THRESHOLDS, HEADS, N_AUS, N_PSPI, AUQueryHead,  # noqa: F401
                         CLSAUHead, LocalTokens, NeutralFusion, PSPIHead)
from train.seeds import part_seed

log = logging.getLogger(__name__)
BACKBONES = ("backbone.", "neutral_backbone.")  # parameter name prefixes of the encoders


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

    names = {n.rsplit(".", 1)[-1] for n, m in backbone.named_modules()
             if isinstance(m, (nn.Linear, nn.Conv2d))}
    if not set(lc.targets) & names:  # peft's own error says less
        raise ValueError(f"train.model.lora.targets {list(lc.targets)} name no layer of this "
                         f"backbone; its linear and convolution layers are called "
                         f"{', '.join(sorted(names)[:12])}: set the targets to some of them "
                         "(timm ViTs: [qkv, proj]; ResNets: [conv1, conv2])")
    backbone = inject_adapter_in_model(LoraConfig(
        r=lc.rank, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
        target_modules=list(lc.targets)), backbone)
    for name, p in backbone.named_parameters():
        p.requires_grad_("lora_" in name)
    return backbone


def make_encoder(cfg: ModelConfig, warn: bool = True) -> nn.Module:
    """One backbone as configured: timm's, with LoRA adapters on a reproducible base."""
    if not cfg.lora.rank:
        return create_backbone(cfg, warn=warn)
    # the base must come back identical for a checkpoint of adapters and heads
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.lora.base_seed)
        return add_lora(create_backbone(cfg, warn=False), cfg.lora)


def check_model(cfg: ModelConfig) -> None:
    """Builds the model without weights (meta device): a bad head, LoRA target or feature
    width fails here, on the driver, in one sentence, not on every training worker."""
    from dataclasses import replace

    # fusion's 3D input (its width, an encoder) is filled in later, from the data or encoder
    cfg = replace(cfg, pretrained_file=None, params_dim=cfg.params_dim or 1,
                  fusion_params="truth")
    with torch.device("meta"):
        ViTPain(cfg, weights_follow=True)


def _stride8_index(backbone: nn.Module) -> int:
    """The index (timm's ``forward_intermediates``) of the backbone's stride-8 feature map."""
    info = getattr(backbone, "feature_info", None) or []
    for i, f in enumerate(info):
        if f.get("reduction") == 8:
            return i
    raise ValueError("train.model.local_tokens needs a backbone with a stride-8 feature map "
                     "(timm feature_info); this one has none: turn local_tokens off or use a "
                     "ResNet backbone")


def is_backbone(name: str) -> bool:
    return name.startswith(BACKBONES)


class ViTPain(nn.Module):
    def __init__(self, cfg: ModelConfig, weights_follow: bool = False, seed: int | None = None):
        """``weights_follow``: a checkpoint's weights are loaded next (no init warning).
        ``seed``: each part's initial weights drawn from (seed, the part's name), so a part
        starts the same whichever other parts the model has; None: from torch's global
        generator, part after part."""
        super().__init__()
        if cfg.head not in HEADS:
            raise ValueError(f"unknown train.model.head {cfg.head!r}; use one of {HEADS}")
        self.cfg = cfg

        def part(name: str, make):
            with part_seed(seed, name):
                setattr(self, name, make())

        part("backbone", lambda: make_encoder(cfg, warn=not weights_follow))
        dim = self.backbone.num_features
        self.prefix = getattr(self.backbone, "num_prefix_tokens", 1)
        # a conv net's feature map has no norm of its own (a ViT's tokens end in one)
        self.spatial = not hasattr(self.backbone, "num_prefix_tokens")
        self.token_norm = nn.LayerNorm(dim) if self.spatial else None
        if cfg.neutral_reference:
            part("fusion", lambda: NeutralFusion(dim))
            if not cfg.shared_encoder:
                part("neutral_backbone", lambda: make_encoder(cfg, warn=False))
        if cfg.local_tokens:
            self.local_index = _stride8_index(self.backbone)
            part("local", lambda: LocalTokens(
                self.backbone.feature_info[self.local_index]["num_chs"], dim))
        part("au_head", lambda: AUQueryHead(dim, hidden=cfg.head_hidden // 2,
                                            per_au=cfg.per_au_heads) if cfg.au_queries
             else CLSAUHead(dim, hidden=cfg.head_hidden // 2))
        if cfg.fusion != "none":
            with part_seed(seed, "fusion_3d"):
                self._add_fusion(cfg)
        head_dim = dim + (cfg.fusion_hidden if cfg.fusion == "intermediate" else 0)
        if cfg.classifies:
            part("pspi_head", lambda: PSPIHead(head_dim, cfg.head_hidden, cfg.dropout))
        if cfg.regresses:
            part("reg_head", lambda: PSPIHead(head_dim, cfg.head_hidden, cfg.dropout, n_out=1))
            part("binary_head", lambda: PSPIHead(head_dim, cfg.head_hidden, cfg.dropout,
                                                 n_out=len(BINARY_THRESHOLDS)))

    def _add_fusion(self, cfg: ModelConfig) -> None:
        from train import fusion

        if cfg.params_dim < 1:
            raise ValueError("train.model.fusion needs train.model.params_dim, the expression "
                             "parameters per frame (pain3d train sets it from the dataset)")
        self.params_in = fusion.ParamsInput(cfg.params_dim)
        if cfg.fusion == "intermediate":
            self.params_feature = fusion.IntermediateFusion(cfg.params_dim, cfg.fusion_hidden)
        else:
            self.late = fusion.LateFusion(cfg.params_dim, cfg.fusion_hidden, cfg.fusion)
        if cfg.fusion_params == "encoder":
            from train.encoder import from_spec

            if not cfg.fusion_encoder_spec:
                raise ValueError("train.model.fusion_params is encoder but the model has no "
                                 "encoder spec; set train.model.fusion_encoder to a pain3d "
                                 "train encoder checkpoint")
            self.param_encoder = from_spec(cfg.fusion_encoder_spec).requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if hasattr(self, "param_encoder"):  # frozen: its batch norms keep their statistics
            self.param_encoder.eval()
        return self

    def params_of(self, x: torch.Tensor, batch: dict) -> torch.Tensor | None:
        """The 3D parameters fused with input ``x`` (un-augmented): None without fusion."""
        if self.cfg.fusion == "none":
            return None
        from train import fusion

        if hasattr(self, "param_encoder"):
            return fusion.encoder_params(self.param_encoder, x)
        return fusion.truth_params(batch, x.device)

    @property
    def feature_dim(self) -> int:
        return self.backbone.num_features

    def _sequence(self, encoder: nn.Module, x: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All tokens (B, T, D): a ViT's prefix tokens then patches; a conv net's cells. And
        with ``local_tokens``, the stride-8 tokens (B, 64 cells at 64 px, D), else None."""
        if self.cfg.local_tokens and encoder is self.backbone:
            feats, (local,) = encoder.forward_intermediates(x, indices=[self.local_index],
                                                            norm=False)
            local = self.local(local, feats)
        else:
            feats, local = encoder.forward_features(x), None
        if self.spatial:  # (B, D, H, W) -> H*W tokens
            return self.token_norm(feats.flatten(2).transpose(1, 2)), local
        return feats, local  # (B, prefix + N, D), normed

    def _split(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spatial:  # the cells' mean is the CLS
            return seq.mean(1), seq
        return seq[:, 0], seq[:, self.prefix:]

    def tokens(self, x: torch.Tensor, neutral: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(CLS (B, D), patch tokens (B, N, D)), after the neutral cross-attention if any;
        with ``local_tokens`` the patch tokens are the stride-8 ones."""
        seq, local = self._sequence(self.backbone, x)
        if self.cfg.neutral_reference:
            if neutral is None:
                raise ValueError("this model takes a neutral reference frame beside each "
                                 "input (train.model.neutral_reference); pass neutral=")
            encoder = self.backbone if self.cfg.shared_encoder else self.neutral_backbone
            seq = self.fusion(seq, self._sequence(encoder, neutral)[0])
        cls, patches = self._split(seq)
        return cls, patches if local is None else local

    def forward(self, x: torch.Tensor, neutral: torch.Tensor | None = None,
                params: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``pspi_logits`` (17 classes), ``pspi_reg`` (PSPI / 16 in [0, 1]) and
        ``binary_logits`` (PSPI >= 1, 2, 3) as the head has them; ``au``, ``cls``. A fusion
        model takes ``params`` (raw expression parameters, :meth:`params_of`); late fusion
        adds both classifiers' logits and the fused probabilities (``train/fusion.py``)."""
        cls, patches = self.tokens(x, neutral)
        if self.cfg.au_queries:
            au, attn = self.au_head(patches)
        else:
            au, attn = self.au_head(cls), None
        out = {"au": au, "cls": cls, "tokens": patches}
        feat, z = cls, None
        if self.cfg.fusion != "none":
            if params is None:
                raise ValueError("this model fuses 3D expression parameters "
                                 "(train.model.fusion); pass params=model.params_of(x, batch)")
            z = self.params_in(params)
            if self.cfg.fusion == "intermediate":
                feat = torch.cat([cls, self.params_feature(z).to(cls.dtype)], 1)
        if self.cfg.classifies:
            logits = self.pspi_head(feat)
            out.update(self.late(logits, z) if self.cfg.late_fusion else {"pspi_logits": logits})
        if self.cfg.regresses:
            out["pspi_reg"] = torch.sigmoid(self.reg_head(feat)).squeeze(-1)
            out["binary_logits"] = self.binary_head(feat)
        if attn is not None:
            out["au_attention"] = attn
        return out

    def head_parameters(self):
        return [p for n, p in self.named_parameters() if not is_backbone(n)]

    def backbone_parameters(self):
        """What trains in the encoders: all of them, or only the LoRA adapters."""
        return [p for n, p in self.named_parameters()
                if is_backbone(n) and (not self.cfg.lora.rank or "lora_" in n)]

    def set_backbone_trainable(self, trainable: bool) -> None:
        for p in self.backbone_parameters():
            p.requires_grad_(trainable)

    def encoders(self) -> list[nn.Module]:
        return [self.backbone] + ([self.neutral_backbone] if hasattr(self, "neutral_backbone")
                                  else [])

    def saved_state(self) -> dict:
        """The weights a checkpoint keeps: all, or (LoRA) the adapters and the heads."""
        state = self.state_dict()
        if not self.cfg.lora.rank:
            return state
        return {k: v for k, v in state.items() if not is_backbone(k) or "lora_" in k}

    def load_saved_state(self, state: dict) -> None:
        """Loads :meth:`saved_state` (a LoRA checkpoint fills in everything but the base)."""
        if not self.cfg.lora.rank:
            self.load_state_dict(state)
            return
        res = self.load_state_dict(state, strict=False)
        missing = [k for k in res.missing_keys if not is_backbone(k) or "lora_" in k]
        if missing or res.unexpected_keys:
            raise RuntimeError(f"missing {missing[:3]}, unexpected {res.unexpected_keys[:3]}")
