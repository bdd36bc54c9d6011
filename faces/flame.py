"""FLAME from the user's model file, and an AU rig in FLAME expression space.

The model file is FLAME 2020's ``generic_model.pkl`` (a chumpy pickle) or FLAME 2023's
``flame2023.pkl`` (numpy); register and download it from the FLAME website, it cannot be
shipped. Chumpy objects are unpickled into plain arrays without importing chumpy, which is
unmaintained. Keys used: v_template (V,3), f (F,3), shapedirs (V,3,S+E), posedirs
(V,3,9(J-1)), J_regressor (J,V, dense or scipy sparse), kintree_table (2,J), weights (V,J).

The AU rig is normally derived from the FLAME file (faces/flame_rig.py). A basis file given
as ``face.au_basis_path`` (JSON, format ``pain3d-flame-au-basis``) overrides it:

- version 1: per AU, the expression coefficients (and optionally a jaw axis-angle) at full
  intensity (FACS 5; closure 1 for AU43), scaled linearly;
- version 2 (what the derivation writes): per AU, coefficients at the intensities ``at``,
  interpolated linearly in between (0 at intensity 0).

AUs add up.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faces.geometry import rodrigues

AU_BASIS_FORMAT = "pain3d-flame-au-basis"
FLAME_HELP = ("FLAME is licensed: register at https://flame.is.tue.mpg.de, download FLAME 2020 "
              "(generic_model.pkl) or FLAME 2023 (flame2023.pkl) and set face.flame_path to it")


class _ChumpyArray:
    """Stands in for chumpy classes while unpickling; keeps the array chumpy stored."""

    def __init__(self, *args, **kwargs):
        self.__dict__["x"] = None

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"x": state})


class _FlameUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] == "chumpy":
            return _ChumpyArray
        return super().find_class(module, name)


def _as_array(v) -> np.ndarray:
    if isinstance(v, _ChumpyArray):
        return np.asarray(v.__dict__["x"])
    if hasattr(v, "toarray"):  # scipy sparse (J_regressor)
        return np.asarray(v.toarray())
    return np.asarray(v)


def _check_shapes(path, a: dict) -> None:
    """Every array's shape agrees with the template's: one sentence naming the first that
    does not (a file of another model, or a damaged one)."""
    v = a["v_template"]
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 4:
        raise ValueError(f"{path}: v_template has shape {v.shape}, not (vertices, 3); "
                         f"{FLAME_HELP}")
    n, j = len(v), a["J_regressor"].shape[0]
    want = {"f": ("(triangles, 3)", a["f"].ndim == 2 and a["f"].shape[1] == 3),
            "shapedirs": (f"({n}, 3, components)", a["shapedirs"].ndim == 3
                          and a["shapedirs"].shape[:2] == (n, 3)),
            "J_regressor": (f"(joints, {n})", a["J_regressor"].shape[1:] == (n,)),
            "weights": (f"({n}, {j})", a["weights"].shape == (n, j)),
            "kintree_table": (f"(2, {j})", a["kintree_table"].shape == (2, j))}
    if "posedirs" in a:
        want["posedirs"] = (f"({n}, 3, {9 * (j - 1)})", a["posedirs"].shape == (n, 3, 9 * (j - 1)))
    for key, (shape, ok) in want.items():
        if not ok:
            raise ValueError(f"{path}: {key} has shape {a[key].shape}, not {shape} as the "
                             f"template's {n} vertices need; {FLAME_HELP}")
    f = a["f"]
    if f.size and (f.min() < 0 or f.max() >= n):
        raise ValueError(f"{path}: f indexes vertex {int(f.max())} but the template has {n}")
    for key in ("v_template", "shapedirs", "weights"):
        if not np.all(np.isfinite(np.asarray(a[key], np.float64))):
            raise ValueError(f"{path}: {key} holds NaN or infinite values; the file is damaged")


@dataclass
class FlameModel:
    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray  # (V, 3, S)
    exprdirs: np.ndarray  # (V, 3, E)
    posedirs: np.ndarray | None  # (V*3, 9*(J-1))
    J_regressor: np.ndarray  # (J, V)
    parents: np.ndarray  # (J,), -1 for the root
    weights: np.ndarray  # (V, J)

    @property
    def n_shape(self) -> int:
        return self.shapedirs.shape[2]

    @property
    def n_expression(self) -> int:
        return self.exprdirs.shape[2]

    @property
    def n_joints(self) -> int:
        return self.J_regressor.shape[0]

    @classmethod
    def load(cls, path: str | Path, n_shape: int | None = None) -> "FlameModel":
        """``n_shape``: how many of shapedirs' components are identity (the rest are
        expression); FLAME files have 400 = 300 + 100, the default."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"FLAME model file {path} does not exist; {FLAME_HELP}")
        try:
            with open(path, "rb") as fh:
                raw = _FlameUnpickler(fh, encoding="latin1").load()
        except Exception as e:  # noqa: BLE001 - any unpickling failure: not a FLAME file
            raise ValueError(f"{path} is not a readable FLAME pickle ({type(e).__name__}: "
                             f"{str(e)[:80]}); {FLAME_HELP}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path} is not a FLAME model (it holds a {type(raw).__name__}, "
                             f"not a dict of arrays); {FLAME_HELP}")
        missing = [k for k in ("v_template", "f", "shapedirs", "J_regressor", "kintree_table",
                               "weights") if k not in raw]
        if missing:
            raise ValueError(f"{path} is not a FLAME model: it has no {', '.join(missing)}; "
                             f"{FLAME_HELP}")
        arrays = {k: _as_array(raw[k]) for k in ("v_template", "f", "shapedirs", "J_regressor",
                                                 "kintree_table", "weights", "posedirs")
                  if k in raw}
        _check_shapes(path, arrays)
        v = arrays["v_template"].astype(np.float64)
        dirs = arrays["shapedirs"].astype(np.float64)
        total = dirs.shape[2]
        if n_shape is None:
            if total != 400:
                raise ValueError(f"{path}: shapedirs has {total} components, not FLAME's 300 + 100;"
                                 " set face.flame_n_shape to the number of identity components")
            n_shape = 300
        if not 0 < n_shape < total:
            raise ValueError(f"face.flame_n_shape={n_shape} must be between 1 and {total - 1}")
        parents = arrays["kintree_table"].astype(np.int64)[0].copy()
        parents[0] = -1
        posedirs = None
        if "posedirs" in arrays:
            pd = arrays["posedirs"].astype(np.float64)
            posedirs = pd.reshape(-1, pd.shape[-1])
        return cls(v, arrays["f"].astype(np.int64), dirs[:, :, :n_shape], dirs[:, :, n_shape:],
                   posedirs, arrays["J_regressor"].astype(np.float64), parents,
                   arrays["weights"].astype(np.float64))

    def forward(self, shape=None, expression=None, pose=None) -> np.ndarray:
        """Vertices (V, 3) for shape (<= S), expression (<= E) and pose (J x 3 axis-angle:
        global, neck, jaw, eyes for FLAME); missing values are zero."""
        def pad(a, n):
            out = np.zeros(n)
            if a is not None:
                a = np.asarray(a, np.float64).ravel()
                if len(a) > n:
                    raise ValueError(f"got {len(a)} parameters, the model has {n}")
                out[: len(a)] = a
            return out

        beta, psi = pad(shape, self.n_shape), pad(expression, self.n_expression)
        theta = pad(pose, 3 * self.n_joints).reshape(-1, 3)
        v = self.v_template + self.shapedirs @ beta + self.exprdirs @ psi
        J = self.J_regressor @ v
        R = rodrigues(theta)
        if self.posedirs is not None and self.posedirs.shape[1] == 9 * (self.n_joints - 1):
            feat = (R[1:] - np.eye(3)).ravel()
            v = v + (self.posedirs @ feat).reshape(-1, 3)
        G = np.zeros((self.n_joints, 4, 4))
        for i in range(self.n_joints):
            local = np.eye(4)
            local[:3, :3] = R[i]
            p = self.parents[i]
            local[:3, 3] = J[i] - (J[p] if p >= 0 else 0.0)
            G[i] = G[p] @ local if p >= 0 else local
        G[:, :3, 3] -= np.einsum("jab,jb->ja", G[:, :3, :3], J)  # relative to the rest pose
        T = np.einsum("vj,jab->vab", self.weights, G)
        return (np.einsum("vab,vb->va", T[:, :3, :3], v) + T[:, :3, 3]).astype(np.float32)


