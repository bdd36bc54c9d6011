"""Signed-distance primitives used to sculpt the built-in head (metres, numpy, vectorised)."""
from __future__ import annotations

import numpy as np


def ellipsoid(p: np.ndarray, c, r) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid (Quilez's bound)."""
    q = (p - np.asarray(c)) / np.asarray(r)
    k0 = np.linalg.norm(q, axis=-1)
    k1 = np.linalg.norm(q / np.asarray(r), axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def round_cone(p: np.ndarray, a, b, ra: float, rb: float) -> np.ndarray:
    """Capsule from a to b whose radius goes linearly from ra to rb (good for a nose ridge)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    closest = a + t[:, None] * ab
    return np.linalg.norm(p - closest, axis=-1) - (ra + (rb - ra) * t)


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth union with blend radius k."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth intersection; smax(a, -b) carves b out of a."""
    return -smin(-a, -b, k)


def march_radial(sdf, dirs: np.ndarray, r_start: float = 0.4, iters: int = 96,
                 tol: float = 2e-6) -> np.ndarray:
    """Distance from the origin along each unit direction to the outermost surface.

    Sphere-traces inwards from ``r_start``; smooth blends make the SDF a slight
    over-estimate, so steps are damped.
    """
    r = np.full(len(dirs), r_start)
    active = np.ones(len(dirs), bool)
    for _ in range(iters):
        if not active.any():
            break
        d = sdf(dirs[active] * r[active, None])
        r[active] -= 0.8 * d
        still = np.abs(d) > tol
        idx = np.flatnonzero(active)
        active[idx[~still]] = False
    return r
