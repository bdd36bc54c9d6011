"""Hair and eyelashes of the built-in head, as geometry drawn with the face.

Hair is a shell: the identity's own scalp triangles pushed out along their normals by a
style's thickness, cut at a hairline that follows the skull (forehead, temples, in front of
the ears, the nape), irregular by a few millimetres. Long hair adds a curtain falling behind
the neck, tied-back hair a bun; receding hair starts higher with deep temples and a thin
crown; bald men keep a horseshoe at the sides and back. Eyelashes are a fringe along each
upper lid margin, rebuilt from the posed margin every frame so that they follow the lids.
"""
from __future__ import annotations

import functools

import numpy as np

from faces import builtin_head as H
from faces.geometry import Mesh, smoothstep, vertex_normals

HAIR_STYLES = ("short", "medium", "long", "tied back", "receding", "bald")
# hairline height (m) at |azimuth| knots (rad from the forehead's centre): forehead, temple,
# in front of the ear, over the ear, behind the ear, nape
_AZ = np.array([0.0, 0.45, 0.95, 1.3, 1.75, 2.3, np.pi])
_LINE = {"short": [0.080, 0.078, 0.030, 0.045, 0.030, -0.045, -0.055],
         "medium": [0.078, 0.074, 0.025, 0.040, 0.020, -0.055, -0.065],
         "long": [0.078, 0.074, 0.020, 0.035, 0.010, -0.060, -0.070],
         "tied back": [0.080, 0.078, 0.035, 0.048, 0.035, -0.045, -0.055],
         "receding": [0.104, 0.112, 0.045, 0.048, 0.030, -0.040, -0.050],
         "bald": [0.5, 0.5, 0.5, 0.050, 0.040, -0.035, -0.045]}
_THICK = {"short": 0.006, "medium": 0.013, "long": 0.011, "tied back": 0.004, "receding": 0.004,
          "bald": 0.003}
AXIS = np.array([0.0, 0.0, -0.012])  # the skull's vertical axis (x, ., z)


def _azimuth(p: np.ndarray) -> np.ndarray:
    return np.arctan2(p[:, 0] - AXIS[0], p[:, 2] - AXIS[2])


