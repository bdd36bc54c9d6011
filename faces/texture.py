"""Procedural UV albedo for the built-in head, from the identity's demographics.

Every feature is defined on the template surface in 3-D (via a position map baked once per
atlas size), so it lands where the rig and regions expect it: skin tone by ethnicity,
age (darkening, wrinkles, spots), lips and the mouth line, brows, lash line, nostrils,
iris/pupil/sclera, and low-amplitude skin detail.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
from scipy import ndimage

from faces import builtin_head as H
from faces.demographics import Demographics
from faces.geometry import gauss, gauss_mirrored, smoothstep
from faces.regions import eye_local, margin_angles

# Light and dark anchors of skin albedo (sRGB, 0-1) per group; an identity lies between.
_SKIN = {
    "White": ((0.93, 0.78, 0.70), (0.80, 0.60, 0.50)),
    "East Asian": ((0.93, 0.80, 0.68), (0.78, 0.62, 0.48)),
    "South Asian": ((0.76, 0.57, 0.43), (0.50, 0.34, 0.24)),
    "Black": ((0.56, 0.38, 0.28), (0.28, 0.18, 0.13)),
    "Middle Eastern": ((0.86, 0.68, 0.54), (0.68, 0.50, 0.38)),
    "Latino": ((0.87, 0.69, 0.55), (0.62, 0.45, 0.33)),
}
_IRIS = {"brown": (0.30, 0.17, 0.08), "dark": (0.16, 0.09, 0.05), "hazel": (0.45, 0.35, 0.15),
         "green": (0.30, 0.42, 0.25), "blue": (0.30, 0.45, 0.62), "grey": (0.45, 0.50, 0.55)}
_IRIS_P = {"White": {"blue": .3, "green": .15, "hazel": .15, "brown": .3, "grey": .1},
           "Latino": {"brown": .6, "dark": .25, "hazel": .15},
           "Middle Eastern": {"brown": .6, "dark": .25, "hazel": .1, "green": .05}}


def _lerp(a, b, t):
    return np.asarray(a) + (np.asarray(b) - np.asarray(a)) * t


@functools.lru_cache(maxsize=4)
def position_map(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Template surface point behind every skin texel (gaps filled from the nearest texel)."""
    from faces.render import get_renderer

    t = H.build_template()
    pos, covered = get_renderer().bake_uv(t.mesh, t.mesh.vertices, size)
    pos = pos[..., :3]
    idx = ndimage.distance_transform_edt(~covered, return_distances=False, return_indices=True)
    return pos[idx[0], idx[1]], covered


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise in texture space, unit variance-ish."""
    g = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)


def _skin_tone(demo: Demographics, rng: np.random.Generator) -> np.ndarray:
    light, dark = _SKIN[demo.ethnicity]
    c = _lerp(light, dark, rng.beta(2.0, 2.0))
    c = c * (1 + 0.03 * rng.standard_normal(3))  # small hue jitter
    if demo.age_group == "elderly":
        c = c * 0.95 + 0.02 * np.array([0.1, 0.08, -0.05])
    return np.clip(c, 0.05, 1.0)


def _hair_color(demo: Demographics, rng: np.random.Generator) -> np.ndarray:
    if demo.age_group == "elderly" and rng.random() < 0.7:
        return np.array([0.55, 0.53, 0.50]) * rng.uniform(0.6, 1.1)
    if demo.ethnicity == "White" and rng.random() < 0.35:
        return np.array([0.45, 0.32, 0.18]) * rng.uniform(0.7, 1.3)
    return np.array([0.12, 0.08, 0.06]) * rng.uniform(0.6, 1.4)


@functools.lru_cache(maxsize=2)
def _layout(size: int) -> dict:
    """Every mask of the atlas that depends on the template only, not on the identity:
    computed once per atlas size (most of make_texture's arithmetic), read-only after."""
    P, _ = position_map(size)
    x, y, z = P[..., 0], P[..., 1], P[..., 2]

    def g(c, s):
        return gauss(P, c, s)

    def g2(c, s):
        return gauss_mirrored(P, c, s)

    front = smoothstep(0.02, 0.05, z)
    L = {"front": front, "tone": [
        (g2((0.04, -0.02, 0.07), (0.018, 0.016, 0.03)) * 0.6, (1.03, 0.93, 0.93)),
        (g((0, -0.02, 0.11), (0.008, 0.012, 0.02)) * 0.5, (1.02, 0.92, 0.92)),
        (g2(H.EYE_CENTER + (0, -0.012, 0.012), (0.013, 0.006, 0.02)) * 0.5, (0.88, 0.85, 0.88)),
        (g2(H.EYE_CENTER + (0, 0.0, 0.01), (0.022, 0.016, 0.03)) * 0.7, (0.86, 0.83, 0.86))]}
    L["beard"] = (smoothstep(-0.035, -0.055, y) * front * smoothstep(0.07, 0.05, np.abs(x))
                  * (1 - g((0, H.MOUTH_Y, 0.09), (0.022, 0.008, 0.03))))
    # lips (vermilion), the mouth line and the nostrils
    xm = np.clip(np.abs(x) / 0.0245, 0, 1)
    ml = H._mouth_line(x)
    top = ml + 0.0082 * (1 - xm ** 2) ** 0.55 - 0.0012 * np.exp(-(x / 0.003) ** 2)
    bot = ml - 0.0098 * (1 - np.clip(np.abs(x) / 0.0235, 0, 1) ** 2) ** 0.6
    lips = smoothstep(top + 0.0006, top - 0.0006, y) * smoothstep(bot - 0.0006, bot + 0.0006, y)
    L["lips"] = lips * ((np.abs(x) < 0.026) * smoothstep(0.07, 0.08, z))
    L["mouth_line"] = np.exp(-((y - ml) / 0.00055) ** 2) * (np.abs(x) < 0.025) * (z > 0.075)
    L["nostril"] = smoothstep(0.3, 0.7, g2((0.0065, -0.0335, 0.099), (0.0032, 0.0018, 0.004)))
    L["eyes"] = {sign: _eye_layout(P, size, sign) for sign in (1.0, -1.0)}
    L["age"] = _age_layout(x, y, z, front)
    return L


def _eye_layout(P: np.ndarray, size: int, sign: float) -> dict:
    """Brow geometry, lash line, lower lid and crease masks of one side."""
    x, y, z = P[..., 0], P[..., 1], P[..., 2]
    u = (sign * x - H.EYE_CENTER[0] - 0.002) / 0.021
    yc = H.EYE_CENTER[1] + 0.0175 + 0.004 * (1 - u * u) - 0.002 * u
    out = {"thick": 0.0042 * (1 - 0.45 * np.clip(u, -1, 1)),
           "brow_u": smoothstep(1.05, 0.85, np.abs(u)), "brow_dy": np.abs(y - yc),
           "brow_side": (sign * x > 0) * (z > 0.045)}
    s, ang, rad = eye_local(P.reshape(-1, 3), sign)
    s, ang, rad = (a.reshape(size, size) for a in (s, ang, rad))
    a_up, a_lo = (a.reshape(size, size) for a in margin_angles(s.ravel()))
    near = (np.abs(s) < 1.12) * (rad < H.LID_R + 0.004) * (z > H.EYE_CENTER[2]) * (sign * x > 0)
    lash = near * smoothstep(0.16, 0.0, ang - a_up) * (ang > a_up - 0.05)  # lash line
    out["lash"] = lash * smoothstep(1.12, 0.9, np.abs(s))
    low = near * smoothstep(-0.05, 0.0, ang - a_lo) * (ang < a_lo + 0.02)
    out["low"] = low * smoothstep(1.1, 0.8, np.abs(s))
    out["crease"] = (near * np.exp(-((ang - a_up - 0.38) / 0.05) ** 2)
                     * smoothstep(1.1, 0.6, np.abs(s)))
    return out


def _age_layout(x, y, z, front) -> dict:
    """Forehead lines, crow's feet and nasolabial folds (drawn on elderly identities)."""
    fh = (smoothstep(0.035, 0.045, y) * smoothstep(0.08, 0.07, y) * smoothstep(0.045, 0.03, np.abs(x))
          * front)
    lines = np.clip(np.sin((y + 0.001 * np.sin(x / 0.01)) / 0.0065 * 2 * np.pi) - 0.75, 0, 1) * 4
    out = {"forehead": fh * lines, "sides": []}
    for sign in (1.0, -1.0):
        cx, cy = sign * (H.EYE_CENTER[0] + 0.017), H.EYE_CENTER[1]
        ang = np.arctan2(y - cy, (x - cx) * sign)
        r = np.hypot(x - cx, y - cy)
        feet = (np.clip(np.sin(ang * 9) - 0.6, 0, 1) * 2.5 * smoothstep(0.012, 0.004, r)
                * (sign * (x - cx) > -0.002) * (z > 0.03))
        nl = np.exp(-((sign * x - (0.019 + 0.25 * (-0.035 - y))) / 0.0012) ** 2)
        nl *= smoothstep(-0.03, -0.036, y) * smoothstep(-0.07, -0.062, y) * (z > 0.06)
        out["sides"].append((feet, nl))
    return out


def make_texture(demo: Demographics, rng: np.random.Generator, size: int = 1024,
                 dressing=None) -> np.ndarray:
    """(size, size, 3) uint8 albedo atlas for the built-in head. A faces.dressing.Dressing
    gives the brows its colour and paints its hair on the scalp with a soft hairline (the
    hair shell sits inside it); without one the brow colour is drawn from ``rng``."""
    P, _ = position_map(size)
    L = _layout(size)
    skin = _skin_tone(demo, rng)
    img = np.broadcast_to(skin, (size, size, 3)).astype(np.float32).copy()
    elderly = demo.age_group == "elderly"

    def blend(mask, color, strength=1.0):
        m = np.clip(mask * strength, 0, 1)[..., None]
        img[:] = img * (1 - m) + np.asarray(color, np.float32) * m

    def mul(mask, factor):
        img[:] = img * (1 + (np.asarray(factor, np.float32) - 1) * np.clip(mask, 0, 1)[..., None])

    # Large-scale tone: warm cheeks, nose and ears; darker around the eyes and the jaw line.
    for mask, factor in L["tone"]:
        mul(mask, factor)
    if demo.gender == "man":
        mul(L["beard"] * rng.uniform(0.0, 0.6), (0.86, 0.85, 0.85))  # stubble shadow
    # Skin detail: blotches and pores at low amplitude
    detail = 0.012 * _noise(rng, size, 48) + 0.008 * _noise(rng, size, 160)
    img *= (1 + detail)[..., None]
    lip_col = skin * np.array([0.86, 0.58, 0.58]) * rng.uniform(0.85, 1.0)
    if elderly:
        lip_col = _lerp(lip_col, skin * 0.92, 0.4)
    blend(L["lips"], lip_col)
    mul(L["mouth_line"], (0.35, 0.25, 0.25))
    mul(L["nostril"], (0.25, 0.2, 0.2))
    # Brows, lash lines and lid creases
    hair = _hair_color(demo, rng)  # drawn either way: the stream stays the same
    if dressing is not None:
        hair = np.asarray(dressing.brow_color, np.float64)
    for sign in (1.0, -1.0):
        e = L["eyes"][sign]
        thick = e["thick"] * rng.uniform(0.8, 1.15)
        band = e["brow_u"] * smoothstep(thick, thick * 0.6, e["brow_dy"]) * e["brow_side"]
        # hair: irregular fine streaks, stretched along the brow by anisotropic noise
        # (cv2.resize takes (width, height): few columns, many rows = lateral streaks)
        streak = cv2.resize(rng.standard_normal((size // 2, size // 32)).astype(np.float32),
                            (size, size), interpolation=cv2.INTER_CUBIC)
        strokes = np.clip(0.82 + 0.25 * streak, 0.45, 1.0)
        blend(band * strokes, hair, 0.9 if not elderly else 0.85)
        blend(e["lash"], (0.06, 0.05, 0.05), 0.9)
        mul(e["low"], (0.75, 0.7, 0.7))
        mul(e["crease"], (0.85, 0.82, 0.82))
    if elderly:
        _age(img, L, rng, size, mul)
    if dressing is not None:
        _paint_scalp(img, P, size, dressing)
    _paint_patches(img, size, demo, skin, rng)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _age(img, L, rng, size, mul) -> None:
    """Forehead lines, crow's feet, nasolabial folds, spots, a little sallowness."""
    a = L["age"]
    mul(a["forehead"] * rng.uniform(0.5, 1.0), (0.82, 0.8, 0.8))
    for feet, nl in a["sides"]:
        mul(feet, (0.85, 0.82, 0.82))
        mul(nl, (0.84, 0.8, 0.8))
    spots = smoothstep(2.2, 2.8, _noise(rng, size, 90)) * L["front"]
    mul(spots, (0.85, 0.8, 0.75))
    gray = img.mean(-1, keepdims=True)
    img[:] = 0.85 * img + 0.15 * gray


def _paint_scalp(img: np.ndarray, P: np.ndarray, size: int, dressing) -> None:
    """Hair colour over the style's coverage: fine strands at a soft, irregular hairline."""
    from faces.hair import coverage

    w = coverage(P.reshape(-1, 3), dressing.hair_style,
                 np.random.default_rng([dressing.seed, 41])).reshape(size, size)
    rng = np.random.default_rng([dressing.seed, 43])
    strands = cv2.resize(rng.standard_normal((size // 4, size // 2)).astype(np.float32),
                         (size, size), interpolation=cv2.INTER_CUBIC)
    fine = np.clip(w + 0.35 * strands * (w > 0.02) * (w < 0.9), 0, 1)
    col = np.asarray(dressing.hair_color, np.float32) * (0.9 + 0.1 * strands[..., None])
    m = fine[..., None] * (P[..., 2:3] < 0.2)
    img[:] = img * (1 - m) + col * m


def _patch_grid(size: int, name: str):
    """Pixel slices of an atlas patch and the patch-local (u, v) coordinates of its texels."""
    u0, v0 = H.ATLAS_PATCH[name]
    n = int(round(H.PATCH_SIZE * size))
    c0 = int(round(u0 * size))
    r1 = size - int(round(v0 * size))  # image rows count from the top (v = 1)
    rows, cols = slice(r1 - n, r1), slice(c0, c0 + n)
    jj, ii = np.meshgrid(np.arange(n), np.arange(n))
    pu = (jj + 0.5) / n
    pv = 1 - (ii + 0.5) / n
    return rows, cols, pu, pv


def _paint_patches(img, size, demo, skin, rng):
    rows, cols, pu, pv = _patch_grid(size, "eye")
    rho = np.hypot(pu - 0.5, pv - 0.5) * 2  # polar angle / pi from the corneal apex
    probs = _IRIS_P.get(demo.ethnicity, {"brown": .6, "dark": .4})
    name = rng.choice(list(probs), p=np.array(list(probs.values())) / sum(probs.values()))
    iris = np.asarray(_IRIS[name]) * rng.uniform(0.85, 1.15)
    ang = np.arctan2(pv - 0.5, pu - 0.5)
    streak = 1 + 0.18 * np.sin(ang * 23 + 3 * rho) * np.sin(ang * 7)
    sclera = np.array([0.84, 0.80, 0.77]) - 0.12 * smoothstep(0.3, 0.6, rho)[..., None] * [0.0, 0.4, 0.4]
    eye = np.where((rho < 0.165)[..., None], iris * streak[..., None], sclera)
    eye = np.where((rho < 0.068)[..., None], np.array([0.02, 0.02, 0.02]), eye)
    limbus = np.exp(-((rho - 0.162) / 0.01) ** 2)[..., None]
    eye = eye * (1 - 0.6 * limbus)
    img[rows, cols] = eye
    rows, cols, pu, pv = _patch_grid(size, "ear")
    img[rows, cols] = skin * np.array([1.0, 0.93, 0.92])
    rows, cols, pu, pv = _patch_grid(size, "mouth")
    img[rows, cols] = np.array([0.20, 0.07, 0.08])
