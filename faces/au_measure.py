"""How visible each PSPI AU is, in one definition for the rig and for the QA read-back.

A measure is the movement of named facial points in a frontal image relative to the same
identity's neutral frame, as a fraction of the distance between the outer eye corners
(about 9 cm on an adult, so 0.01 is about 1 mm). The points come either from the template
(anchor vertices projected through the camera: :func:`template_points`) or from a landmark
detector run on the rendered image (qa/landmarks.py maps MediaPipe's indices onto the same
names), so the rig's targets and the QA figures are the same numbers.
"""
from __future__ import annotations

import functools

import numpy as np

from faces import builtin_head as H

POINT_GROUPS = ("brow", "upper_lid", "lower_lid", "cheek", "nose_wing", "upper_lip",
                "outer_canthus")
# AU -> what is measured (positive = the AU's direction); AU43 is the closing of the eye.
AU_MEASURES = {"AU4": "brow lowering", "AU6": "infraorbital cheek rise",
               "AU7": "lower-lid rise", "AU9": "nose-wing rise", "AU10": "upper-lip rise",
               "AU43": "eye closure"}
# Intensity 5 must move the points by at least this (fraction of the outer-eye-corner
# distance); AU43 is binary and closes the eye.
TARGETS = {"AU4": 0.04, "AU6": 0.04, "AU7": 0.03, "AU9": 0.04, "AU10": 0.04}


def _rise(neutral: dict, posed: dict, group: str) -> float:
    """Mean upward movement of a group (image y points down)."""
    return float(np.mean(neutral[group][:, 1] - posed[group][:, 1]))


def aperture(points: dict) -> float:
    """Mean vertical opening of the eyes (lower-lid y minus upper-lid y), in pixels."""
    return float(np.mean(points["lower_lid"][:, 1]) - np.mean(points["upper_lid"][:, 1]))


def eye_corner_distance(points: dict) -> float:
    c = points["outer_canthus"]
    half = len(c) // 2  # the first half is one side, the second the other
    return float(np.linalg.norm(c[:half].mean(0) - c[half:].mean(0)))


def measure(neutral: dict, posed: dict) -> dict[str, float]:
    """Per-AU movement of ``posed`` against ``neutral`` (dicts of group -> (N, 2) pixel
    coordinates, x right, y down), over the neutral's outer-eye-corner distance."""
    d = eye_corner_distance(neutral)
    if not d > 0:
        raise ValueError("the outer eye corners coincide; the points are not a face")
    out = {"AU4": -_rise(neutral, posed, "brow"), "AU6": _rise(neutral, posed, "cheek"),
           "AU7": _rise(neutral, posed, "lower_lid"), "AU9": _rise(neutral, posed, "nose_wing"),
           "AU10": _rise(neutral, posed, "upper_lip"),
           "AU43": aperture(neutral) - aperture(posed)}
    return {k: v / d for k, v in out.items()}


# ---- the built-in head's anchor vertices ---------------------------------------------------

@functools.lru_cache(maxsize=1)
def template_anchors() -> dict[str, np.ndarray]:
    """Vertex indices of each point group on the built-in template, each group listed as
    the +x side then the -x side (like the landmark detector's groups)."""
    from faces.regions import eye_local

    t = H.build_template()
    v = t.mesh.vertices[: t.skin_count].astype(np.float64)
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    reg = t.mesh.regions
    E = H.EYE_CENTER
    out = {}

    def sides(mask_fn):
        return np.r_[np.flatnonzero(mask_fn(1.0)), np.flatnonzero(mask_fn(-1.0))]

    def central(name):
        idx = reg[name]
        keep = []
        for sign in (1.0, -1.0):
            mine = idx[np.sign(v[idx, 0]) == sign]
            s, _, _ = eye_local(v[mine], sign)
            keep.append(mine[np.abs(s) < 0.35])
        return np.concatenate(keep)

    out["brow"] = sides(lambda s: np.isin(np.arange(len(v)), reg["brow"]) & (s * x > 0))
    out["upper_lid"] = central("upper_lid_margin")
    out["lower_lid"] = central("lower_lid_margin")
    # infraorbital cheek: below the lower lid, between the nose side and the outer eye
    out["cheek"] = sides(lambda s: (s * x > 0.021) & (s * x < 0.044) & (y > E[1] - 0.036)
                         & (y < E[1] - 0.018) & (z > 0.05))
    out["nose_wing"] = sides(lambda s: np.isin(np.arange(len(v)), reg["nose_wing"]) & (s * x > 0))
    out["upper_lip"] = sides(lambda s: np.isin(np.arange(len(v)), reg["upper_lip"])
                             & (s * x >= 0) & (s * x < 0.010) & (y > H.MOUTH_Y + 0.004))
    corners = []
    for sign in (1.0, -1.0):
        m = reg["upper_lid_margin"][np.sign(v[reg["upper_lid_margin"], 0]) == sign]
        corners.append(m[np.argmax(np.abs(v[m, 0]))])
    out["outer_canthus"] = np.array(corners)
    return out


def template_points(vertices: np.ndarray, camera, size: int = 512) -> dict[str, np.ndarray]:
    """Pixel coordinates of every point group of a built-in mesh seen through ``camera``."""
    return {g: camera.project(np.asarray(vertices, np.float64)[idx], size)
            for g, idx in template_anchors().items()}