def coverage(p: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    """Hair weight 0-1 of template skin points: 1 well inside the hairline."""
    az = np.abs(_azimuth(p))
    line = np.interp(az, _AZ, _LINE[style])
    wobble = 0.0025 * np.sin(az * rng.uniform(9, 14) + rng.uniform(0, 6)) \
        + 0.0015 * np.sin(az * rng.uniform(25, 40) + rng.uniform(0, 6))
    w = smoothstep(line + wobble - 0.002, line + wobble + 0.004, p[:, 1])
    if style == "receding":  # a thin crown
        crown = np.hypot(p[:, 0], p[:, 2] + 0.03) < 0.045
        w *= np.where(crown & (p[:, 1] > 0.11), 0.35, 1.0)
    if style == "bald":  # a horseshoe: nothing on top
        w *= smoothstep(0.075, 0.06, p[:, 1])
    return w


@functools.lru_cache(maxsize=1)
def _skin_faces() -> np.ndarray:
    t = H.build_template()
    f = t.mesh.faces
    return f[(f < t.skin_count).all(axis=1)]


def _strand_uv(p: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-corner (across, along) strand coordinates; the shader draws strands from them."""
    u = (_azimuth(p) / (2 * np.pi) + 0.5)[faces]
    span = u.max(1) - u.min(1)
    u[span > 0.5] = np.where(u[span > 0.5] < 0.5, u[span > 0.5] + 1.0, u[span > 0.5])
    return np.stack([u, p[:, 1][faces] * 4.0], -1).astype(np.float32)


def hair_mesh(neutral: np.ndarray, style: str, seed: int) -> Mesh | None:
    """The hair of an identity's neutral mesh (None for no hair)."""
    t = H.build_template()
    rng = np.random.default_rng([seed, 41])
    tmpl = t.mesh.vertices.astype(np.float64)
    w = coverage(tmpl[: t.skin_count], style, rng)
    f = _skin_faces()
    f = f[(w[f] > 0.3).all(axis=1)]  # the edge lies inside the hair painted on the scalp
    if len(f) == 0:
        return None
    p = neutral.astype(np.float64)[: t.skin_count]
    n = vertex_normals(neutral[: t.skin_count].astype(np.float32), _skin_faces()).astype(float)
    clump = 1 + 0.25 * np.sin(_azimuth(tmpl[: t.skin_count]) * 23 + rng.uniform(0, 6))
    lift = 1 + 0.6 * smoothstep(0.04, 0.11, tmpl[: t.skin_count, 1])  # volume on top
    thick = 0.0006 + _THICK[style] * smoothstep(0.3, 0.9, w) * clump * lift
    v = p + n * thick[:, None]
    used = np.unique(f)
    remap = np.full(len(v), -1)
    remap[used] = np.arange(len(used))
    parts = [(v[used], remap[f])]
    if style == "long":
        parts.append(_curtain(v[used], rng))
    if style == "tied back":
        parts.append(_bun(v[used]))
    return _merge(parts)


def _merge(parts) -> Mesh:
    verts, faces, uvs, n = [], [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + n)
        uvs.append(_strand_uv(v, f))
        n += len(v)
    v = np.concatenate(verts).astype(np.float32)
    return Mesh(v, np.concatenate(faces).astype(np.int32), np.concatenate(uvs))


def _grid_faces(rows: int, cols: int, wrap: bool = False) -> np.ndarray:
    f = []
    for i in range(rows - 1):
        for j in range(cols if wrap else cols - 1):
            a, b = i * cols + j, i * cols + (j + 1) % cols
            f += [(a, a + cols, b + cols), (a, b + cols, b)]
    return np.array(f, np.int64)


def _curtain(shell: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Hair falling from behind the ears to the shoulders, around the back of the neck."""
    az = np.linspace(1.45, 2 * np.pi - 1.45, 40)  # behind the ears, round the back
    band = shell[(shell[:, 1] > 0.0) & (shell[:, 1] < 0.04)]
    r_band = np.hypot(band[:, 0] - AXIS[0], band[:, 2] - AXIS[2])
    a_band = np.mod(_azimuth(band), 2 * np.pi)
    r0 = np.array([r_band[np.abs(np.angle(np.exp(1j * (a_band - a)))) < 0.2].max(initial=0.08)
                   for a in az])
    ys = np.linspace(0.03, -0.17 - 0.03 * rng.random(), 16)
    flare = 0.012 * smoothstep(0.0, -0.15, ys)[:, None]
    r = (r0[None] - 0.002 + flare) * (1 + 0.02 * np.sin(az * 17)[None])
    v = np.stack([np.sin(az)[None] * r + AXIS[0], np.broadcast_to(ys[:, None], r.shape),
                  np.cos(az)[None] * r + AXIS[2]], -1).reshape(-1, 3)
    return v, _grid_faces(len(ys), len(az))


def _bun(shell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    back = shell[np.argmin(shell[:, 2])]
    c = np.array([0.0, back[1] + 0.01, back[2] - 0.012])
    th, ph = np.meshgrid(np.linspace(0.15, np.pi - 0.15, 10), np.linspace(0, 2 * np.pi, 16,
                                                                         endpoint=False),
                         indexing="ij")
    v = c + np.stack([0.032 * np.sin(th) * np.cos(ph), 0.028 * np.cos(th),
                      0.024 * np.sin(th) * np.sin(ph)], -1).reshape(-1, 3)
    return v, _grid_faces(10, 16, wrap=True)


# ---- eyelashes -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _upper_margins() -> list[np.ndarray]:
    """Upper lid margin vertices of each eye, medial to lateral."""
    from faces.regions import eye_local

    t = H.build_template()
    v = t.mesh.vertices.astype(np.float64)
    out = []
    for name, sign in (("upper_lid_margin_r", 1.0), ("upper_lid_margin_l", -1.0)):
        idx = t.mesh.regions[name]
        s, _, _ = eye_local(v[idx], sign)
        out.append(idx[np.argsort(s)])
    return out


def lash_mesh(posed: np.ndarray) -> Mesh:
    """Upper lashes of a posed built-in mesh: a curved fringe of 2 mm at the lid's middle."""
    t = H.build_template()
    verts, faces = [], []
    for k, (idx, part) in enumerate(zip(_upper_margins(), ("eyeball_r", "eyeball_l"))):
        base = posed[idx].astype(np.float64)
        centre = posed[t.part_slices[part]].astype(np.float64).mean(0)
        radial = base - centre
        radial /= np.linalg.norm(radial, axis=1, keepdims=True)
        s = np.linspace(-1, 1, len(idx))
        length = 0.0022 * (1 - 0.55 * s ** 2)[:, None]
        out = radial + np.array([0.0, 0.5, 0.25])
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        mid = base + radial * 0.0004 + out * length * 0.55
        tip = mid + (out + np.array([0.0, 0.6, 0.0])) / 1.6 * length * 0.5
        rows = np.stack([base + radial * 0.0002, mid, tip])  # (3, n, 3)
        faces.append(_grid_faces(3, len(idx)) + sum(len(x) for x in verts))
        verts.append(rows.reshape(-1, 3))
    v = np.concatenate(verts).astype(np.float32)
    return Mesh(v, np.concatenate(faces).astype(np.int32), None)
