"""FACS action-unit rig for the built-in head.

Each AU is a displacement field over the template at full intensity (FACS E = 5), scaled
by a slightly concave intensity curve so that trace (A = 1) is already visible, plus eyelid
motion done as rotation about the eyeball's horizontal axis so that lids slide over the
globe: AU43 closes the eye, AU6/AU7 raise the lower lid, AU4/AU7 lower the upper lid a
little. Fields are anatomically directed (see ``_fields``) and include the wrinkles a FACS
coder looks for: glabellar furrows (AU4), crow's feet (AU6), nasal-root wrinkles (AU9) and a
deeper nasolabial furrow (AU9, AU10).

Intensities are 0-5 and combine additively; AU43 is a closure fraction (0 open, >= 1
closed), as in PSPI where it is binary.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from faces import builtin_head as H
from faces.geometry import gauss, gauss_mirrored, rotation_x, smoothstep, vertex_normals
from faces.regions import eye_local, margin_angles

from faces.au import EXTRA_AUS, PSPI_AUS  # noqa: E402

RIG_AUS = PSPI_AUS + EXTRA_AUS
LINEAR_AUS = ("AU4", "AU6", "AU7", "AU9", "AU10", "AU12", "AU25")


def intensity_curve(i) -> np.ndarray:
    """FACS 0-5 to the fraction of the full-intensity displacement."""
    return (np.clip(np.asarray(i, np.float64), 0.0, 5.0) / 5.0) ** 0.8



def _lid_zone(p: np.ndarray) -> np.ndarray:
    """1 on the lid skin around each eye opening (moved by rotation, not by fields)."""
    out = np.zeros(len(p))
    for sign in (1.0, -1.0):
        s, ang, rad = eye_local(p, sign)
        w = (smoothstep(H.LID_R + 0.014, H.LID_R + 0.0012, rad) * smoothstep(1.35, 1.0, np.abs(s))
             * smoothstep(H.EYE_CENTER[2] - 0.002, H.EYE_CENTER[2] + 0.003, p[:, 2]) * (sign * p[:, 0] > 0))
        out = np.maximum(out, w)
    return out


def _fields(p: np.ndarray, n: np.ndarray, regions: dict) -> dict[str, np.ndarray]:
    """Displacements (V, 3) in metres at intensity 5, on the template."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ax = np.abs(x)
    sgn = np.tanh(x / 0.006)
    E = H.EYE_CENTER
    free = 1.0 - _lid_zone(p)  # lid skin moves by rotation only
    face = smoothstep(0.03, 0.06, z)
    # 1 above the lips' meeting line, 0 below: the slit lets upper-lip fields stop there
    above_mouth = smoothstep(-0.0004, 0.0004, y - H._mouth_line(np.clip(x, -H.MOUTH_HALF_W, H.MOUTH_HALF_W)))
    F: dict[str, np.ndarray] = {}

    def vec(dx=0.0, dy=0.0, dz=0.0):
        return np.stack([dx + 0 * x, dy + 0 * x, dz + 0 * x], 1)

    def along_n(a):
        return n * np.asarray(a)[:, None]

    # AU4 brow lowerer: brows down and together (inner part most), glabella bunches,
    # vertical furrows between the brows and a transverse line at the nasal root.
    brow = gauss_mirrored(p, (0.024, E[1] + 0.018, 0.075), (0.019, 0.012, 0.03)) * free * face
    brow = np.maximum(brow, 0.45 * smoothstep(0.085, 0.04, y) * smoothstep(0.03, 0.045, y)
                      * smoothstep(0.05, 0.02, ax) * face)
    medial = 1.15 - 0.45 * smoothstep(0.008, 0.045, ax)
    glab = gauss(p, (0, E[1] + 0.016, 0.085), (0.011, 0.012, 0.03))
    furrow_y = smoothstep(E[1] + 0.004, E[1] + 0.012, y) * smoothstep(E[1] + 0.034, E[1] + 0.024, y)
    furrows = np.exp(-((ax - 0.0058) / 0.0017) ** 2) * furrow_y * (z > 0.07)
    root_line = np.exp(-((y - (E[1] + 0.004)) / 0.0017) ** 2) * smoothstep(0.012, 0.006, ax) * (z > 0.08)
    F["AU4"] = (vec(dx=-0.0038 * sgn * brow * medial, dy=-0.0068 * brow * medial,
                    dz=0.0012 * glab)
                + along_n(-0.0012 * furrows - 0.0007 * root_line + 0.0005 * glab * (1 - furrows)))

    # AU6 cheek raiser: infraorbital cheeks up and forward, skin around the eye drawn in,
    # lateral brow lowered a little, crow's feet fanning from the outer canthus.
    cheek = gauss_mirrored(p, (0.036, E[1] - 0.028, 0.07), (0.022, 0.020, 0.03)) * free
    orbit_lat = gauss_mirrored(p, (E[0] + 0.020, E[1], 0.06), (0.008, 0.014, 0.03)) * free
    lat_brow = gauss_mirrored(p, (E[0] + 0.014, E[1] + 0.018, 0.07), (0.01, 0.008, 0.03)) * free
    # the raised cheek bunches into a roll under the lower lid (the infraorbital furrow)
    roll = gauss_mirrored(p, (0.030, E[1] - 0.013, 0.075), (0.012, 0.004, 0.03)) * free
    furrow = gauss_mirrored(p, (0.030, E[1] - 0.018, 0.075), (0.013, 0.0022, 0.03)) * free
    cf = np.zeros_like(x)
    for sign in (1.0, -1.0):
        cx, cy = sign * (E[0] + 0.016), E[1]
        ang = np.arctan2(y - cy, sign * (x - cx))
        r = np.hypot(x - cx, y - cy)
        fan = (0.5 + 0.5 * np.cos(ang * 10)) ** 3 * smoothstep(0.003, 0.006, r) * smoothstep(0.016, 0.009, r)
        cf += fan * (sign * (x - cx) > -0.001) * (np.abs(ang) < 1.1) * (sign * x > 0)
    F["AU6"] = (vec(dx=-0.0018 * sgn * orbit_lat, dy=0.0072 * cheek - 0.0012 * lat_brow,
                    dz=0.0030 * cheek)
                + along_n(-0.0014 * cf + 0.0004 * orbit_lat + 0.0016 * cheek + 0.0010 * roll
                          - 0.0008 * furrow))

    # AU7 lid tightener: mostly the lid rotation; the lower lid skin bulges with tension.
    below = np.zeros_like(x)
    for sign in (1.0, -1.0):
        s, ang, rad = eye_local(p, sign)
        _, a_lo = margin_angles(s)
        below = np.maximum(below, np.exp(-((ang - (a_lo - 0.22)) / 0.12) ** 2)
                           * smoothstep(1.1, 0.7, np.abs(s)) * (rad < H.LID_R + 0.006)
                           * (z > E[2]) * (sign * x > 0))
    F["AU7"] = along_n(0.0008 * below) + vec(dy=0.0012 * below)

    # AU9 nose wrinkler: skin of the nose sides and the wings pulled up, transverse wrinkles
    # over the nasal root, upper lip lifted a little, inner brows pulled down.
    nose_side = gauss_mirrored(p, (0.012, -0.012, 0.09), (0.008, 0.016, 0.03))
    wings = gauss_mirrored(p, (0.0125, -0.0295, 0.095), (0.008, 0.007, 0.02))
    infra = gauss_mirrored(p, (0.022, -0.02, 0.085), (0.01, 0.012, 0.03)) * free
    bridge_win = (smoothstep(0.014, 0.007, ax) * smoothstep(E[1] - 0.016, E[1] - 0.008, y)
                  * smoothstep(E[1] + 0.014, E[1] + 0.006, y) * (z > 0.075))
    wrinkles = np.clip(np.sin((y - E[1]) / 0.0032 * np.pi), 0, 1) ** 2 * bridge_win
    upper_lip = gauss(p, (0, H.MOUTH_Y + 0.007, 0.092), (0.018, 0.008, 0.02)) * above_mouth
    inner_brow = gauss_mirrored(p, (0.012, E[1] + 0.016, 0.08), (0.008, 0.008, 0.03)) * free
    tip = gauss(p, (0.0, -0.030, 0.100), (0.010, 0.008, 0.03))  # columella and nostrils
    F["AU9"] = (vec(dx=0.0014 * sgn * wings, dy=0.0062 * np.maximum(nose_side * 0.7, wings)
                    + 0.0030 * tip + 0.0022 * infra + 0.0008 * upper_lip - 0.0025 * inner_brow,
                    dz=-0.0010 * wings)
                + along_n(-0.0011 * wrinkles))

    # AU10 upper lip raiser: upper lip up (centre most) and slightly everted, nasolabial
    # furrow deepened with the cheek bulging beside it, wings lifted a little.
    ul = gauss(p, (0, H.MOUTH_Y + 0.004, 0.092), (0.016, 0.007, 0.02)) * smoothstep(-0.032, -0.04, y)
    ul_row = np.zeros_like(x)
    up_rows = regions.get("_mouth_upper_rows")
    if up_rows is not None:
        ul_row[up_rows] = np.exp(-(x[up_rows] / 0.016) ** 2)
    ul = np.maximum(ul, ul_row) * above_mouth
    nl = np.zeros_like(x)
    for sign in (1.0, -1.0):
        t = np.clip((-0.030 - y) / 0.032, 0, 1)  # from the wing down to beside the mouth corner
        line_x = 0.0195 + 0.012 * t
        nl += (np.exp(-((sign * x - line_x) / 0.0022) ** 2) * smoothstep(-0.026, -0.032, y)
               * smoothstep(-0.068, -0.058, y) * (sign * x > 0) * (z > 0.06))
    bulge = gauss_mirrored(p, (0.032, -0.04, 0.08), (0.008, 0.012, 0.03))
    F["AU10"] = (vec(dy=0.0074 * ul + 0.0012 * wings, dz=0.0014 * ul)
                 + along_n(-0.0013 * nl + 0.0012 * bulge))
    F["AU9"] += along_n(-0.0008 * nl + 0.0006 * bulge)

    # AU12 lip corner puller: corners up, out and back; cheeks lifted.
    corner = gauss_mirrored(p, (H.MOUTH_HALF_W, H.MOUTH_Y, 0.08), (0.009, 0.008, 0.03))
    F["AU12"] = (vec(dx=0.004 * sgn * corner, dy=0.0042 * corner + 0.0015 * cheek,
                     dz=-0.002 * corner) + along_n(-0.0008 * nl + 0.0006 * bulge))

    # AU25 lips part: lower lip down, upper lip up a little (the slit opens).
    mouth = gauss(p, (0, H.MOUTH_Y, 0.09), (0.02, 0.02, 0.03))
    lower_side = smoothstep(0.0, -0.0006, y - H._mouth_line(x))
    F["AU25"] = vec(dy=mouth * (-0.0032 * lower_side + 0.0008 * (1 - lower_side)))
    return F


