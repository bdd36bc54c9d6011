"""Identity shape space of the built-in head: smooth displacement fields over the template.

A shape is ``template + sum_k beta_k * B_k`` (like FLAME's shape blendshapes), with each
component scaled so that beta = 1 is one standard deviation of plausible variation.
Demographics shift the prior mean of some components (sex- and age-linked ones most).
"""
from __future__ import annotations

import functools

import numpy as np

from faces import builtin_head as H
from faces.demographics import Demographics
from faces.geometry import gauss, gauss_mirrored, smoothstep, vertex_normals



def _components(p: np.ndarray, n: np.ndarray, regions: dict) -> dict[str, np.ndarray]:
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    zero = np.zeros_like(x)
    sgn = np.tanh(x / 0.008)  # smooth sign: no tearing at the midline
    front = smoothstep(-0.03, 0.04, z)
    lower = smoothstep(-0.01, -0.07, y)

    def vec(dx=zero, dy=zero, dz=zero):
        return np.stack([dx + zero, dy + zero, dz + zero], axis=1)

    nose_w = gauss(p, (0, -0.012, 0.10), (0.016, 0.028, 0.03))
    lips_w = gauss(p, (0, H.MOUTH_Y, 0.09), (0.026, 0.011, 0.02))
    C: dict[str, np.ndarray] = {}
    C["face_width"] = vec(dx=0.035 * x)
    C["face_length"] = vec(dy=0.05 * np.minimum(y - 0.01, 0) + 0.012 * np.maximum(y - 0.01, 0))
    C["head_depth"] = vec(dz=0.05 * np.minimum(z, 0))
    C["cranium_height"] = vec(dy=0.006 * smoothstep(0.02, 0.12, y))
    C["jaw_width"] = vec(dx=0.07 * x * lower * smoothstep(-0.05, 0.0, z) * smoothstep(-0.13, -0.09, y))
    C["chin_projection"] = vec(dz=0.0035 * gauss(p, (0, -0.088, 0.08), (0.02, 0.014, 0.03)))
    C["chin_height"] = vec(dy=-0.0035 * smoothstep(-0.066, -0.095, y) * front * smoothstep(-0.13, -0.1, y))
    C["nose_size"] = (p - np.array([0, -0.03, 0.085])) * (0.10 * nose_w)[:, None]
    C["nose_width"] = vec(dx=0.16 * x * gauss(p, (0, -0.028, 0.095), (0.02, 0.011, 0.02)))
    C["nose_projection"] = vec(dz=0.0025 * gauss(p, (0, -0.02, 0.105), (0.011, 0.018, 0.03)))
    C["nasal_bridge"] = vec(dz=0.0022 * gauss(p, (0, 0.006, 0.09), (0.007, 0.016, 0.03)))
    C["brow_prominence"] = vec(dz=0.0022 * gauss_mirrored(p, (0.028, 0.034, 0.075), (0.016, 0.007, 0.02)))
    C["lip_fullness"] = vec(dy=0.0012 * np.tanh((y - H.MOUTH_Y) / 0.004) * lips_w,
                            dz=0.0018 * lips_w)
    C["mouth_width"] = vec(dx=0.10 * x * gauss(p, (0, H.MOUTH_Y, 0.085), (0.03, 0.012, 0.03)))
    C["cheek_fullness"] = n * (0.0025 * gauss_mirrored(p, (0.04, -0.03, 0.06), (0.018, 0.02, 0.03)))[:, None]
    C["cheekbones"] = n * (0.0022 * gauss_mirrored(p, (0.047, 0.0, 0.05), (0.014, 0.012, 0.02)))[:, None]
    eye_w = gauss_mirrored(p, H.EYE_CENTER, (0.02, 0.016, 0.04))
    C["eye_spacing"] = vec(dx=0.0018 * sgn * eye_w)
    C["eye_height"] = vec(dy=0.0018 * eye_w)
    C["forehead_slope"] = vec(dz=-0.0045 * smoothstep(0.035, 0.11, y) * front)
    C["midface_depth"] = vec(dz=0.0028 * gauss(p, (0, -0.01, 0.085), (0.03, 0.03, 0.05)))
    ear = np.zeros_like(x)
    ear[regions["ear"]] = 1.0
    ear_c = H.EAR_CENTER * np.c_[sgn, np.ones_like(x), np.ones_like(x)]
    C["ear_size"] = (p - ear_c) * (0.10 * ear)[:, None]
    C["neck_thickness"] = np.c_[x, zero, z + 0.02] * (0.06 * smoothstep(-0.07, -0.12, y))[:, None]
    jowl = gauss_mirrored(p, (0.042, -0.068, 0.05), (0.016, 0.014, 0.03))
    lat_brow = gauss_mirrored(p, (0.048, 0.03, 0.055), (0.012, 0.01, 0.03))
    C["age_sag"] = vec(dx=0.0012 * sgn * jowl, dy=-0.0028 * jowl - 0.0015 * lat_brow
                       - 0.0012 * lips_w * smoothstep(0.0, 0.02, np.abs(x)))
    C["age_hollow"] = n * (-(0.0025 * gauss_mirrored(p, (0.062, 0.035, 0.02), (0.01, 0.016, 0.02))
                             + 0.0022 * gauss_mirrored(p, (0.04, -0.028, 0.06), (0.012, 0.012, 0.03))
                             + 0.0012 * gauss_mirrored(p, H.EYE_CENTER + (0, -0.011, 0.01), (0.012, 0.005, 0.02))))[:, None]
    C["masculinity"] = (vec(dx=0.03 * x * lower * smoothstep(-0.13, -0.09, y),
                            dz=0.0018 * gauss_mirrored(p, (0.026, 0.034, 0.075), (0.02, 0.008, 0.02))
                            + 0.0015 * gauss(p, (0, -0.09, 0.08), (0.02, 0.015, 0.03)))
                        + C["nose_size"] * 0.5)
    # fuller lower face; spares the lips and the steep skin under the nose, which would fold
    C["roundness"] = n * (0.0025 * lower * front * smoothstep(0.08, 0.0, np.abs(x))
                          * (1 - gauss(p, (0, -0.06, 0.09), (0.02, 0.015, 0.02)))
                          * (1 - gauss(p, (0, -0.035, 0.095), (0.016, 0.008, 0.02))))[:, None]
    return C


