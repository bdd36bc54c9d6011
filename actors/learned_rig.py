"""A learned AU rig (paper 001): networks that generate expression parameters for a target
AU vector, and the loader the rigging stage uses (``rigging.backend: learned``).

    CGAN   x = G(z, y)                 z ~ N(0, I), a fresh face of the AUs at every draw
    CAAE   x = G(E(x_source), y)       E(x_source) in [-1, 1]^k: what the source expression
                                       adds beyond its AUs, carried into the target

Every network has three fully connected layers (001, Fig. 4). Parameters are standardised
per dimension (the training set's mean and std); AU levels are scaled to [-1, 1] (0-5, AU43
0-1). The output layer is linear: 001's tanh would hold outputs inside [-1, 1] by
construction and leave its L1 range regulariser nothing to do, so the regulariser does the
work here and :meth:`LearnedRig.generate` clips to the observed bounds, which makes the
rig's contract (never outside what the face model was seen to do) exact.

Training is in ``train/rig.py``; this module has no Ray and no training code.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faces.au import PSPI_AUS

AU_MAX = {"AU43": 1.0}  # levels 0-5 unless listed (AU43 is binary)
STD_FLOOR = 1e-6  # a constant parameter (never used by the rig) standardises to 0


def standardisation(a) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per column of ``a`` (rows: frames or pairs), the std floored at
    STD_FLOOR: how the rig, the encoder and fusion standardise parameters."""
    a = np.asarray(a, np.float64)
    return a.mean(0), np.maximum(a.std(0), STD_FLOOR)


@dataclass
class RigSpec:
    """What a checkpoint needs besides its weights (``rig.json``)."""

    model: str  # cgan | caae
    n_params: int
    hidden: int
    noise_dim: int
    latent_dim: int
    mean: list[float]  # per parameter, of the training pairs
    std: list[float]
    lower: list[float]  # observed bounds of the training pairs
    upper: list[float]
    face_model: str  # the face model the parameters belong to (builtin | flame)
    aus: tuple[str, ...] = PSPI_AUS

    @classmethod
    def from_pairs(cls, params: np.ndarray, face_model: str, rc) -> "RigSpec":
        p = np.asarray(params, np.float64)
        mean, std = standardisation(p)
        return cls(rc.model, p.shape[1], rc.hidden, rc.noise_dim, rc.latent_dim,
                   mean.tolist(), std.tolist(), p.min(0).tolist(), p.max(0).tolist(),
                   face_model)

    def scale(self) -> np.ndarray:
        return np.array([AU_MAX.get(a, 5.0) for a in self.aus], np.float32)


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """Three fully connected layers, ReLU between them, a linear output."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, n_out))


class CGANRig(nn.Module):
    def __init__(self, spec: RigSpec):
        super().__init__()
        n_aus = len(spec.aus)
        self.spec = spec
        self.generator = mlp(spec.noise_dim + n_aus, spec.hidden, spec.n_params)
        self.discriminator = mlp(spec.n_params + n_aus, spec.hidden, 1)

    def code(self, n: int, gen: torch.Generator | None = None, source=None) -> torch.Tensor:
        return torch.randn(n, self.spec.noise_dim, generator=gen)

    def generate(self, y: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat([code, y], 1))

    def generator_parameters(self):
        return list(self.generator.parameters())

    def discriminator_parameters(self):
        return list(self.discriminator.parameters())


class CAAERig(nn.Module):
    def __init__(self, spec: RigSpec):
        super().__init__()
        n_aus = len(spec.aus)
        self.spec = spec
        self.encoder = nn.Sequential(mlp(spec.n_params, spec.hidden, spec.latent_dim), nn.Tanh())
        self.generator = mlp(spec.latent_dim + n_aus, spec.hidden, spec.n_params)
        self.discriminator = mlp(spec.n_params + n_aus, spec.hidden, 1)
        self.prior_discriminator = mlp(spec.latent_dim, spec.hidden, 1)

    def code(self, n: int, gen: torch.Generator | None = None, source=None) -> torch.Tensor:
        if source is None:
            raise ValueError("the CAAE rig generates from a source expression; pass source=")
        return self.encoder(source)

    def generate(self, y: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat([code, y], 1))

    def generator_parameters(self):
        return list(self.encoder.parameters()) + list(self.generator.parameters())

    def discriminator_parameters(self):
        return list(self.discriminator.parameters()) + list(self.prior_discriminator.parameters())


NETS = {"cgan": CGANRig, "caae": CAAERig}


def make_rig_net(spec: RigSpec) -> nn.Module:
    if spec.model not in NETS:
        raise ValueError(f"unknown train.rig.model {spec.model!r}; use one of {', '.join(NETS)}")
    return NETS[spec.model](spec)


class LearnedRig:
    """A trained rig: raw AU levels (and a source expression or a seed) in, raw expression
    parameters out, clipped to the bounds the training pairs showed."""

    def __init__(self, net: nn.Module, spec: RigSpec, device: str = "cpu"):
        self.net, self.spec, self.device = net.to(device).eval(), spec, device
        f = np.float32
        self.mean, self.std = np.array(spec.mean, f), np.array(spec.std, f)
        self.lower, self.upper = np.array(spec.lower, f), np.array(spec.upper, f)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "LearnedRig":
        folder = Path(folder)
        folder = folder / "model" if (folder / "model" / "rig.json").is_file() else folder
        if not (folder / "rig.json").is_file() or not (folder / "rig.pt").is_file():
            raise FileNotFoundError(f"{folder} is not a learned-rig checkpoint (rig.json and "
                                    "rig.pt expected); train one with pain3d train rig --data D "
                                    "and give its checkpoint's model/ folder")
        try:
            d = json.loads((folder / "rig.json").read_text())
            spec = RigSpec(**{**d, "aus": tuple(d["aus"])})
        except (json.JSONDecodeError, TypeError, KeyError) as e:
            raise ValueError(f"{folder / 'rig.json'} is not a learned-rig spec ({e}); "
                             "re-train with pain3d train rig") from e
        net = make_rig_net(spec)
        net.load_state_dict(torch.load(folder / "rig.pt", map_location="cpu", weights_only=True))
        return cls(net, spec, device)

    def labels(self, aus: np.ndarray) -> torch.Tensor:
        """AU levels (N, n_aus) -> the networks' [-1, 1] scale."""
        y = 2 * np.asarray(aus, np.float32) / self.spec.scale() - 1
        return torch.as_tensor(y, device=self.device)

    def standardise(self, params: np.ndarray) -> torch.Tensor:
        x = (np.asarray(params, np.float32) - self.mean) / self.std
        return torch.as_tensor(x, device=self.device)

    @torch.no_grad()
    def generate(self, aus: np.ndarray, source: np.ndarray | None = None, seed=None,
                 clip: bool = True) -> np.ndarray:
        """(N, n_aus) AU levels -> (N, n_params) parameters. CGAN draws z from ``seed`` (an
        int or a sequence, as numpy's); CAAE encodes ``source`` (N, n_params) raw."""
        aus = np.atleast_2d(np.asarray(aus, np.float32))
        gen = torch.Generator().manual_seed(int(np.random.default_rng(seed).integers(2 ** 62)))
        src = None if source is None else self.standardise(np.atleast_2d(source))
        code = self.net.code(len(aus), gen, src).to(self.device)
        x = self.net.generate(self.labels(aus), code).cpu().numpy() * self.std + self.mean
        return np.clip(x, self.lower, self.upper) if clip else x


def save_rig(net: nn.Module, spec: RigSpec, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "rig.pt")
    (folder / "rig.json").write_text(json.dumps(asdict(spec)))