@dataclass
class _LidGeometry:
    side: np.ndarray  # +1 / -1 / 0 per vertex
    gap: np.ndarray  # neutral angular gap between margins at the vertex's fissure position
    s: np.ndarray  # position along the fissure (-1 medial .. 1 lateral)
    w_up: np.ndarray
    w_lo: np.ndarray


def _lid_geometry(p: np.ndarray, n_skin: int) -> _LidGeometry:
    side = np.zeros(len(p))
    gap = np.zeros(len(p))
    s_all = np.zeros(len(p))
    w_up = np.zeros(len(p))
    w_lo = np.zeros(len(p))
    zone = _lid_zone(p)
    zone[n_skin:] = 0.0  # eyeballs and ears never rotate with the lids
    for sign in (1.0, -1.0):
        s, ang, rad = eye_local(p, sign)
        a_up, a_lo = margin_angles(s)
        mine = (sign * p[:, 0] > 0) & (zone > 0)
        side[mine] = sign
        g = np.maximum(a_up - a_lo, 0.0) * smoothstep(1.0, 0.97, np.abs(s))
        gap[mine] = g[mine]
        s_all[mine] = s[mine]
        upper_side = ang > 0.5 * (a_up + a_lo)  # margin vertices sit a hair off the outline
        up = smoothstep(a_up + 0.95, a_up + 0.12, ang) * upper_side
        lo = smoothstep(a_lo - 0.75, a_lo - 0.08, ang) * ~upper_side
        w_up[mine] = (up * zone)[mine]
        w_lo[mine] = (lo * zone)[mine]
    return _LidGeometry(side, gap, s_all, w_up, w_lo)


