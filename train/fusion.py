"""3D expression parameters beside ViTPain's image (paper 003), ``train.model.fusion``:

    intermediate   params -> standardise -> MLP -> f_3D;  PSPI heads on [CLS, f_3D]
    late_max       p = max(p_2D, p_3D) element-wise     p_2D: softmax of the 2D PSPI head
    late_mean      p = (p_2D + p_3D) / 2                 p_3D: softmax of a 3D classifier on
    late_weighted  p = (1 - w) p_2D + w p_3D, w learned        the standardised params

003's 3D classifier is an MLP of four BatchNorm + LeakyReLU layers (dropout 0.5 and 0.4 on the
first two). Its late fusion fuses two separately trained classifiers; here both train at once
but on their own cross-entropies (neither sees the other's gradient), and ``w`` learns from the
cross-entropy of the fused answer with both classifiers held fixed (003 picked w = 0.2 and 0.4
by hand). ``pspi_logits`` of a late-fusion model are log p: softmax gives p renormalised to
sum 1 (max and the learned weight can leave it off 1), argmax unchanged.

The parameters are the frames' own ``expression_params`` (``fusion_params: truth``) or what a
frozen ``pain3d train encoder`` checkpoint predicts from the image (``encoder``: the realistic
case, where a test face has no 3D ground truth). Standardised by the training split's mean and
std (buffers saved with the model).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from train.heads import N_PSPI, bn_mlp

CLASSIFIER_DROPOUT = (0.5, 0.4)  # 003's, on the first two layers
PARAMS = "expression_params"


class ParamsInput(nn.Module):
    """Raw parameters -> standardised (the training split's mean and std)."""

    def __init__(self, n: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    def set_stats(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(np.asarray(mean, np.float32)))
        self.std.copy_(torch.as_tensor(np.asarray(std, np.float32)))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if raw.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"this model fuses {self.mean.shape[0]} expression parameters per "
                             f"frame, got {raw.shape[-1]}; use data from the same face model")
        return (raw.float() - self.mean) / self.std


class IntermediateFusion(nn.Module):
    """The 3D feature that joins CLS."""

    def __init__(self, n_params: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_params, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class LateFusion(nn.Module):
    """003's 3D classifier and the combination of its probabilities with the 2D head's."""

    def __init__(self, n_params: int, hidden: int, how: str):
        super().__init__()
        self.how = how.removeprefix("late_")
        self.classifier = bn_mlp(n_params, hidden, N_PSPI, blocks=4, dropout=CLASSIFIER_DROPOUT)
        if self.how == "weighted":  # sigmoid(0): the 3D classifier starts at weight 0.5
            self.weight_logit = nn.Parameter(torch.zeros(()))

    @property
    def weight(self) -> torch.Tensor | None:
        return torch.sigmoid(self.weight_logit) if self.how == "weighted" else None

    def combine(self, p2: torch.Tensor, p3: torch.Tensor) -> torch.Tensor:
        if self.how == "max":
            return torch.maximum(p2, p3)
        if self.how == "mean":
            return (p2 + p3) / 2
        w = self.weight
        return (1 - w) * p2 + w * p3

    def forward(self, logits_2d: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        logits_3d = self.classifier(z)
        p2, p3 = logits_2d.float().softmax(-1), logits_3d.float().softmax(-1)
        fused = self.combine(p2, p3)
        out = {"pspi_logits_2d": logits_2d, "pspi_logits_3d": logits_3d, "pspi_fused": fused,
               "pspi_logits": fused.clamp_min(1e-12).log()}
        if self.how == "weighted":  # what trains w: the classifiers held fixed
            out["pspi_logits_weight"] = self.combine(p2.detach(), p3.detach()).clamp_min(
                1e-12).log()
            out["fusion_weight"] = self.weight.detach()
        return out


def encoder_params(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A frozen encoder's expression parameters (face-model units) for ViTPain's input
    ``x``, resized to the encoder's input size when they differ."""
    size = encoder.cfg.img_size
    if x.shape[-1] != size:
        x = nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear",
                                      align_corners=False)
    with torch.no_grad():
        return encoder.raw(encoder(x.float())).float()


def truth_params(batch: dict, device) -> torch.Tensor:
    if PARAMS not in batch:
        raise ValueError(f"this model fuses the frames' {PARAMS} (train.model.fusion_params: "
                         "truth) but the data has none; use fusion_params encoder with a "
                         "pain3d train encoder checkpoint for data without 3D ground truth")
    return batch[PARAMS].to(device).float()


def with_fusion(cfg, data: str, split: dict):
    """(a copy of ``cfg`` with fusion's parameter count and encoder filled in, what a new
    model's fusion starts from); ``cfg`` and None without fusion."""
    if cfg.train.model.fusion == "none":
        return cfg, None
    import copy

    cfg = copy.deepcopy(cfg)
    cfg.train.model, init = prepare(cfg.train.model, data, split["train"])
    return cfg, init


def prepare(model_cfg, data: str, train_ids: list[int]) -> tuple[object, dict]:
    """On the driver, before training: (``model_cfg`` with ``params_dim`` and, with an
    encoder, its spec filled in; what a new model starts with: the standardisation stats and
    the encoder's weights). Truth: stats from the training split's parameters; encoder: the
    encoder's own (those of the data it was trained on, and the scale of its answers)."""
    from dataclasses import replace

    if model_cfg.fusion_params == "encoder":
        return _with_encoder(model_cfg)
    from actors.learned_rig import standardisation

    raw = _train_params(data, train_ids)
    mean, std = standardisation(raw)  # as the rig and the encoder standardise
    return (replace(model_cfg, params_dim=int(raw.shape[1]), fusion_encoder_spec={}),
            {"mean": mean.tolist(), "std": std.tolist(), "encoder": None})


def _train_params(data: str, ids: list[int]) -> np.ndarray:
    from train.data import identity_frames

    fix = ("train.model.fusion_params truth needs a pain3d dataset's 3D ground truth; use "
           "fusion_params encoder with a pain3d train encoder checkpoint for other data")
    try:
        t = identity_frames(data, ids, [PARAMS])
    except ValueError:
        raise ValueError(f"{data} has no {PARAMS} column: {fix}") from None
    raw = [np.asarray(v or [], np.float64) for v in t.column(PARAMS).to_pylist()]
    if not raw or not len(raw[0]) or len({len(v) for v in raw}) > 1:
        raise ValueError(f"{data} has no {PARAMS} of one length for its training frames "
                         f"(an imported real dataset has none): {fix}")
    return np.stack(raw)


def _with_encoder(model_cfg) -> tuple[object, dict]:
    from dataclasses import replace

    from train.encoder import encoder_spec, from_spec
    from train.run_folder import fetch_checkpoint

    if not model_cfg.fusion_encoder:
        raise ValueError("train.model.fusion_params is encoder but train.model.fusion_encoder "
                         "is not set; set it to a pain3d train encoder checkpoint")
    folder, spec = encoder_spec(fetch_checkpoint(model_cfg.fusion_encoder,
                                                 files=("encoder.pt", "encoder.json")))
    if spec.get("model", {}).get("face_crop") != model_cfg.face_crop:
        raise ValueError(f"the encoder {model_cfg.fusion_encoder} was trained with face_crop "
                         f"{spec.get('model', {}).get('face_crop')} but train.model.face_crop "
                         f"is {model_cfg.face_crop}; train both on the same input")
    state = torch.load(Path(folder) / "encoder.pt", map_location="cpu", weights_only=True)
    try:  # here, in one sentence, not on every training worker
        from_spec(spec).load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"the encoder checkpoint {model_cfg.fusion_encoder} does not match "
                         f"its encoder.json ({str(e).splitlines()[0]}); re-train it") from None
    n = int(spec["n_expression"])
    return (replace(model_cfg, params_dim=n, fusion_encoder_spec=spec),
            {"mean": state["expression_mean"].tolist(), "std": state["expression_std"].tolist(),
             "encoder": state})
