"""The built-in procedural head: template mesh, UV layout and named regions.

Written from scratch so that the product runs with no licensed face model. The skin is an
SDF sculpture (smooth unions of ellipsoids and cones) sampled along a blue-noise set of
directions from the head centre: denser on the face, with exact vertex rows on the eyelid
margins, the mouth line and the neck cut, mirrored so that the template is exactly
symmetric. The directions are triangulated on the sphere (their convex hull is the
spherical Delaunay triangulation), the eye openings and the mouth slit are cut out, and each
direction is ray-marched to the surface. Eyeballs (with iris), ears and a dark mouth cavity
are separate parametric parts of the same mesh.

Coordinates are metres: x towards the subject's left (image right in a frontal view),
y up, z out of the face; the origin is the middle of the head at about ear level.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, cKDTree

from faces import sdf as S
from faces.geometry import Mesh, smoothstep

# ---- landmarks of the template (metres) ---------------------------------------------------
EYE_CENTER = np.array([0.0315, 0.016, 0.064])  # right-hand (+x) eyeball centre; mirrored
EYE_AX = 0.0148  # eyeball semi-axis along x (the eyeball is a spheroid about the x axis)
EYE_R = 0.0120  # eyeball radius in the y-z plane
LID_R = 0.0133  # lid shell radius in the y-z plane (eyeball + lid thickness)
LID_AX = EYE_AX + 0.0013
FISSURE_HALF_W = 0.0128  # half width of the eye opening (canthus to centre)
FISSURE_UP = 0.0052  # upper lid margin height above the eye centre line
FISSURE_DN = 0.0040  # lower lid margin depth below it
CANTHAL_TILT = 0.0012  # lateral canthus higher than medial
MOUTH_Y = -0.0575
MOUTH_HALF_W = 0.0245
NECK_CUT_ELEV = np.deg2rad(-68.0)  # the bust ends at this elevation (seen from the centre)
EAR_CENTER = np.array([0.0745, 0.010, -0.008])


def head_sdf(p: np.ndarray) -> np.ndarray:
    """Signed distance of the skin surface (both halves, symmetric in x)."""
    q = p.copy()
    q[:, 0] = np.abs(q[:, 0])  # sculpt one side; mirror
    d = S.ellipsoid(q, (0, 0.030, -0.012), (0.0735, 0.0955, 0.0985))  # cranium
    d = S.smin(d, S.ellipsoid(q, (0, -0.012, 0.024), (0.0625, 0.083, 0.066)), 0.02)  # face mass
    d = S.smin(d, S.ellipsoid(q, (0, -0.058, 0.026), (0.0515, 0.042, 0.057)), 0.02)  # jaw
    d = S.smin(d, S.ellipsoid(q, (0.0, -0.084, 0.069), (0.021, 0.017, 0.019)), 0.014)  # chin
    d = S.smin(d, S.ellipsoid(q, (0.045, 0.000, 0.050), (0.021, 0.015, 0.024)), 0.012)  # cheekbone
    d = S.smin(d, S.ellipsoid(q, (0.028, 0.034, 0.067), (0.025, 0.0100, 0.012)), 0.014)  # brow
    d = S.smin(d, S.ellipsoid(q, (0.0, -0.050, 0.068), (0.034, 0.030, 0.024)), 0.015)  # muzzle
    # eye socket, carved before the lid shell is added back
    d = S.smax(d, -S.ellipsoid(q, EYE_CENTER + (0.0, 0.003, 0.020), (0.019, 0.0135, 0.0105)),
               0.009)
    d = S.smin(d, S.ellipsoid(q, EYE_CENTER, (LID_AX, LID_R, LID_R)), 0.005)  # lids
    # nose: ridge, tip, wings, columella
    d = S.smin(d, S.round_cone(q, (0, 0.024, 0.079), (0, -0.021, 0.103), 0.0055, 0.0080), 0.008)
    d = S.smin(d, S.ellipsoid(q, (0.0, -0.025, 0.1035), (0.0095, 0.0085, 0.0090)), 0.006)
    d = S.smin(d, S.ellipsoid(q, (0.0125, -0.0295, 0.0925), (0.0062, 0.0060, 0.0075)), 0.006)
    d = S.smin(d, S.ellipsoid(q, (0.0, -0.0320, 0.0965), (0.0055, 0.0040, 0.0075)), 0.005)
    # lips
    d = S.smin(d, S.ellipsoid(q, (0.0, -0.0520, 0.0890), (0.0245, 0.0078, 0.0100)), 0.006)
    d = S.smin(d, S.ellipsoid(q, (0.0, -0.0640, 0.0880), (0.0220, 0.0078, 0.0100)), 0.005)
    d = S.smin(d, S.round_cone(q, (0, -0.03, -0.020), (0, -0.30, -0.020), 0.055, 0.058), 0.03)
    return d


# ---- sampling ------------------------------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _spacing(dirs: np.ndarray) -> np.ndarray:
    """Wanted vertex spacing (metres) per direction: fine on the features, coarse behind."""
    az = np.arctan2(dirs[:, 0], dirs[:, 2])
    el = np.arcsin(np.clip(dirs[:, 1], -1, 1))
    face = smoothstep(1.25, 0.9, np.abs(az)) * smoothstep(-1.0, -0.8, el) * smoothstep(0.75, 0.55, el)
    h = 5.5e-3 - (5.5e-3 - 2.3e-3) * face
    p = dirs * 0.1
    fine = np.zeros(len(dirs))
    for c, s in (((0.0, 0.030, 0.09), (0.020, 0.014, 1)),  # glabella / nasal root
                 ((0.0, -0.010, 0.10), (0.014, 0.03, 1)),  # nose
                 ((0.032, 0.016, 0.07), (0.026, 0.014, 1)),  # eyes and crow's feet
                 ((-0.032, 0.016, 0.07), (0.026, 0.014, 1)),
                 ((0.0, -0.055, 0.09), (0.03, 0.012, 1))):  # mouth
        d = (p - np.asarray(c) * 0.1 / np.linalg.norm(c)) / (np.asarray(s) * 0.1 / 0.1)
        fine = np.maximum(fine, np.exp(-0.5 * np.sum((d[:, :2]) ** 2, axis=1)))
    return h - (h - 1.45e-3) * fine * face


def _fibonacci(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    y = 1 - 2 * i / n
    r = np.sqrt(1 - y * y)
    th = np.pi * (1 + 5 ** 0.5) * i
    return np.c_[r * np.sin(th), y, r * np.cos(th)]


@dataclass
class EyeFrame:
    """Eye-local description of the right-hand (+x) eye opening."""

    center: np.ndarray

    def margin(self, s: np.ndarray, upper: bool) -> np.ndarray:
        """3-D points of the lid margin at s in [-1 (medial), 1 (lateral)] on the lid shell."""
        s = np.asarray(s, np.float64)
        x = FISSURE_HALF_W * s
        prof = (1 - s * s) ** 0.85
        skew = 1 + 0.18 * s if upper else 1 - 0.1 * s  # upper lid peaks a little medially
        y = (FISSURE_UP if upper else -FISSURE_DN) * prof * (2 - skew) + CANTHAL_TILT * s
        z2 = LID_R ** 2 * (1 - (x / LID_AX) ** 2) - y ** 2
        z = np.sqrt(np.maximum(z2, 1e-10))
        return self.center + np.c_[x, y, z]


def _eye_fissure_contains(dirs: np.ndarray, sign: float, margin_pad: float = 0.0) -> np.ndarray:
    """Directions whose ray passes inside the (sign * x) eye opening."""
    c = EYE_CENTER * np.array([sign, 1, 1])
    # Project each direction onto the plane z = c.z + 0.0125 (in front of the eye), compare
    # with the opening's outline projected the same way.
    zf = c[2] + 0.0125
    t = zf / np.maximum(dirs[:, 2], 1e-6)
    pts = dirs * t[:, None]
    s_grid = np.linspace(-1, 1, 201)
    fr = EyeFrame(EYE_CENTER)
    up, lo = fr.margin(s_grid, True), fr.margin(s_grid, False)

    def proj(q):
        return q * (zf / q[:, 2])[:, None]

    up, lo = proj(up), proj(lo)
    xq = sign * pts[:, 0]
    inside = (xq > up[0, 0]) & (xq < up[-1, 0]) & (dirs[:, 2] > 0.3)
    yu = np.interp(xq, up[:, 0], up[:, 1])
    yl = np.interp(xq, lo[:, 0], lo[:, 1])
    return inside & (pts[:, 1] < yu - margin_pad) & (pts[:, 1] > yl + margin_pad)


def _mouth_line(x: np.ndarray) -> np.ndarray:
    """Height of the mouth line (lips meeting) across the mouth."""
    u = x / MOUTH_HALF_W
    return MOUTH_Y - 0.0012 * u * u + 0.0006 * np.exp(-(u / 0.15) ** 2)


def _towards_surface(xy: np.ndarray) -> np.ndarray:
    """Directions whose surface point has the given front-facing (x, y)."""
    z = np.full(len(xy), 0.09)
    for _ in range(6):
        d = _unit(np.c_[xy, z])
        z = (d * S.march_radial(head_sdf, d)[:, None])[:, 2]
    return _unit(np.c_[xy, z])


def _sample_directions(seed: int = 7):
    """Blue-noise directions for the +x half with the feature curves, then mirrored."""
    rng = np.random.default_rng(seed)
    fixed: list[np.ndarray] = []
    tags: list[np.ndarray] = []  # 0 plain, 1 upper margin, 2 lower margin, 3 mouth up, 4 mouth low, 5 neck
    # Lid margins (both eyes on the +x side only; mirrored later)
    fr = EyeFrame(EYE_CENTER)
    n_m = 36
    s = np.linspace(-1, 1, n_m)
    up = _unit(fr.margin(s, True))
    lo = _unit(fr.margin(s[1:-1], False))
    fixed += [up, lo]
    tags += [np.full(len(up), 1), np.full(len(lo), 2)]
    # Mouth slit rows on the +x half, midline included (x >= 0)
    xm = np.linspace(0, MOUTH_HALF_W, 18)
    gap = 0.00018
    mu = _towards_surface(np.c_[xm[:-1], _mouth_line(xm[:-1]) + gap])
    ml = _towards_surface(np.c_[xm[:-1], _mouth_line(xm[:-1]) - gap])
    corner = _towards_surface(np.c_[xm[-1:], _mouth_line(xm[-1:])])
    fixed += [mu, ml, corner]
    tags += [np.full(len(mu), 3), np.full(len(ml), 4), np.full(1, 3)]
    # Neck cut ring (half) and the midline great circle
    az = np.linspace(0, np.pi, 60)
    ring = np.c_[np.sin(az) * np.cos(NECK_CUT_ELEV), np.full_like(az, np.sin(NECK_CUT_ELEV)),
                 np.cos(az) * np.cos(NECK_CUT_ELEV)]
    fixed.append(ring)
    tags.append(np.full(len(ring), 5))
    fixed_pts = np.concatenate(fixed)
    fixed_tags = np.concatenate(tags)

    # Candidates: dense Fibonacci set on the +x half, above the neck cut, outside eyes/mouth.
    cand = _fibonacci(260_000)
    cand = cand[(cand[:, 0] > 0) & (cand[:, 1] > np.sin(NECK_CUT_ELEV) + 0.004)]
    cand = cand[~_eye_fissure_contains(cand, +1.0, margin_pad=-0.0004)]
    h = _spacing(cand) / 0.1  # angular spacing at ~0.1 m radius
    # Finest classes first, random order within a class: blue noise with graded density.
    key = np.round(h / 0.004) + rng.random(len(cand))
    order = np.argsort(key)
    cand, h = cand[order], h[order]
    tree = cKDTree(cand)
    blocked = np.zeros(len(cand), bool)
    # Fixed points block their neighbourhood; midline: keep candidates off x ~ 0 by a margin.
    hf = _spacing(fixed_pts) / 0.1
    for p, r in zip(fixed_pts, hf):
        blocked[tree.query_ball_point(p, 0.85 * r)] = True
    blocked |= cand[:, 0] < 0.5 * h
    accepted = []
    for i in range(len(cand)):
        if blocked[i]:
            continue
        accepted.append(i)
        blocked[tree.query_ball_point(cand[i], h[i])] = True
    free = cand[accepted]
    # Midline points (x = 0) along the great circle, at the local spacing.
    mid = []
    t = NECK_CUT_ELEV + 0.001
    while t < np.pi - NECK_CUT_ELEV:  # from the throat over the top and down the back
        d = np.array([0.0, np.sin(t), np.cos(t)])
        mid.append(d)
        t += float(_spacing(d[None])[0] / 0.1)
    mid = np.array(mid)
    # Drop midline points that collide with the mouth rows / neck ring (already on x = 0).
    keep = cKDTree(fixed_pts).query(mid)[0] > 0.6 * _spacing(mid) / 0.1
    keep &= mid[:, 1] > np.sin(NECK_CUT_ELEV) + 0.003
    mid = mid[keep]
    # Mirror everything with x > 0
    half = np.concatenate([fixed_pts, free])
    half_tags = np.concatenate([fixed_tags, np.zeros(len(free), int)])
    on_mid = np.abs(half[:, 0]) < 1e-9
    mirror = half[~on_mid] * np.array([-1, 1, 1])
    pts = np.concatenate([half, mirror, mid, [[0.0, -1.0, 0.0]]])
    side = np.concatenate([np.where(on_mid, 0, 1), np.full(len(mirror), -1), np.zeros(len(mid)),
                           [0]]).astype(int)
    all_tags = np.concatenate([half_tags, half_tags[~on_mid], np.zeros(len(mid), int), [6]])
    return _unit(pts), all_tags, side


def _triangulate(dirs: np.ndarray, tags: np.ndarray, side: np.ndarray) -> np.ndarray:
    hull = ConvexHull(dirs)
    f = hull.simplices.astype(np.int64)
    # orient outwards
    c = dirs[f].mean(1)
    n = np.cross(dirs[f[:, 1]] - dirs[f[:, 0]], dirs[f[:, 2]] - dirs[f[:, 0]])
    flip = np.sum(n * c, axis=1) < 0
    f[flip] = f[flip][:, [0, 2, 1]]
    t = tags[f]
    sd = side[f]
    drop = np.any(t == 6, axis=1)  # the fan below the neck cut
    lid = np.isin(t, (1, 2))
    same_side = (sd == sd[:, :1]).all(axis=1)
    drop |= lid.all(axis=1) & same_side  # eye openings
    mouth = np.isin(t, (3, 4))
    drop |= mouth.all(axis=1) & (t == 4).any(axis=1) & (t == 3).any(axis=1)  # mouth slit
    return f[~drop]


# ---- parts ---------------------------------------------------------------------------------

def _eyeball(sign: float, n_polar: int = 18, n_az: int = 28):
    """Spheroid eyeball with a slight corneal bulge; polar axis = +z so the iris is a ring."""
    pol = np.linspace(0, np.pi, n_polar + 1)[1:-1]
    az = np.linspace(0, 2 * np.pi, n_az, endpoint=False)
    P, A = np.meshgrid(pol, az, indexing="ij")
    bulge = 1 + 0.065 * smoothstep(0.55, 0.0, P)
    x = EYE_AX * np.sin(P) * np.cos(A)
    y = EYE_R * np.sin(P) * np.sin(A)
    z = EYE_R * np.cos(P) * bulge
    v = np.c_[x.ravel(), y.ravel(), z.ravel()]
    v = np.r_[[[0, 0, EYE_R * 1.065]], v, [[0, 0, -EYE_R]]]
    pol_all = np.r_[0.0, P.ravel(), np.pi]
    az_all = np.r_[0.0, A.ravel(), 0.0]
    faces = []
    idx = lambda i, j: 1 + i * n_az + (j % n_az)  # noqa: E731
    for j in range(n_az):
        faces.append((0, idx(0, j), idx(0, j + 1)))
        faces.append((len(v) - 1, idx(n_polar - 2, j + 1), idx(n_polar - 2, j)))
    for i in range(n_polar - 2):
        for j in range(n_az):
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j + 1), idx(i + 1, j)
            faces += [(a, d, c), (a, c, b)]
    v = v + EYE_CENTER * np.array([sign, 1, 1])
    # iris-centred disc mapping into the eye patch of the atlas
    rr = pol_all / np.pi
    uv = np.c_[0.5 + 0.5 * rr * np.cos(az_all), 0.5 + 0.5 * rr * np.sin(az_all)]
    return v, np.array(faces, np.int64), uv


def _ear(sign: float, n_r: int = 10, n_a: int = 36):
    """A curled ear sheet: helix rim, concha bowl, lobe; attached to the side of the head."""
    rr = np.linspace(0.0, 1.0, n_r)
    aa = np.linspace(0, 2 * np.pi, n_a, endpoint=False)
    R, A = np.meshgrid(rr, aa, indexing="ij")
    # outline: taller than wide, lobe below, narrower at the bottom
    hy = 0.031 * (1 + 0.08 * np.sin(A))
    hz = 0.017 * (1 - 0.25 * np.clip(-np.sin(A), 0, 1))
    yy = R * hy * np.sin(A)
    zz = R * hz * np.cos(A)
    # lateral offset: bowl in the middle, rolled rim, the whole sheet flares backwards
    bowl = -0.0055 * np.exp(-((R - 0.35) / 0.28) ** 2) * smoothstep(-0.9, -0.2, np.sin(A) + 0.2)
    rim = 0.0040 * np.exp(-((R - 0.92) / 0.09) ** 2)
    flare = 0.011 * R * (0.6 - 0.4 * np.cos(A))
    xx = bowl + rim + flare
    # Tilt a little backwards and place; the sheet's centre sits in the head surface.
    tilt = np.deg2rad(12)
    y2 = yy * np.cos(tilt) - zz * np.sin(tilt)
    z2 = yy * np.sin(tilt) + zz * np.cos(tilt)
    v = np.c_[xx.ravel() - 0.003, y2.ravel(), z2.ravel()]
    v[:, 0] = sign * (v[:, 0] + EAR_CENTER[0])
    v[:, 1] += EAR_CENTER[1]
    v[:, 2] += EAR_CENTER[2]
    faces = []
    idx = lambda i, j: i * n_a + (j % n_a)  # noqa: E731
    for i in range(n_r - 1):
        for j in range(n_a):
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j + 1), idx(i + 1, j)
            if i == 0:
                faces.append((a, c, d))
            else:
                faces += [(a, c, d), (a, b, c)]
    faces = np.array(faces, np.int64)
    if sign < 0:
        faces = faces[:, [0, 2, 1]]
    uv = np.c_[0.5 + 0.45 * R.ravel() * np.cos(A.ravel()), 0.5 + 0.45 * R.ravel() * np.sin(A.ravel())]
    return v, faces, uv


def _mouth_cavity():
    """Dark half-shell behind the lips, seen only when they part."""
    pol = np.linspace(0, np.pi / 2, 7)[1:]
    az = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    P, A = np.meshgrid(pol, az, indexing="ij")
    x = 0.024 * np.sin(P) * np.cos(A)
    y = 0.011 * np.sin(P) * np.sin(A) + MOUTH_Y - 0.002
    z = 0.079 - 0.016 * np.cos(P)
    v = np.r_[[[0, MOUTH_Y - 0.002, 0.079 - 0.016]], np.c_[x.ravel(), y.ravel(), z.ravel()]]
    faces = []
    n_a = len(az)
    idx = lambda i, j: 1 + i * n_a + (j % n_a)  # noqa: E731
    for j in range(n_a):
        faces.append((0, idx(0, j + 1), idx(0, j)))
    for i in range(len(pol) - 1):
        for j in range(n_a):
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j + 1), idx(i + 1, j)
            faces += [(a, b, c), (a, c, d)]
    uv = np.full((len(v), 2), 0.5)
    return v, np.array(faces, np.int64), uv


# ---- UV atlas ------------------------------------------------------------------------------
# Skin occupies v in [0.2, 1]; the strip below holds patches for the eyes, ears and mouth.
ATLAS_PATCH = {"eye": (0.0, 0.0), "ear": (0.2, 0.0), "mouth": (0.4, 0.0)}
PATCH_SIZE = 0.2
_AZ_KNOTS = np.array([-np.pi, -1.25, 1.25, np.pi])
_U_KNOTS = np.array([0.0, 0.14, 0.86, 1.0])  # the front 2.5 rad get 72% of the width
_EL_KNOTS = np.array([NECK_CUT_ELEV - 0.01, -0.95, 0.8, np.pi / 2])
_V_KNOTS = np.array([0.2, 0.28, 0.94, 1.0])


def skin_uv(dirs: np.ndarray) -> np.ndarray:
    """Atlas coordinates of skin directions (face stretched to get most texels)."""
    az = np.arctan2(dirs[:, 0], dirs[:, 2])
    el = np.arcsin(np.clip(dirs[:, 1], -1, 1))
    return np.c_[np.interp(az, _AZ_KNOTS, _U_KNOTS), np.interp(el, _EL_KNOTS, _V_KNOTS)]


def skin_dirs_from_uv(uv: np.ndarray) -> np.ndarray:
    az = np.interp(uv[:, 0], _U_KNOTS, _AZ_KNOTS)
    el = np.interp(uv[:, 1], _V_KNOTS, _EL_KNOTS)
    return np.c_[np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)]


def _corner_uv(faces: np.ndarray, vuv: np.ndarray, wrap: np.ndarray) -> np.ndarray:
    """Per-corner UVs; triangles crossing the back seam get u + 1 (the texture repeats in u)."""
    cu = vuv[faces].copy()
    w = wrap[faces].all(axis=1)
    span = cu[:, :, 0].max(1) - cu[:, :, 0].min(1)
    fix = w & (span > 0.5)
    cu[fix, :, 0] = np.where(cu[fix, :, 0] < 0.5, cu[fix, :, 0] + 1.0, cu[fix, :, 0])
    return cu.astype(np.float32)


# ---- the template --------------------------------------------------------------------------

@dataclass
class HeadTemplate:
    mesh: Mesh  # neutral template with regions
    skin_count: int  # vertices [0, skin_count) are skin; then eyeballs, ears, mouth cavity
    part_slices: dict[str, slice]
    lid_tags: np.ndarray  # 1 upper margin, 2 lower margin, 3/4 mouth rows (skin vertices)
    side: np.ndarray  # +1 / -1 / 0 per skin vertex (x side)
    mirror: np.ndarray  # index of each vertex's mirror image


def _patch_uv(uv: np.ndarray, name: str) -> np.ndarray:
    u0, v0 = ATLAS_PATCH[name]
    return np.c_[u0 + uv[:, 0] * PATCH_SIZE, v0 + uv[:, 1] * PATCH_SIZE]


@functools.lru_cache(maxsize=1)
def build_template() -> HeadTemplate:
    dirs, tags, side = _sample_directions()
    faces = _triangulate(dirs, tags, side)
    r = S.march_radial(head_sdf, dirs)
    skin = dirs * r[:, None]
    # Drop the lone pole vertex below the neck cut (it is in no face now).
    used = np.zeros(len(skin), bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    skin, dirs, tags, side = skin[used], dirs[used], tags[used], side[used]
    faces = remap[faces]
    vuv = skin_uv(dirs)
    cuv = _corner_uv(faces, vuv, np.ones(len(skin), bool))

    verts, fl, uvl = [skin], [faces], [cuv]
    slices = {"skin": slice(0, len(skin))}
    n = len(skin)
    for name, (v, f, uv), patch in (
            ("eyeball_r", _eyeball(+1), "eye"), ("eyeball_l", _eyeball(-1), "eye"),
            ("ear_r", _ear(+1), "ear"), ("ear_l", _ear(-1), "ear"),
            ("mouth_cavity", _mouth_cavity(), "mouth")):
        verts.append(v)
        fl.append(f + n)
        uvl.append(_patch_uv(uv, patch)[f])
        slices[name] = slice(n, n + len(v))
        n += len(v)
    V = np.concatenate(verts).astype(np.float32)
    F = np.concatenate(fl).astype(np.int32)
    CUV = np.concatenate(uvl).astype(np.float32)
    mirror = _mirror_index(V)
    mesh = Mesh(V, F, CUV)
    t = HeadTemplate(mesh, len(skin), slices, tags, side, mirror)
    from faces.regions import compute_regions  # regions need the finished template

    mesh.regions.update(compute_regions(t))
    return t


def _mirror_index(v: np.ndarray) -> np.ndarray:
    m = v * np.array([-1, 1, 1])
    d, idx = cKDTree(v).query(m)
    return idx.astype(np.int64)