@dataclass
class RigBasis:
    fields: dict[str, np.ndarray]
    lids: _LidGeometry
    eye_offset: dict[str, np.ndarray]  # template eyeball centroid minus the eye centre
    jaw_weight: np.ndarray


@functools.lru_cache(maxsize=1)
def rig_basis() -> RigBasis:
    t = H.build_template()
    p = t.mesh.vertices.astype(np.float64)
    n = vertex_normals(p, t.mesh.faces).astype(np.float64)
    regions = dict(t.mesh.regions)
    regions["_mouth_upper_rows"] = np.flatnonzero(t.lid_tags == 3)
    fields = _fields(p, n, regions)
    skin_only = np.zeros(len(p))
    skin_only[: t.skin_count] = 1.0
    skin_only[t.part_slices["ear_r"]] = 1.0
    skin_only[t.part_slices["ear_l"]] = 1.0
    for k in fields:
        fields[k] = (fields[k] * skin_only[:, None]).astype(np.float32)
    lids = _lid_geometry(p, t.skin_count)
    offs = {}
    for part, sign in (("eyeball_r", 1.0), ("eyeball_l", -1.0)):
        offs[part] = p[t.part_slices[part]].mean(0) - H.EYE_CENTER * [sign, 1, 1]
    # Jaw drop (AU26) rotates the lower face about the jaw joints.
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ml = H._mouth_line(np.clip(x, -H.MOUTH_HALF_W, H.MOUTH_HALF_W))
    # Sharp split at the lips (the slit), a wide stretch zone over the cheeks.
    width = 0.0003 + 0.02 * smoothstep(H.MOUTH_HALF_W - 0.003, H.MOUTH_HALF_W + 0.014, np.abs(x))
    jaw = (smoothstep(ml + width, ml - width, y) * smoothstep(-0.04, 0.0, z)
           * smoothstep(-0.135, -0.10, y))
    jaw[t.skin_count:] = 0.0
    jaw[t.part_slices["mouth_cavity"]] = 0.5
    return RigBasis(fields, lids, offs, jaw.astype(np.float32))


