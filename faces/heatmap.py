"""Pain-region heatmaps: per-vertex displacement from the neutral to the rigged mesh.

The displacement's magnitude says how far the skin moved; its direction relative to the
neutral surface normal says whether it bulged out (+1), sank in (-1) or slid along the
surface (0). Colours use perceptual matplotlib colormaps on a fixed scale, so that
brightness is comparable across identities and expressions (a stronger expression is a
brighter map), and the coloured mesh is rendered per view like the RGB frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faces.geometry import vertex_normals

DEFAULT_SCALE_M = 0.006  # displacement shown at full colour


@dataclass
class Displacement:
    magnitude: np.ndarray  # (V,) metres
    normal_cos: np.ndarray  # (V,) cosine between displacement and the neutral normal (0 if still)
    vectors: np.ndarray  # (V, 3)


def displacement(neutral: np.ndarray, posed: np.ndarray, faces: np.ndarray) -> Displacement:
    d = np.asarray(posed, np.float64) - np.asarray(neutral, np.float64)
    mag = np.linalg.norm(d, axis=1)
    n = vertex_normals(np.asarray(neutral, np.float32), faces).astype(np.float64)
    cos = np.where(mag > 1e-9, np.sum(d * n, axis=1) / np.maximum(mag, 1e-12), 0.0)
    return Displacement(mag, cos, d)


def heat_colors(disp: Displacement, mode: str = "magnitude", scale: float = DEFAULT_SCALE_M,
                cmap: str | None = None) -> np.ndarray:
    """Per-vertex colours (V, 3) uint8.

    ``magnitude``: the perceptual 'inferno' map of |displacement| / scale.
    ``direction``: hue from a diverging map of the normal cosine (blue in, red out,
    neutral grey for sliding), brightness from the magnitude.
    """
    import matplotlib

    t = np.clip(disp.magnitude / scale, 0.0, 1.0)
    if mode == "magnitude":
        rgb = matplotlib.colormaps[cmap or "inferno"](t)[:, :3]
    elif mode == "direction":
        hue = matplotlib.colormaps[cmap or "coolwarm"](0.5 + 0.5 * disp.normal_cos)[:, :3]
        rgb = hue * (t ** 0.7)[:, None]
    else:
        raise ValueError(f"unknown heatmap mode {mode!r}; use 'magnitude' or 'direction'")
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
