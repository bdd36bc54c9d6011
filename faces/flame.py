"""FLAME from the user's model file, and a linear AU rig in FLAME expression space.

The model file is the ``generic_model.pkl`` of FLAME 2020 or 2023 (register and download it
from the FLAME website; it cannot be shipped). Both chumpy pickles (2020) and numpy ones
are read: chumpy objects are unpickled into plain arrays without importing chumpy, which is
unmaintained. Keys used: v_template (V,3), f (F,3), shapedirs (V,3,S+E), posedirs
(V,3,36), J_regressor (J,V, dense or scipy sparse), kintree_table (2,J), weights (V,J).

The AU basis file (JSON, format ``pain3d-flame-au-basis``) gives, per AU, the FLAME
expression coefficients (and optionally a jaw rotation) at full intensity — FACS 5, or
closure 1 for AU43::

    {"format": "pain3d-flame-au-basis", "version": 1, "n_expression": 100,
     "aus": {"AU4": {"expression": [100 floats], "jaw": [0, 0, 0]}, "AU43": {...}, ...}}

An AU at intensity I contributes (I / full) times its entry; AUs add up.
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
              "or 2023 and set face.flame_path to its generic_model.pkl")


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
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{path} is not a readable FLAME pickle ({e}); {FLAME_HELP}") from e
        if not isinstance(raw, dict):
            raise ValueError(f"{path} is not a FLAME model (expected a dict of arrays)")
        missing = [k for k in ("v_template", "f", "shapedirs", "J_regressor", "kintree_table",
                               "weights") if k not in raw]
        if missing:
            raise ValueError(f"{path} is not a FLAME model: missing {missing}")
        v = _as_array(raw["v_template"]).astype(np.float64)
        dirs = _as_array(raw["shapedirs"]).astype(np.float64)
        total = dirs.shape[2]
        if n_shape is None:
            if total != 400:
                raise ValueError(f"{path}: shapedirs has {total} components, not FLAME's 300 + 100;"
                                 " set face.flame_n_shape to the number of identity components")
            n_shape = 300
        if not 0 < n_shape < total:
            raise ValueError(f"face.flame_n_shape={n_shape} must be between 1 and {total - 1}")
        kin = _as_array(raw["kintree_table"]).astype(np.int64)
        parents = kin[0].copy()
        parents[0] = -1
        posedirs = None
        if "posedirs" in raw:
            pd = _as_array(raw["posedirs"]).astype(np.float64)
            posedirs = pd.reshape(-1, pd.shape[-1])
        return cls(v, _as_array(raw["f"]).astype(np.int64), dirs[:, :, :n_shape],
                   dirs[:, :, n_shape:], posedirs, _as_array(raw["J_regressor"]).astype(np.float64),
                   parents, _as_array(raw["weights"]).astype(np.float64))

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
    expression: dict[str, np.ndarray]  # AU -> (E,)
    jaw: dict[str, np.ndarray]  # AU -> (3,)

    @staticmethod
    def full_intensity(au: str) -> float:
        return 1.0 if au == "AU43" else 5.0

    @classmethod
    def load(cls, path: str | Path, n_expression: int) -> "FlameAUBasis":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"FLAME AU basis file {path} does not exist; write one in the "
                f"'{AU_BASIS_FORMAT}' JSON format (see faces/flame.py and the README)")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"FLAME AU basis {path} is not valid JSON ({e})") from e
        if data.get("format") != AU_BASIS_FORMAT:
            raise ValueError(f"{path}: 'format' must be '{AU_BASIS_FORMAT}'")
        expr, jaw = {}, {}
        for au, entry in data.get("aus", {}).items():
            e = np.asarray(entry.get("expression", []), np.float64)
            if len(e) > n_expression:
                raise ValueError(f"{path}: {au} has {len(e)} expression coefficients, the FLAME "
                                 f"model has {n_expression}")
            expr[au] = np.pad(e, (0, n_expression - len(e)))
            jaw[au] = np.asarray(entry.get("jaw", [0.0, 0.0, 0.0]), np.float64).reshape(3)
        if not expr:
            raise ValueError(f"{path}: no AUs under 'aus'")
        return cls(expr, jaw)

    def params(self, aus: dict[str, float], n_expression: int) -> tuple[np.ndarray, np.ndarray]:
        """(expression coefficients, jaw axis-angle) for an AU configuration."""
        psi, jaw = np.zeros(n_expression), np.zeros(3)
        for au, value in aus.items():
            if value == 0:
                continue
            if au not in self.expression:
                raise ValueError(f"the FLAME AU basis has no {au}; it has {sorted(self.expression)}")
            full = self.full_intensity(au)
            w = float(np.clip(value, 0.0, full)) / full
            psi += w * self.expression[au]
            jaw += w * self.jaw[au]
        return psi, jaw