def _eye_centers(vertices: np.ndarray, t, basis: RigBasis) -> dict[float, np.ndarray]:
    out = {}
    for part, sign in (("eyeball_r", 1.0), ("eyeball_l", -1.0)):
        out[sign] = vertices[t.part_slices[part]].mean(0) - basis.eye_offset[part]
    return out


def normalize_aus(aus: dict[str, float]) -> dict[str, float]:
    unknown = set(aus) - set(RIG_AUS)
    if unknown:
        raise ValueError(f"the built-in rig has no {sorted(unknown)}; it supports {list(RIG_AUS)}")
    out = {}
    for k in RIG_AUS:
        v = float(aus.get(k, 0.0))
        if not np.isfinite(v) or v < 0 or v > 5:
            raise ValueError(f"{k} intensity {v} is outside 0-5")
        out[k] = v
    return out


def apply_aus(neutral: np.ndarray, aus: dict[str, float]) -> np.ndarray:
    """Rig a neutral built-in mesh (V, 3) to an AU configuration; returns new vertices."""
    aus = normalize_aus(aus)
    t = H.build_template()
    b = rig_basis()
    v = neutral.astype(np.float64).copy()
    m = {k: float(intensity_curve(aus[k])) for k in RIG_AUS}
    for k in LINEAR_AUS:
        if m[k] > 0:
            v += m[k] * b.fields[k]
    # Eyelids: angles as fractions of each vertex's neutral margin gap.
    lids = b.lids
    lo_frac = min(0.45, 0.30 * m["AU6"] + 0.40 * m["AU7"] + 0.12 * m["AU9"])
    squint = min(0.3, 0.12 * m["AU4"] + 0.10 * m["AU7"] + 0.08 * m["AU6"] + 0.05 * m["AU9"])
    close = float(np.clip(aus["AU43"], 0.0, 1.0))
    # Closed lids stop just short of each other; more so towards the canthi, where the few
    # triangles between the margins would otherwise be squeezed flat.
    corner = smoothstep(0.55, 0.98, np.abs(lids.s))
    eps = 0.03 + 0.4 * corner + 0.35 * smoothstep(0.8, 0.93, np.abs(lids.s))
    lo = lo_frac * (1 - 0.6 * corner)
    up_frac = squint + close * np.maximum(0.0, 1.0 - lo - squint - eps)
    theta = lids.gap * (up_frac * lids.w_up - lo * lids.w_lo)
    if np.any(theta != 0):
        centers = _eye_centers(v, t, b)
        for sign in (1.0, -1.0):
            idx = np.flatnonzero((lids.side == sign) & (theta != 0))
            c = centers[sign]
            R = rotation_x(theta[idx])
            v[idx] = np.einsum("nij,nj->ni", R, v[idx] - c) + c
    if aus["AU26"] > 0:  # jaw drop: rotate about the jaw joints, weighted
        ang = np.deg2rad(7.0) * intensity_curve(aus["AU26"]) * b.jaw_weight
        pivot = np.array([0.0, -0.005, -0.012])
        R = rotation_x(-ang)  # negative: the chin goes down and back
        v = np.einsum("nij,nj->ni", R, v - pivot) + pivot
    return v.astype(np.float32)


# Where each PSPI AU acts on the built-in head (faces.regions names): what a learned rig's
# per-AU motion is measured over.
AU_REGIONS = {"AU4": "brow", "AU6": "cheek", "AU7": "lower_lid", "AU9": "nose_wing",
              "AU10": "upper_lip", "AU43": "upper_lid"}


def region_motion(neutral: np.ndarray, posed: np.ndarray) -> dict[str, float]:
    """Mean vertex displacement (mm) between two built-in meshes over each AU's region."""
    regions = H.build_template().mesh.regions
    d = np.linalg.norm(np.asarray(posed, np.float64) - neutral, axis=1) * 1000.0
    return {au: float(d[regions[r]].mean()) for au, r in AU_REGIONS.items()}
