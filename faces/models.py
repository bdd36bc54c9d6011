"""Face models behind one interface: the built-in procedural head and FLAME.

A face model turns identity parameters into a neutral mesh and an AU configuration into a
rigged mesh, and reports the 3-D ground truth (shape and expression parameters) that the
dataset stores. Pick one by name with :func:`make_face_model`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
import os
from dataclasses import dataclass

import numpy as np

from faces.demographics import Demographics
from faces.geometry import Mesh


# The user's FLAME files, as FaceConfig keys (checked, made absolute, never deleted)
FLAME_FILES = ("flame_path", "flame_landmarks_path", "au_basis_path", "flame_uv_path")


@dataclass
class FaceConfig:
    model: str = "builtin"  # builtin | flame
    flame_path: str | None = None  # generic_model.pkl (FLAME 2020) or flame2023.pkl
    flame_n_shape: int | None = None  # identity components in shapedirs (None: FLAME's 300)
    flame_landmarks_path: str | None = None  # mediapipe_landmark_embedding.npz (derives the rig)
    au_basis_path: str | None = None  # overrides the derived rig (faces/flame.py's format)
    flame_uv_path: str | None = None  # FLAME_texture.npz: vt, ft (UVs); mean, tex_dir (albedo)
    texture_size: int = 1024
    shape_std: float = 0.8


@dataclass
class Appearance:
    texture: np.ndarray | None = None  # UV atlas (models with UVs)
    vertex_colors: np.ndarray | None = None  # per-vertex albedo (models without UVs)


class FaceModel(ABC):
    name: str
    camera_target: tuple[float, float, float]

    @property
    @abstractmethod
    def template(self) -> Mesh: ...

    @property
    @abstractmethod
    def n_shape(self) -> int: ...

    @abstractmethod
    def sample_shape(self, demo: Demographics, rng: np.random.Generator) -> np.ndarray: ...

    @abstractmethod
    def neutral(self, shape: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def expression_params(self, aus: dict[str, float]) -> np.ndarray: ...

    @abstractmethod
    def posed(self, shape: np.ndarray, aus: dict[str, float]) -> np.ndarray: ...

    @abstractmethod
    def posed_params(self, shape: np.ndarray, params: np.ndarray) -> np.ndarray:
        """The mesh of expression parameters as :meth:`expression_params` gives them (a
        learned rig's output goes through here)."""

    @abstractmethod
    def appearance(self, demo: Demographics, rng: np.random.Generator,
                   dressing=None) -> Appearance:
        """The identity's albedo; a faces.dressing.Dressing colours brows and scalp."""

    def mesh(self, vertices: np.ndarray) -> Mesh:
        return self.template.with_vertices(vertices)

    def materials(self) -> np.ndarray | None:
        """Per-vertex render materials (faces.render.MATERIALS); None: all skin."""
        return None

    def head_vertices(self) -> np.ndarray:
        """Indices of the vertices that outline the head (for the face box)."""
        return np.arange(self.template.n_vertices)


class BuiltinFaceModel(FaceModel):
    """The procedural head (faces.builtin_head) with its shape space and AU rig."""

    name = "builtin"
    camera_target = (0.0, -0.03, 0.03)

    def __init__(self, cfg: FaceConfig | None = None):
        from faces import builtin_head, shape_space

        self.cfg = cfg or FaceConfig()
        self._t = builtin_head.build_template()
        self._basis = shape_space.shape_basis()

    @property
    def template(self) -> Mesh:
        return self._t.mesh

    @property
    def n_shape(self) -> int:
        return self._basis.shape[0]

    def materials(self):
        from faces.render import MATERIALS

        if getattr(self, "_materials", None) is None:  # one array: the renderer reuses its data
            m = np.zeros(self.template.n_vertices, np.float32)
            for part in ("eyeball_r", "eyeball_l"):
                m[self._t.part_slices[part]] = MATERIALS["eye"]
            self._materials = m
        return self._materials

    def head_vertices(self):
        sl = self._t.part_slices
        return np.r_[np.arange(self._t.skin_count), np.arange(sl["ear_r"].start, sl["ear_l"].stop)]

    def sample_shape(self, demo, rng):
        from faces.shape_space import sample_shape

        return sample_shape(demo, rng, self.cfg.shape_std)

    def neutral(self, shape):
        beta = np.asarray(shape, np.float32)
        if beta.shape != (self.n_shape,):
            raise ValueError(f"the built-in model takes {self.n_shape} shape parameters, "
                             f"got {beta.shape}")
        return self._t.mesh.vertices + np.tensordot(beta, self._basis, axes=1)

    def expression_params(self, aus):
        from faces.rig import RIG_AUS, normalize_aus

        a = normalize_aus(aus)
        return np.array([a[k] for k in RIG_AUS], np.float32)

    def posed(self, shape, aus):
        from faces.rig import apply_aus

        return apply_aus(self.neutral(shape), aus)

    def posed_params(self, shape, params):
        from faces.rig import RIG_AUS, apply_aus

        p = np.clip(np.asarray(params, np.float64), 0.0, 5.0)  # the built-in's are AU levels
        if p.shape != (len(RIG_AUS),):
            raise ValueError(f"the built-in model's expression parameters are the {len(RIG_AUS)} "
                             f"levels of {', '.join(RIG_AUS)}; got shape {p.shape}")
        return apply_aus(self.neutral(shape), dict(zip(RIG_AUS, p.tolist())))

    def appearance(self, demo, rng, dressing=None):
        from faces.texture import make_texture

        return Appearance(texture=make_texture(demo, rng, self.cfg.texture_size, dressing))


class FlameFaceModel(FaceModel):
    """FLAME from the user's files, rigged by an AU basis in its expression space (derived
    from the FLAME file and its landmark embedding by faces/flame_rig.py, or given).

    No demographic shape prior exists for FLAME's PCA space without data, so identities
    are sampled from N(0, shape_std^2) on the first 50 components. Appearance comes from
    FLAME's texture space (its mean and directions, tinted to the identity's skin tone) when
    ``flame_uv_path`` is given, else a per-vertex skin tone.
    """

    name = "flame"

    def __init__(self, cfg: FaceConfig):
        from faces.flame import FLAME_HELP, FlameAUBasis, FlameModel
        from faces.flame_rig import load_or_derive

        if not cfg.flame_path:
            raise ValueError(f"face.model is 'flame' but face.flame_path is not set; {FLAME_HELP}")
        self.cfg = cfg
        self.flame = FlameModel.load(cfg.flame_path, cfg.flame_n_shape)
        self.derived = None
        if cfg.au_basis_path:
            self.basis = FlameAUBasis.load(cfg.au_basis_path, self.flame.n_expression)
        else:
            self.basis, self.derived = load_or_derive(self.flame, cfg.flame_path,
                                                      cfg.flame_landmarks_path)
        v = self.flame.v_template
        self._tex = _texture_space(cfg.flame_uv_path, self.flame.faces.shape)
        self._mesh = Mesh(v.astype(np.float32), self.flame.faces.astype(np.int32),
                          corner_uv=self._tex["vt"][self._tex["ft"]] if self._tex else None)
        self._eyes = self.flame.weights[:, 3:].sum(1) > 0.5 if self.flame.n_joints >= 5 else None
        self.camera_target = self._camera_target()

    def _camera_target(self) -> tuple[float, float, float]:
        """The built-in head's framing carried over by the rig's similarity transform, or
        (given bases) the front of the template."""
        v = self.flame.v_template
        d = (self.derived or {}).get("derived", {})
        if "rot" in d:
            p = (np.asarray(BuiltinFaceModel.camera_target) - d["shift"]) @ np.asarray(d["rot"])
            return tuple(float(c) for c in p / d["scale"])
        front = v[v[:, 2] > np.percentile(v[:, 2], 60)]
        return tuple(float(c) for c in (front.mean(0) - [0, 0, 0.06]))

    @property
    def template(self) -> Mesh:
        return self._mesh

    @property
    def n_shape(self) -> int:
        return self.flame.n_shape

    def materials(self):
        from faces.render import MATERIALS

        if self._eyes is None:
            return None
        return np.where(self._eyes, MATERIALS["eye"], MATERIALS["skin"]).astype(np.float32)

    def head_vertices(self):
        return np.arange(self.template.n_vertices) if self._eyes is None else \
            np.flatnonzero(~self._eyes)

    def anchors(self) -> dict[str, np.ndarray] | None:
        """The AU-visibility points (faces.au_measure) on this FLAME mesh, when derived."""
        return self.basis.anchors

    def sample_shape(self, demo, rng):
        beta = np.zeros(self.n_shape, np.float32)
        k = min(50, self.n_shape)
        beta[:k] = np.clip(self.cfg.shape_std * rng.standard_normal(k), -3, 3)
        return beta

    def neutral(self, shape):
        return self.flame.forward(shape=shape)

    def _pose(self, jaw):
        pose = np.zeros(3 * self.flame.n_joints)
        if self.flame.n_joints > 2:
            pose[6:9] = jaw  # FLAME joints: global, neck, jaw, eyes
        return pose

    def expression_params(self, aus):
        psi, jaw = self.basis.params(aus, self.flame.n_expression)
        return np.concatenate([psi, jaw]).astype(np.float32)

    def posed(self, shape, aus):
        psi, jaw = self.basis.params(aus, self.flame.n_expression)
        return self.flame.forward(shape=shape, expression=psi, pose=self._pose(jaw))

    def posed_params(self, shape, params):
        p, n = np.asarray(params, np.float64), self.flame.n_expression
        if p.shape != (n + 3,):
            raise ValueError(f"this FLAME model's expression parameters are {n} + 3 jaw "
                             f"values; got shape {p.shape}")
        return self.flame.forward(shape=shape, expression=p[:n], pose=self._pose(p[n:]))

    def appearance(self, demo, rng, dressing=None):
        from faces.texture import _skin_tone

        tone = _skin_tone(demo, rng)
        t = self._tex
        if t is None or "mean" not in t:
            cols = np.broadcast_to(tone, (self._mesh.n_vertices, 3))
            return Appearance(vertex_colors=(cols * 255).astype(np.uint8))
        z = 0.8 * rng.standard_normal(t["tex_dir"].shape[-1])
        albedo = (t["mean"] + t["tex_dir"] @ z) / 255.0
        h, w = albedo.shape[:2]
        at = albedo[((1 - t["vt"][:, 1]) * (h - 1)).round().astype(int).clip(0, h - 1),
                    (t["vt"][:, 0] * (w - 1)).round().astype(int).clip(0, w - 1)]
        albedo = albedo * np.clip(tone / np.maximum(np.median(at, 0), 1e-3), 0.3, 3.0)
        return Appearance(texture=(np.clip(albedo, 0, 1) * 255).astype(np.uint8))


def _texture_space(path: str | None, faces_shape: tuple) -> dict | None:
    """FLAME_texture.npz: vt (UVs), ft (UV triangles), and when present mean / tex_dir."""
    if not path:
        return None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"face.flame_uv_path {path} does not exist; download 'FLAME "
                                "texture space' (FLAME_texture.npz) from "
                                "https://flame.is.tue.mpg.de and point face.flame_uv_path at it")
    try:
        with np.load(path, allow_pickle=False) as d:
            out = {"vt": np.asarray(d["vt"], np.float32), "ft": np.asarray(d["ft"], np.int64)}
            if "mean" in d and "tex_dir" in d:
                out["mean"] = np.asarray(d["mean"], np.float32)
                out["tex_dir"] = np.asarray(d["tex_dir"], np.float32)
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise ValueError(f"face.flame_uv_path {path} is not a FLAME texture-space npz with "
                         f"'vt' and 'ft' ({type(e).__name__}: {str(e)[:80]})") from None
    if out["ft"].shape != tuple(faces_shape) or out["ft"].max() >= len(out["vt"]):
        raise ValueError(f"face.flame_uv_path {path}: ft has shape {out['ft'].shape}, the FLAME "
                         f"model has {faces_shape[0]} triangles; is it for another FLAME?")
    if "mean" in out and (out["mean"].ndim != 3 or out["tex_dir"].shape[:3] != out["mean"].shape):
        raise ValueError(f"face.flame_uv_path {path}: tex_dir {out['tex_dir'].shape} does not "
                         f"match mean {out['mean'].shape}")
    return out


def make_face_model(cfg: FaceConfig | None = None) -> FaceModel:
    cfg = cfg or FaceConfig()
    if cfg.model == "builtin":
        return BuiltinFaceModel(cfg)
    if cfg.model == "flame":
        return FlameFaceModel(cfg)
    raise ValueError(f"unknown face model {cfg.model!r}; use 'builtin' or 'flame'")
