"""Face models behind one interface: the built-in procedural head and FLAME.

A face model turns identity parameters into a neutral mesh and an AU configuration into a
rigged mesh, and reports the 3-D ground truth (shape and expression parameters) that the
dataset stores. Pick one by name with :func:`make_face_model`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from faces.demographics import Demographics
from faces.geometry import Mesh


@dataclass
class FaceConfig:
    model: str = "builtin"  # builtin | flame
    flame_path: str | None = None  # generic_model.pkl (FLAME 2020/2023)
    flame_n_shape: int | None = None  # identity components in shapedirs (None: FLAME's 300)
    au_basis_path: str | None = None  # JSON AU basis in FLAME expression space
    flame_uv_path: str | None = None  # FLAME texture space (npz with vt, ft), for UV textures
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
    """FLAME from the user's file, rigged by a linear AU basis in its expression space.

    No demographic shape prior exists for FLAME's PCA space without data, so identities
    are sampled from N(0, shape_std^2) on the first 50 components; appearance is a
    per-vertex skin tone (FLAME's pickle has no UVs).
    """

    name = "flame"

    def __init__(self, cfg: FaceConfig):
        from faces.flame import FlameAUBasis, FlameModel

        if not cfg.flame_path:
            from faces.flame import FLAME_HELP

            raise ValueError(f"face.model is 'flame' but face.flame_path is not set; {FLAME_HELP}")
        if not cfg.au_basis_path:
            raise ValueError("face.model is 'flame' but face.au_basis_path is not set; the FLAME "
                             "rig needs an AU basis file (format in faces/flame.py)")
        self.cfg = cfg
        self.flame = FlameModel.load(cfg.flame_path, cfg.flame_n_shape)
        self.basis = FlameAUBasis.load(cfg.au_basis_path, self.flame.n_expression)
        v = self.flame.v_template
        self._mesh = Mesh(v.astype(np.float32), self.flame.faces.astype(np.int32),
                          corner_uv=self._load_uv(cfg.flame_uv_path))
        front = v[v[:, 2] > np.percentile(v[:, 2], 60)]
        self.camera_target = tuple(float(c) for c in (front.mean(0) - [0, 0, 0.06]))

    def _load_uv(self, path: str | None):
        """Per-corner UVs from FLAME's texture-space file (vt: UV coords, ft: UV faces)."""
        if not path:
            return None
        try:
            with np.load(path, allow_pickle=False) as d:
                vt, ft = np.asarray(d["vt"], np.float32), np.asarray(d["ft"], np.int64)
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"face.flame_uv_path {path} is not a FLAME texture-space npz with "
                             f"'vt' and 'ft' ({e})") from e
        if ft.shape != self.flame.faces.shape:
            raise ValueError(f"face.flame_uv_path: ft has shape {ft.shape}, the FLAME model has "
                             f"{self.flame.faces.shape[0]} triangles")
        return vt[ft]

    @property
    def template(self) -> Mesh:
        return self._mesh

    @property
    def n_shape(self) -> int:
        return self.flame.n_shape

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
        cols = np.broadcast_to(tone, (self._mesh.n_vertices, 3))
        return Appearance(vertex_colors=(cols * 255).astype(np.uint8))


def make_face_model(cfg: FaceConfig | None = None) -> FaceModel:
    cfg = cfg or FaceConfig()
    if cfg.model == "builtin":
        return BuiltinFaceModel(cfg)
    if cfg.model == "flame":
        return FlameFaceModel(cfg)
    raise ValueError(f"unknown face model {cfg.model!r}; use 'builtin' or 'flame'")
