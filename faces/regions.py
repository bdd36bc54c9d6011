"""Named vertex regions of the built-in head, from landmark geometry on the template.

Sided regions come as ``<name>_r`` (the +x half: image right in a frontal view, which is the
subject's left), ``<name>_l`` (the -x half) and ``<name>`` (both).
"""
from __future__ import annotations

import numpy as np

from faces import builtin_head as H


def eye_local(p: np.ndarray, sign: float):
    """Eye-local coordinates of points (on the ``sign`` side): s along the fissure
    (-1 medial, +1 lateral), the angle above the eye's horizontal plane about the
    eyeball's x axis, and the radial distance from that axis."""
    c = H.EYE_CENTER * np.array([sign, 1, 1])
    q = p - c
    s = sign * q[:, 0] / H.FISSURE_HALF_W
    ang = np.arctan2(q[:, 1], q[:, 2])
    rad = np.hypot(q[:, 1], q[:, 2])
    return s, ang, rad


def margin_angles(s: np.ndarray):
    """Angles of the upper and lower lid margins at fissure positions s (template)."""
    fr = H.EyeFrame(H.EYE_CENTER)
    sc = np.clip(s, -1, 1)
    up, lo = fr.margin(sc, True) - H.EYE_CENTER, fr.margin(sc, False) - H.EYE_CENTER
    return np.arctan2(up[:, 1], up[:, 2]), np.arctan2(lo[:, 1], lo[:, 2])


def compute_regions(t) -> dict[str, np.ndarray]:
    v = t.mesh.vertices.astype(np.float64)
    n_skin = t.skin_count
    p = v[:n_skin]
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    E = H.EYE_CENTER
    out: dict[str, np.ndarray] = {}

    def put(name, mask_r, mask_l):
        out[name + "_r"] = np.flatnonzero(mask_r)
        out[name + "_l"] = np.flatnonzero(mask_l)
        out[name] = np.union1d(out[name + "_r"], out[name + "_l"])

    def sided(fn):
        return fn(+1.0) & (x > 0), fn(-1.0) & (x < 0)

    tags, side = t.lid_tags, t.side

    put("upper_lid_margin", (tags == 1) & (side > 0), (tags == 1) & (side < 0))
    put("lower_lid_margin", (tags == 2) & (side > 0), (tags == 2) & (side < 0))

    def lid(sign, upper):
        s, ang, rad = eye_local(p, sign)
        a_up, a_lo = margin_angles(s)
        near = (np.abs(s) < 1.05) & (rad < H.LID_R + 0.004) & (p[:, 2] > E[2])
        if upper:
            return near & (ang >= a_up - 1e-3) & (ang < a_up + 0.75)
        return near & (ang <= a_lo + 1e-3) & (ang > a_lo - 0.6)

    put("upper_lid", *sided(lambda sg: lid(sg, True)))
    put("lower_lid", *sided(lambda sg: lid(sg, False)))

    def brow(sign):
        u = (sign * x - E[0] - 0.002) / 0.021
        yc = E[1] + 0.0175 + 0.004 * (1 - u * u) - 0.002 * u
        return (np.abs(u) < 1.0) & (np.abs(y - yc) < 0.0048 * (1 - 0.35 * u)) & (z > 0.045)

    put("brow", *sided(brow))
    put("crows_feet", *sided(lambda sg: (np.hypot(sg * x - E[0] - 0.020, y - E[1]) < 0.011)
                             & (sg * x > E[0] + 0.013) & (z > 0.03)))

    def cheek(sign):
        return ((sign * x > 0.018) & (sign * x < 0.060) & (y > E[1] - 0.046)
                & (y < E[1] - 0.010) & (z > 0.035) & (np.hypot(x, 0) > 0.0))

    put("cheek", *sided(cheek))
    put("nose_wing", *sided(lambda sg: (np.linalg.norm(p - (sg * 0.0125, -0.0295, 0.097), axis=1)
                                        < 0.0075) & (z > 0.088)))
    put("mouth_corner", *sided(lambda sg: (np.hypot(sg * x - H.MOUTH_HALF_W, y - H.MOUTH_Y) < 0.0065)
                               & (z > 0.07)))
    out["glabella"] = np.flatnonzero((np.abs(x) < 0.013) & (y > E[1] + 0.004) & (y < E[1] + 0.032)
                                     & (z > 0.07))
    out["forehead"] = np.flatnonzero((np.abs(x) < 0.05) & (y > E[1] + 0.030) & (y < 0.085)
                                     & (z > 0.04))
    out["nose_bridge"] = np.flatnonzero((np.abs(x) < 0.0095) & (y > -0.012) & (y < E[1] + 0.008)
                                        & (z > 0.078))
    out["nose_tip"] = np.flatnonzero(np.linalg.norm(p - (0, -0.025, 0.112), axis=1) < 0.0095)
    ml = H._mouth_line(x)
    out["upper_lip"] = np.flatnonzero((np.abs(x) < 0.026) & (y >= ml - 1e-4) & (y < -0.039)
                                      & (z > 0.08))
    out["lower_lip"] = np.flatnonzero((np.abs(x) < 0.024) & (y < ml + 1e-4) & (y > -0.073)
                                      & (z > 0.08))
    out["chin"] = np.flatnonzero((np.abs(x) < 0.022) & (y < -0.074) & (y > -0.11) & (z > 0.055))
    out["neck"] = np.flatnonzero(y < -0.105)
    out["scalp"] = np.flatnonzero((y > 0.075) | ((z < -0.02) & (y > -0.03)))
    out["face"] = np.flatnonzero((z > 0.03) & (y > -0.105) & (y < 0.085) & (np.abs(x) < 0.068))
    for name, sl in t.part_slices.items():
        if name != "skin":
            out[name] = np.arange(sl.start, sl.stop)
    out["eyeball"] = np.union1d(out["eyeball_r"], out["eyeball_l"])
    out["ear"] = np.union1d(out["ear_r"], out["ear_l"])
    return {k: np.asarray(v_, np.int64) for k, v_ in out.items()}
