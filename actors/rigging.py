"""Rigging stage: neutral mesh from shape parameters, then one rigged mesh per expression.

Backends: ``builtin`` (the procedural head's AU rig), ``flame`` (FLAME with a linear AU
basis), ``learned`` (paper 001's CGAN / CAAE, trained by ``pain3d train rig``) and ``nfr``
(Neural Face Rigging through the model bridge, actors/nfr.py).
"""
from __future__ import annotations

import logging

import numpy as np

from actors.base import StageConfig, register
from faces.models import make_face_model
from faces.rig import RIG_AUS

log = logging.getLogger(__name__)


def aus_from_row(aus: np.ndarray) -> list[dict[str, float]]:
    """(n_expr, len(RIG_AUS)) array -> list of AU dicts (zeros dropped)."""
    return [{k: float(v) for k, v in zip(RIG_AUS, row) if v != 0} for row in aus]


class _FaceModelRig:
    def __init__(self, cfg: StageConfig, context: dict, device: str):
        self.model = make_face_model(context["face"])

    def __call__(self, batch: dict) -> dict:
        verts, params = [], []
        for shape, aus in zip(batch["shape"], batch["aus"]):
            confs = aus_from_row(aus)
            verts.append(np.stack([self.model.posed(shape, c) for c in confs]))
            params.append(np.stack([self.model.expression_params(c) for c in confs]))
        batch["vertices"] = np.stack(verts).astype(np.float32)
        batch["expression_params"] = np.stack(params).astype(np.float32)
        return batch


@register("rigging", "builtin")
class BuiltinRig(_FaceModelRig):
    """The built-in head's AU rig (needs face.model: builtin)."""

    def __init__(self, cfg, context, device):
        if context["face"].model != "builtin":
            raise ValueError("rigging.backend 'builtin' needs face.model: builtin; use "
                             "rigging.backend: flame (or nfr) for FLAME meshes")
        super().__init__(cfg, context, device)


@register("rigging", "flame")
class FlameRig(_FaceModelRig):
    """FLAME with the AU basis file named by face.au_basis_path."""

    def __init__(self, cfg, context, device):
        if context["face"].model != "flame":
            raise ValueError("rigging.backend 'flame' needs face.model: flame and "
                             "face.flame_path / face.au_basis_path")
        super().__init__(cfg, context, device)


@register("rigging", "learned")
class LearnedRigBackend:
    """Paper 001's learned rig: a checkpoint of ``pain3d train rig`` (``rigging.model``, its
    ``model/`` folder or the checkpoint folder) generates each expression's parameters from
    the six PSPI AUs; the face model (the one the rig learned, ``face.model``) makes the
    mesh. CGAN draws z from the identity's seed; CAAE starts from the face at rest, as 001
    does. The neutral expression stays the exact neutral, so heatmaps measure the rig's
    motion; rows keep the requested AUs as labels and the generated parameters as
    ``expression_params``. Requested non-PSPI AUs (pspi.extra_aus) are not rig inputs."""

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        from actors.learned_rig import LearnedRig

        if not cfg.model:
            raise ValueError("rigging.backend 'learned' needs rigging.model: the checkpoint "
                             "folder of pain3d train rig (its best_checkpoint.txt names it)")
        self.rig = LearnedRig.load(cfg.model, device)
        self.model = make_face_model(context["face"])
        rest = self.model.expression_params({})
        if self.rig.spec.face_model != self.model.name or len(rest) != self.rig.spec.n_params:
            raise ValueError(f"rigging.model {cfg.model} learned {self.rig.spec.n_params} "
                             f"parameters of the {self.rig.spec.face_model} face model; this "
                             f"config's face.model {self.model.name} has {len(rest)}: train the "
                             "rig on a dataset of this face model")
        self.rest = rest
        self.cols = [RIG_AUS.index(a) for a in self.rig.spec.aus]

    def __call__(self, batch: dict) -> dict:
        verts, params = [], []
        for shape, aus, seed, ident in zip(batch["shape"], batch["aus"], batch["seed"],
                                           batch["identity"]):
            y = np.asarray(aus, np.float32)[:, self.cols]
            p = self.rig.generate(y, source=np.tile(self.rest, (len(y), 1)),
                                  seed=[int(seed), int(ident), 1])
            p[~y.any(1)] = self.rest  # the neutral is the face at rest, exactly
            verts.append(np.stack([self.model.posed_params(shape, q) for q in p]))
            params.append(p)
        batch["vertices"] = np.stack(verts).astype(np.float32)
        batch["expression_params"] = np.stack(params).astype(np.float32)
        return batch
