"""An image -> 3D expression encoder (paper 002, FIELDS, on our exact ground truth).

    image -> timm backbone (pooled) -> linear -> expression parameters (standardised)
                                    -> linear -> shape parameters (standardised), optional
    (expression, shape) -> intensity head: 4 x [Linear, BatchNorm, LeakyReLU] .. Linear
                        -> 17 PSPI logits, PSPI / 16 and each AU / its maximum (sigmoids)

002 supervises FLAME expression codes directly (MSE to scan fits) and trains an emotion head
on the predicted codes with an "intensity-aware" loss: cross-entropy over classes plus squared
errors of continuous intensities. Here the classes are PSPI 0-16 and the intensities PSPI and
the six AUs; the head's gradients reach the encoder, so pain shapes the parameters as emotion
does in 002. Parameters are standardised by the training split's mean and std (buffers, so a
checkpoint converts back to the face model's units by itself). No flips in training: a
mirrored face has other expression parameters unless the face model is symmetric.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from train.config import ModelConfig
from train.heads import N_AUS, N_PSPI, PSPI_MAX, bn_mlp
from train.model import make_encoder

AU_SCALE = (5.0, 5.0, 5.0, 5.0, 5.0, 1.0)  # AU4 AU6 AU7 AU9 AU10 AU43 maxima


class IntensityHead(nn.Module):
    """002's 4-layer MLP (BatchNorm, LeakyReLU) on the predicted parameters."""

    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.net = bn_mlp(n_in, hidden, N_PSPI + 1 + N_AUS, blocks=3)
        self.register_buffer("au_scale", torch.tensor(AU_SCALE))

    def forward(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.net(p)
        return {"pspi_logits": z[:, :N_PSPI], "pspi_reg": torch.sigmoid(z[:, N_PSPI]),
                "au": torch.sigmoid(z[:, N_PSPI + 1:]) * self.au_scale}


class ExpressionEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig, n_expression: int, n_shape: int, hidden: int,
                 weights_follow: bool = False):
        super().__init__()
        self.cfg, self.hidden = cfg, hidden
        self.backbone = make_encoder(cfg, warn=not weights_follow)
        dim = self.backbone.num_features
        self.expression = nn.Linear(dim, n_expression)
        self.shape = nn.Linear(dim, n_shape) if n_shape else None
        self.intensity = IntensityHead(n_expression + n_shape, hidden)
        for name, n in (("expression", n_expression), ("shape", n_shape)):
            self.register_buffer(f"{name}_mean", torch.zeros(n))
            self.register_buffer(f"{name}_std", torch.ones(n))

    @property
    def n_shape(self) -> int:
        return 0 if self.shape is None else self.shape.out_features

    def set_stats(self, stats: dict[str, np.ndarray]) -> None:
        """Standardisation of the targets: ``{expression,shape}_{mean,std}`` arrays."""
        for k, v in stats.items():
            getattr(self, k).copy_(torch.as_tensor(np.asarray(v, np.float32)))

    def standardise(self, name: str, raw: torch.Tensor) -> torch.Tensor:
        return (raw - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``expression`` and ``shape`` standardised, the intensity head's outputs."""
        f = self.backbone(x)  # timm with num_classes=0: pooled features
        e = self.expression(f)
        s = self.shape(f) if self.shape is not None else e[:, :0]
        return {"expression": e, "shape": s, **self.intensity(torch.cat([e, s], 1))}

    def raw(self, out: dict, name: str = "expression") -> torch.Tensor:
        """Standardised predictions back in the face model's units."""
        return out[name] * getattr(self, f"{name}_std") + getattr(self, f"{name}_mean")

    def head_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.")]


def encoder_loss(model: ExpressionEncoder, out: dict, b: dict, ec) -> tuple[torch.Tensor, dict]:
    """002's L_3D-GT on standardised parameters plus its intensity-aware head loss."""
    parts = {"loss_expression": F.mse_loss(out["expression"], model.standardise(
        "expression", b["expression_params"].float()))}
    if model.shape is not None:
        parts["loss_shape"] = F.mse_loss(out["shape"], model.standardise(
            "shape", b["shape_params"].float()))
    parts["loss_pspi_ce"] = F.cross_entropy(out["pspi_logits"], b["pspi"])
    scale = model.intensity.au_scale
    parts["loss_intensity"] = (F.mse_loss(out["pspi_reg"], b["pspi"].float() / PSPI_MAX)
                               + F.mse_loss(out["au"] / scale, b["aus"].float() / scale))
    w = {"loss_expression": ec.expression, "loss_shape": ec.shape_weight,
         "loss_pspi_ce": ec.pspi_ce, "loss_intensity": ec.intensity_mse}
    loss = sum(w[k] * v for k, v in parts.items())
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def save_encoder(model: ExpressionEncoder, folder: Path, face_model: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "encoder.pt")
    (folder / "encoder.json").write_text(json.dumps({
        "model": asdict(model.cfg), "n_expression": model.expression.out_features,
        "n_shape": model.n_shape, "hidden": model.hidden, "face_model": face_model}))


def encoder_spec(folder: str | Path) -> tuple[Path, dict]:
    """(the folder holding encoder.pt, its encoder.json) of an encoder checkpoint."""
    folder = Path(folder)
    folder = folder / "model" if (folder / "model" / "encoder.json").is_file() else folder
    if not (folder / "encoder.json").is_file() or not (folder / "encoder.pt").is_file():
        raise FileNotFoundError(f"{folder} is not an encoder checkpoint (encoder.pt and "
                                "encoder.json expected); train one with pain3d train encoder")
    try:
        return folder, json.loads((folder / "encoder.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{folder / 'encoder.json'} is not an encoder spec ({e}); re-train "
                         "with pain3d train encoder") from e


def from_spec(spec: dict) -> ExpressionEncoder:
    """An encoder shaped as ``spec`` (encoder.json) says, its weights still to be loaded."""
    try:
        cfg = ModelConfig.from_dict(spec["model"])
        cfg.pretrained_file = None  # the checkpoint holds the weights
        return ExpressionEncoder(cfg, spec["n_expression"], spec["n_shape"], spec["hidden"],
                                 weights_follow=True)
    except (TypeError, KeyError) as e:
        raise ValueError(f"not an encoder spec ({e}); re-train with pain3d train encoder") from e


def load_encoder(folder: str | Path, map_location="cpu") -> tuple[ExpressionEncoder, str]:
    """(the encoder, the face model its parameters belong to)."""
    folder, spec = encoder_spec(folder)
    model = from_spec(spec)
    model.load_state_dict(torch.load(folder / "encoder.pt", map_location=map_location,
                                     weights_only=True))
    return model.eval(), spec["face_model"]
