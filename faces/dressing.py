"""What an identity of the built-in head wears: hair style and colour, lashes, garment.

Drawn from the stream (seed, identity, "dressing") and the demographics: styles by gender
and age (receding and bald for older men), hair colour by ethnicity, greying with age, and
the brows take the hair's colour. :func:`extras` turns it into the meshes drawn with a face.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faces.body import GARMENT_COLORS, GARMENTS, body_colors, body_mesh
from faces.demographics import Demographics, identity_rng
from faces.hair import HAIR_STYLES, hair_mesh
from faces.render import MATERIALS

_STYLE_P = {  # (gender, age) -> probability of each of HAIR_STYLES
    ("man", "young"): (0.45, 0.25, 0.05, 0.05, 0.12, 0.08),
    ("man", "elderly"): (0.30, 0.08, 0.0, 0.02, 0.35, 0.25),
    ("woman", "young"): (0.10, 0.25, 0.40, 0.25, 0.0, 0.0),
    ("woman", "elderly"): (0.35, 0.35, 0.10, 0.20, 0.0, 0.0),
}
_DARK = [((0.05, 0.04, 0.035), 0.6), ((0.12, 0.08, 0.06), 0.4)]
_HAIR_BASE = {  # sRGB colours and weights per ethnicity
    "White": [((0.10, 0.07, 0.05), 0.25), ((0.30, 0.20, 0.12), 0.35), ((0.55, 0.42, 0.25), 0.2),
              ((0.78, 0.66, 0.45), 0.12), ((0.50, 0.22, 0.10), 0.08)],
    "Latino": [((0.06, 0.045, 0.04), 0.5), ((0.14, 0.09, 0.06), 0.4), ((0.30, 0.20, 0.12), 0.1)],
    "Middle Eastern": [((0.06, 0.045, 0.04), 0.55), ((0.14, 0.09, 0.06), 0.45)],
}
GREY = np.array([0.74, 0.73, 0.72])


@dataclass
class Dressing:
    hair_style: str
    hair_color: tuple[float, float, float]  # sRGB 0-1, greying included
    grey: float  # 0 (none) to 1 (white)
    brow_color: tuple[float, float, float]
    garment: str
    garment_color: tuple[float, float, float]
    seed: int  # for the hairline's and the fabric's small irregularities


def sample_dressing(seed: int, identity: int, demo: Demographics) -> Dressing:
    rng = identity_rng(seed, identity, "dressing")
    p = np.asarray(_STYLE_P[demo.gender, demo.age_group])
    style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=p / p.sum())]
    options = _HAIR_BASE.get(demo.ethnicity, _DARK)
    w = np.array([o[1] for o in options])
    base = np.asarray(options[rng.choice(len(options), p=w / w.sum())][0])
    base = base * rng.uniform(0.85, 1.15)
    grey = float(rng.uniform(0.35, 1.0)) if demo.age_group == "elderly" else 0.0
    hair = base + (GREY * rng.uniform(0.85, 1.05) - base) * grey
    brow = base + (GREY - base) * 0.25 * grey  # brows grey later than the hair
    garment = GARMENTS[rng.integers(len(GARMENTS))]
    palette = GARMENT_COLORS[garment]
    return Dressing(style, tuple(np.clip(hair, 0, 1).tolist()), round(grey, 3),
                    tuple(np.clip(brow, 0, 1).tolist()), garment,
                    tuple(palette[rng.integers(len(palette))]), int(rng.integers(2 ** 31)))


def skin_color(texture: np.ndarray) -> np.ndarray:
    """The albedo's skin colour at the neck (sRGB 0-1), for the body's neck."""
    from faces import builtin_head as H
    from faces.body import _ring

    t = H.build_template()
    d = t.mesh.vertices[_ring()].astype(np.float64) + [0.0, 0.025, 0.0]  # off the atlas edge
    uv = H.skin_uv(d / np.linalg.norm(d, axis=1, keepdims=True))
    h, w = texture.shape[:2]
    px = texture[np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1),
                 np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]
    return np.median(px, axis=0) / 255.0


@dataclass
class Static:
    """The parts that do not move with expressions, built once per identity."""

    hair: object  # Mesh | None
    body: object  # Mesh
    hair_colors: np.ndarray | None
    body_colors: np.ndarray
    body_materials: np.ndarray  # skin above the neckline, cloth below
    dark: dict  # black colours per part, for heatmap renders (kept: the renderer reuses data)


def build_static(neutral: np.ndarray, dressing: Dressing, skin) -> Static:
    rng = np.random.default_rng([dressing.seed, 3])
    hair = hair_mesh(neutral, dressing.hair_style, dressing.seed)
    body, depth, is_skin = body_mesh(neutral, dressing.garment)
    hc = None
    if hair is not None:
        tint = 1 + 0.06 * rng.standard_normal((hair.n_vertices, 1))
        hc = (np.clip(np.asarray(dressing.hair_color) * tint, 0, 1) * 255).astype(np.uint8)
    bc = body_colors(body, depth, is_skin, dressing.garment, dressing.garment_color, skin, rng)
    mats = np.where(is_skin, MATERIALS["skin"], MATERIALS["cloth"]).astype(np.float32)
    dark = {"body": np.zeros((body.n_vertices, 3), np.uint8),
            "hair": None if hair is None else np.zeros((hair.n_vertices, 3), np.uint8)}
    return Static(hair, body, hc, bc, mats, dark)


def extras(static: Static, lashes, dressing: Dressing, heat: bool = False) -> list:
    """The Extra parts of one frame (``lashes``: its :func:`faces.hair.lash_mesh`);
    ``heat``: black in the vertex-colour output (occluders of the heatmap drawn in the same
    pass as the photo)."""
    from faces.render import Extra

    lash_col = np.broadcast_to(np.asarray(dressing.brow_color) * 0.45, (lashes.n_vertices, 3))
    parts = [(static.body, static.body_colors, static.body_materials, static.dark["body"]),
             (lashes, lash_col, "hair", np.zeros((lashes.n_vertices, 3), np.uint8))]
    if static.hair is not None:
        parts.append((static.hair, static.hair_colors, "hair", static.dark["hair"]))
    return [Extra(m, c, mat, dark if heat else None) for m, c, mat, dark in parts]