@dataclass
class FlameAUBasis:
    """Per AU: expression coefficients (E,) and jaw axis-angles (3,) at intensities ``at``."""

    at: dict[str, np.ndarray]  # AU -> (L,) increasing intensities
    expression: dict[str, np.ndarray]  # AU -> (L, E)
    jaw: dict[str, np.ndarray]  # AU -> (L, 3)
    source: str = ""
    anchors: dict[str, np.ndarray] | None = None  # AU-visibility points (derived rigs)

    @staticmethod
    def full_intensity(au: str) -> float:
        return 1.0 if au == "AU43" else 5.0

    @classmethod
    def load(cls, path: str | Path, n_expression: int) -> "FlameAUBasis":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"FLAME AU basis file {path} does not exist; leave face.au_basis_path unset to "
                "derive the rig from the FLAME file, or point it at a basis file")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"FLAME AU basis {path} is not valid JSON ({e})") from None
        if not isinstance(data, dict) or data.get("format") != AU_BASIS_FORMAT:
            raise ValueError(f"{path}: 'format' must be '{AU_BASIS_FORMAT}'")
        return cls.from_doc(data, n_expression, str(path))

    @classmethod
    def from_doc(cls, data: dict, n_expression: int, source: str) -> "FlameAUBasis":
        at, expr, jaw = {}, {}, {}
        v2 = data.get("version") == 2
        for au, entry in (data.get("aus") or {}).items():
            e = np.asarray(entry.get("expression", []), np.float64)
            e = e if v2 else e[None]
            if e.ndim != 2 or e.shape[1] > n_expression:
                raise ValueError(f"{source}: {au} has expression coefficients of shape {e.shape}; "
                                 f"the FLAME model has {n_expression}")
            levels = np.asarray(entry["at"] if v2 else [cls.full_intensity(au)], np.float64)
            j = np.asarray(entry.get("jaw", np.zeros((len(levels), 3)) if v2 else [0, 0, 0]),
                           np.float64).reshape(len(levels), 3)
            if len(e) != len(levels) or np.any(np.diff(levels) <= 0) or levels[0] <= 0:
                raise ValueError(f"{source}: {au} needs one coefficient row per increasing "
                                 "positive intensity in 'at'")
            at[au], expr[au], jaw[au] = levels, np.pad(e, ((0, 0), (0, n_expression - e.shape[1]))), j
        if not expr:
            raise ValueError(f"{source}: no AUs under 'aus'")
        anchors = data.get("anchors")
        anchors = {g: np.asarray(i, np.int64) for g, i in anchors.items()} if anchors else None
        return cls(at, expr, jaw, source, anchors)

    def params(self, aus: dict[str, float], n_expression: int) -> tuple[np.ndarray, np.ndarray]:
        """(expression coefficients, jaw axis-angle) for an AU configuration."""
        psi, jaw = np.zeros(n_expression), np.zeros(3)
        for au, value in aus.items():
            if value == 0:
                continue
            if au not in self.expression:
                raise ValueError(f"the FLAME AU basis has no {au}; it has {sorted(self.expression)}")
            x = float(np.clip(value, 0.0, self.full_intensity(au)))
            xs = np.r_[0.0, self.at[au]]
            psi += _interp(x, xs, np.vstack([np.zeros(n_expression), self.expression[au]]))
            jaw += _interp(x, xs, np.vstack([np.zeros(3), self.jaw[au]]))
        return psi, jaw


def _interp(x: float, xs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows interpolated linearly at x (extrapolated linearly past the last level)."""
    i = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))
    t = (x - xs[i]) / (xs[i + 1] - xs[i])
    return (1 - t) * rows[i] + t * rows[i + 1]
