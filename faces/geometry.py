"""Small mesh and field helpers shared by the face models, rig, renderer and heatmaps."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh in metres (x: subject's left, y: up, z: out of the face).

    ``corner_uv`` holds texture coordinates per triangle corner (F x 3 x 2) so that a
    UV seam needs no duplicated vertices; ``None`` for meshes without a texture.
    """

    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int32
    corner_uv: np.ndarray | None = None  # (F, 3, 2) float32
    regions: dict[str, np.ndarray] = field(default_factory=dict)  # name -> vertex indices

    def with_vertices(self, vertices: np.ndarray) -> "Mesh":
        """Same topology, UVs and regions; new positions (used for shapes and expressions)."""
        return Mesh(np.asarray(vertices, np.float32), self.faces, self.corner_uv, self.regions)

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((np.asarray(x, np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gauss(p: np.ndarray, center, sigma) -> np.ndarray:
    """Anisotropic Gaussian window exp(-|(p - c) / sigma|^2 / 2) over points (N, 3)."""
    d = (p - np.asarray(center, np.float64)) / np.asarray(sigma, np.float64)
    return np.exp(-0.5 * np.sum(d * d, axis=-1))


def gauss_mirrored(p: np.ndarray, center, sigma) -> np.ndarray:
    """The larger of the window at ``center`` and at its mirror image across x = 0
    (a feature present on both sides of the face)."""
    c = np.asarray(center, np.float64)
    return np.maximum(gauss(p, c, sigma), gauss(p, c * [-1, 1, 1], sigma))


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals (length = 2 x area)."""
    v = vertices[faces]
    return np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals."""
    fn = face_normals(vertices, faces)
    nv = len(vertices)
    idx = np.asarray(faces).ravel()  # bincount is far faster than np.add.at
    n = np.stack([np.bincount(idx, np.repeat(fn[:, c], 3), minlength=nv) for c in range(3)], 1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return n.astype(np.float32)


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return 0.5 * np.linalg.norm(face_normals(vertices, faces), axis=1)


@dataclass
class MeshCheck:
    """Outcome of :func:`check_mesh`: a coarse plausibility test of a deformed mesh."""

    degenerate: int  # triangles whose area collapsed
    flipped: int  # triangles whose orientation turned over relative to the reference
    ok: bool


def check_mesh(vertices: np.ndarray, reference: np.ndarray, faces: np.ndarray,
               area_ratio: float = 0.02, max_flip_fraction: float = 0.0) -> MeshCheck:
    """Coarse degenerate-triangle and fold check against a reference pose of the same topology.

    Deformations of a template fold (locally self-intersect) by turning triangles over, so
    counting triangles whose normal reverses relative to the reference, plus collapsed ones,
    catches the implausible shapes without a full intersection test.
    """
    fn_ref = face_normals(reference, faces)
    fn = face_normals(vertices, faces)
    a_ref = 0.5 * np.linalg.norm(fn_ref, axis=1)
    a = 0.5 * np.linalg.norm(fn, axis=1)
    degenerate = int(np.sum(a < area_ratio * a_ref))
    cos = np.sum(fn * fn_ref, axis=1) / np.maximum(
        np.linalg.norm(fn, axis=1) * np.linalg.norm(fn_ref, axis=1), 1e-20)
    flipped = int(np.sum(cos < 0.0))
    ok = degenerate == 0 and flipped <= max_flip_fraction * len(faces)
    return MeshCheck(degenerate, flipped, ok)


def rotation_x(rad: np.ndarray | float) -> np.ndarray:
    """Rotation matrices about the x axis; ``rad`` may be an array (returns (..., 3, 3))."""
    a = np.asarray(rad, np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                     np.stack([z, s, c], -1)], -2)


def rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (..., 3) to rotation matrices (..., 3, 3)."""
    r = np.asarray(rotvec, np.float64)
    theta = np.linalg.norm(r, axis=-1, keepdims=True)
    k = r / np.maximum(theta, 1e-12)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([np.stack([zero, -kz, ky], -1), np.stack([kz, zero, -kx], -1),
                  np.stack([-ky, kx, zero], -1)], -2)
    th = theta[..., None]
    eye = np.broadcast_to(np.eye(3), K.shape)
    return eye + np.sin(th) * K + (1 - np.cos(th)) * (K @ K)
