"""Neck, shoulders and clothes below the built-in head.

The head mesh ends in a ring round the neck (just under the chin in front). The body starts
exactly on that ring of the identity's neutral mesh, so the neck continues without a seam,
then widens into shoulders and a chest (cross-sections are superellipses) that leave the
frame. Vertices above the garment's neckline take the identity's skin colour; below it the
garment's colour and pattern.
"""
from __future__ import annotations

import functools

import numpy as np

from faces import builtin_head as H
from faces.geometry import Mesh, smoothstep

GARMENTS = ("t-shirt", "v-neck", "shirt", "sweater", "hospital gown")
GARMENT_COLORS = {  # sRGB 0-1
    "t-shirt": [(0.55, 0.56, 0.58), (0.12, 0.16, 0.28), (0.60, 0.12, 0.12), (0.90, 0.90, 0.88),
                (0.20, 0.35, 0.22)],
    "v-neck": [(0.15, 0.15, 0.17), (0.45, 0.30, 0.45), (0.75, 0.65, 0.45), (0.25, 0.40, 0.55)],
    "shirt": [(0.92, 0.93, 0.95), (0.60, 0.72, 0.85), (0.85, 0.80, 0.70)],
    "sweater": [(0.30, 0.20, 0.15), (0.55, 0.12, 0.15), (0.20, 0.28, 0.40), (0.62, 0.58, 0.50)],
    "hospital gown": [(0.62, 0.74, 0.80), (0.70, 0.80, 0.72)],
}
AZ_STEPS = 112
NECK_AXIS_Z = -0.02


@functools.lru_cache(maxsize=1)
def _ring() -> np.ndarray:
    """The template's neck-cut vertices, ordered by azimuth round the neck."""
    t = H.build_template()
    idx = np.flatnonzero(t.lid_tags == 5)
    v = t.mesh.vertices[idx]
    return idx[np.argsort(np.arctan2(v[:, 0], v[:, 2] - NECK_AXIS_Z))]


def _section(theta: np.ndarray, y: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Points of the body's cross-section at heights y, ``u`` metres below the neck's base
    (superellipses: a round neck, squarer shoulders, the chest a little forward)."""
    s = smoothstep(0.0, 0.075, u) ** 0.6  # neck -> shoulders
    a = 0.058 + 0.008 * smoothstep(-0.04, 0.0, u) + (0.200 - 0.066) * s
    b = 0.056 + (0.105 - 0.056) * smoothstep(0.0, 0.12, u)
    e = 2.0 + 1.8 * s
    c, sn = np.cos(theta), np.sin(theta)
    x = np.sign(sn) * np.abs(sn) ** (2 / e) * a
    z = np.sign(c) * np.abs(c) ** (2 / e) * b + NECK_AXIS_Z - 0.01 * smoothstep(0.0, 0.1, u)
    return np.stack([x, y, z], 1)


def body_mesh(neutral: np.ndarray, garment: str) -> tuple[Mesh, np.ndarray, np.ndarray]:
    """The body under an identity's neutral head; each vertex's depth below the neck's base;
    and which vertices are skin. A row of vertices runs exactly along the garment's neckline
    (doubled: the skin above and the cloth below meet in a crisp edge)."""
    ring = neutral[_ring()].astype(np.float64)
    theta_r = np.arctan2(ring[:, 0], ring[:, 2] - NECK_AXIS_Z)
    theta = np.linspace(-np.pi, np.pi, AZ_STEPS, endpoint=False)
    order = np.argsort(theta_r)
    top = np.stack([np.interp(theta, theta_r[order], ring[order, k], period=2 * np.pi)
                    for k in range(3)], 1)  # the ring resampled at AZ_STEPS azimuths
    # the neck's base: ~6 cm below the ring in front (the jugular notch), 1 cm at the back
    base = top[:, 1] - 0.01 - 0.05 * np.clip(np.cos(theta), 0, 1)
    line = neckline(theta, garment)
    rows, depth = [], []
    for u in np.linspace(0, 1, 9) ** 1.2:  # the neck: from the ring down to its base
        y = top[:, 1] + (base - top[:, 1]) * u
        row = top * (1 - smoothstep(0.0, 1.0, u)) + _section(theta, y, base - y) * smoothstep(
            0.0, 1.0, u)
        row[:, 1] = y
        rows.append(row)
        depth.append(base - y)
    below = [line * t for t in np.linspace(0, 1, 7)[1:]]  # skin down to the neckline
    n_skin = len(rows) + len(below)
    below += [line + (0.35 - line) * t for t in np.linspace(0, 1, 26) ** 1.8]  # the garment
    for u in below:
        rows.append(_section(theta, base - u, u))
        depth.append(u)
    v = np.concatenate(rows)
    n = AZ_STEPS
    faces = []
    for i in range(len(rows) - 1):
        if i == n_skin - 1:
            continue  # the doubled neckline row: no faces across it
        for j in range(n):
            a, b = i * n + j, i * n + (j + 1) % n
            faces += [(a, b, b + n), (a, b + n, a + n)]
    is_skin = np.repeat(np.arange(len(rows)) < n_skin, n)
    return (Mesh(v.astype(np.float32), np.array(faces, np.int32), None), np.concatenate(depth),
            is_skin)


def neckline(theta: np.ndarray, garment: str) -> np.ndarray:
    """Height below the neck's base (m) where the garment starts, per azimuth (0 = front)."""
    front = np.clip(np.cos(theta), 0, 1)
    base = {"t-shirt": 0.020, "v-neck": 0.020, "shirt": 0.012, "sweater": 0.010,
            "hospital gown": 0.030}[garment]
    if garment == "v-neck":
        return base + 0.075 * front ** 6
    if garment == "shirt":  # an open collar
        return base + 0.05 * front ** 10
    return base + 0.015 * front ** 2


def body_colors(mesh: Mesh, depth: np.ndarray, is_skin: np.ndarray, garment: str, color, skin,
                rng: np.random.Generator) -> np.ndarray:
    """Per-vertex sRGB colours (uint8): skin above the neckline, the garment below."""
    v = mesh.vertices.astype(np.float64)
    theta = np.arctan2(v[:, 0], v[:, 2] - NECK_AXIS_Z)
    line = neckline(theta, garment)
    cloth = np.asarray(color, np.float64) * (1 + 0.04 * rng.standard_normal(3))
    col = np.broadcast_to(cloth, v.shape).copy()
    band = smoothstep(line + 0.012, line, depth)  # collar or rib band at the neckline
    if garment == "sweater":
        col *= (1 - 0.18 * band)[:, None]
    if garment == "shirt":
        col = col * (1 - band[:, None]) + np.array([0.95, 0.95, 0.96]) * band[:, None]
    if garment == "hospital gown":  # a small printed pattern
        dots = (np.sin(theta * 60) * np.sin(v[:, 1] * 400) > 0.7)
        col[dots] *= 0.75
    folds = 0.05 * np.sin(theta * 9 + v[:, 1] * 30)
    col *= (1 + folds)[:, None]
    out = np.where(is_skin[:, None], np.asarray(skin, np.float64), col)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)