COMPONENTS = ("face_width", "face_length", "head_depth", "cranium_height", "jaw_width",
              "chin_projection", "chin_height", "nose_size", "nose_width", "nose_projection",
              "nasal_bridge", "brow_prominence", "lip_fullness", "mouth_width", "cheek_fullness",
              "cheekbones", "eye_spacing", "eye_height", "forehead_slope", "midface_depth",
              "ear_size", "neck_thickness", "age_sag", "age_hollow", "masculinity", "roundness")


@functools.lru_cache(maxsize=1)
def shape_basis() -> np.ndarray:
    """(K, V, 3) float32 basis on the built-in template, in COMPONENTS order."""
    t = H.build_template()
    p = t.mesh.vertices.astype(np.float64)
    n = vertex_normals(p, t.mesh.faces).astype(np.float64)
    comps = _components(p, n, t.mesh.regions)
    B = np.stack([comps[k] for k in COMPONENTS]).astype(np.float32)
    # Eyeballs move rigidly with the field at their centre (eyes don't stretch).
    for part, sign in (("eyeball_r", 1.0), ("eyeball_l", -1.0)):
        sl = t.part_slices[part]
        c = H.EYE_CENTER[None] * np.array([sign, 1, 1])
        at_center = _components(c, np.array([[0.0, 0.0, 1.0]]), {"ear": np.array([], int)})
        for k, name in enumerate(COMPONENTS):
            B[k, sl] = at_center[name][0]
    return B


# Prior mean shifts (in standard deviations). Ethnic offsets are deliberately modest: the
# shape prior stays broad, appearance differences come mostly from the texture.
_SEX = {"man": {"masculinity": 1.0, "face_width": 0.3, "jaw_width": 0.5, "brow_prominence": 0.7,
                "nose_size": 0.4, "neck_thickness": 0.8, "lip_fullness": -0.3},
        "woman": {"masculinity": -1.0, "face_width": -0.3, "jaw_width": -0.5,
                  "brow_prominence": -0.7, "nose_size": -0.4, "neck_thickness": -0.8,
                  "lip_fullness": 0.3}}
_AGE = {"young": {"age_sag": -0.6, "age_hollow": -0.6},
        "elderly": {"age_sag": 1.9, "age_hollow": 1.6, "nose_size": 0.4, "ear_size": 0.7,
                    "lip_fullness": -0.8, "cheek_fullness": -0.4}}
_ETH = {"East Asian": {"nasal_bridge": -0.8, "midface_depth": -0.5, "face_width": 0.4,
                       "brow_prominence": -0.4, "nose_projection": -0.4},
        "Black": {"nose_width": 0.9, "lip_fullness": 0.9, "nasal_bridge": -0.4,
                  "nose_projection": -0.2},
        "White": {"nasal_bridge": 0.6, "nose_projection": 0.4, "lip_fullness": -0.3,
                  "face_width": -0.3, "brow_prominence": 0.3},
        "South Asian": {"nose_projection": 0.3, "lip_fullness": 0.2, "nose_width": 0.2},
        "Middle Eastern": {"nasal_bridge": 0.6, "nose_size": 0.4, "brow_prominence": 0.3},
        "Latino": {"face_width": 0.3, "nose_width": 0.3}}


def prior_mean(demo: Demographics) -> np.ndarray:
    mu = np.zeros(len(COMPONENTS))
    for table in (_SEX[demo.gender], _AGE[demo.age_group], _ETH[demo.ethnicity]):
        for k, v in table.items():
            mu[COMPONENTS.index(k)] += v
    return mu


def sample_shape(demo: Demographics, rng: np.random.Generator, std: float = 0.8) -> np.ndarray:
    beta = prior_mean(demo) + std * rng.standard_normal(len(COMPONENTS))
    return np.clip(beta, -3.0, 3.0).astype(np.float32)
