"""A FLAME-format test model with a real face shape, built from the built-in head.

FLAME itself is licensed and cannot ship, so the FLAME path is tested on a stand-in that
has FLAME's real layout and dimensions: 5,023 vertices, 300 shape + 100 expression
directions, posedirs (V, 3, 36), a sparse J_regressor over FLAME's five joints (global,
neck, jaw, left eye, right eye), LBS weights and a kintree table. Its geometry is the
built-in head's:

- the template is a 5,023-vertex subset of the built-in template (every lid-margin, mouth
  and neck-ring vertex and the AU-visibility points kept, the rest thinned by farthest-point
  sampling, densest on the face), re-triangulated the way the built-in skin is;
- the shape space is the built-in shape basis on those vertices (then small smooth fields up
  to 300 components);
- the expression space is the top 100 principal components of the built-in AU rig's
  displacements over random AU configurations, so FLAME's rig derivation has a space that can
  express AUs, as FLAME's scan-based one is meant to;
- the jaw joint sits at the built-in rig's jaw pivot with its jaw weights; eyeballs are bound
  to the eye joints.

Companion files are written as FLAME's downloads name them: ``FLAME_texture.npz`` (mean,
tex_dir, vt, ft: a texture space in the built-in atlas) and ``mediapipe_landmark_embedding
.npz``. ``pain3d make-test-flame DIR`` writes the model both as a FLAME 2020-style chumpy
pickle (``generic_model.pkl``) and a FLAME 2023-style numpy one (``flame2023.pkl``).
"""
from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np

N_VERTICES = 5023
N_SHAPE, N_EXPR = 300, 100
TEX_SIZE, N_TEX = 512, 8
FILES = ("generic_model.pkl", "flame2023.pkl", "FLAME_texture.npz",
         "mediapipe_landmark_embedding.npz")


def _select(t, budget: int) -> np.ndarray:
    """Skin vertices to keep (mirror-symmetric, exactly ``budget`` of them)."""
    from faces.au_measure import template_anchors

    n = t.skin_count
    v = t.mesh.vertices[:n].astype(np.float64)
    mirror = t.mirror[:n]
    keep = np.zeros(n, bool)
    keep[t.lid_tags[:n] > 0] = True
    for idx in template_anchors().values():
        keep[idx[idx < n]] = True
    keep |= keep[mirror]
    half = np.flatnonzero((t.side[:n] >= 0) & ~keep)
    face = (v[half, 2] > 0.035) & (v[half, 1] > -0.125) & (v[half, 1] < 0.075)
    scale = np.where(face, 1.0, 0.3)  # the back of the head and the neck get fewer
    seeds = v[keep]
    d = np.full(len(half), np.inf)
    for start in range(0, len(seeds), 256):
        block = seeds[start:start + 256]
        d = np.minimum(d, np.linalg.norm(v[half, None] - block[None], axis=2).min(1))
    d *= scale
    count = int(keep.sum())
    taken = np.zeros(len(half), bool)
    while count < budget:
        order = np.argsort(-np.where(taken, -1, d))
        cost = lambda i: 1 if mirror[half[i]] == half[i] else 2  # noqa: E731
        i = next((j for j in order if not taken[j] and count + cost(j) <= budget), None)
        if i is None:
            break
        taken[i] = True
        keep[half[i]] = keep[mirror[half[i]]] = True
        count += cost(i)
        d = np.minimum(d, np.linalg.norm(v[half] - v[half[i]], axis=1) * scale)
    if count != budget:
        raise RuntimeError(f"could not pick exactly {budget} skin vertices (got {count})")
    return np.flatnonzero(keep)


def _triangulate(t, skin: np.ndarray) -> np.ndarray:
    from faces import builtin_head as H

    p = t.mesh.vertices[skin].astype(np.float64)
    dirs = np.r_[p / np.linalg.norm(p, axis=1, keepdims=True), [[0.0, -1.0, 0.0]]]
    tags = np.r_[t.lid_tags[skin], 6]
    side = np.r_[t.side[skin], 0]
    f = H._triangulate(dirs, tags, side)
    if (f == len(skin)).any():
        raise RuntimeError("the pole vertex is still in a triangle")
    return f


@functools.lru_cache(maxsize=1)
def _topology():
    """(kept template indices, faces, corner UVs) of the test model."""
    from faces import builtin_head as H

    t = H.build_template()
    parts = ("eyeball_r", "eyeball_l", "ear_r", "ear_l", "mouth_cavity")
    part_idx = np.concatenate([np.arange(t.part_slices[p].start, t.part_slices[p].stop)
                               for p in parts])
    skin = _select(t, N_VERTICES - len(part_idx))
    keep = np.r_[skin, part_idx]
    f_skin = _triangulate(t, skin)
    dirs = t.mesh.vertices[skin] / np.linalg.norm(t.mesh.vertices[skin], axis=1, keepdims=True)
    cuv = [H._corner_uv(f_skin, H.skin_uv(dirs), np.ones(len(skin), bool))]
    faces, n = [f_skin], len(skin)
    makers = {"eyeball_r": (lambda: H._eyeball(+1), "eye"), "eyeball_l": (lambda: H._eyeball(-1), "eye"),
              "ear_r": (lambda: H._ear(+1), "ear"), "ear_l": (lambda: H._ear(-1), "ear"),
              "mouth_cavity": (H._mouth_cavity, "mouth")}
    for p in parts:
        make, patch = makers[p]
        _, f, uv = make()
        faces.append(f + n)
        cuv.append(H._patch_uv(uv, patch)[f])
        n += t.part_slices[p].stop - t.part_slices[p].start
    return keep, np.concatenate(faces), np.concatenate(cuv).astype(np.float32), len(skin)


def _expression_space(keep: np.ndarray, rng) -> np.ndarray:
    """(V, 3, 100): principal components of the built-in rig's displacements."""
    from faces.models import BuiltinFaceModel
    from faces.rig import RIG_AUS, apply_aus

    m = BuiltinFaceModel()
    base = m.neutral(np.zeros(m.n_shape, np.float32)).astype(np.float64)
    confs = [{au: (lv / 5 if au == "AU43" else lv)} for au in RIG_AUS for lv in range(1, 6)]
    for _ in range(360):
        on = rng.random(len(RIG_AUS)) < 0.45
        confs.append({au: float(rng.uniform(0, 1 if au == "AU43" else 5))
                      for au, o in zip(RIG_AUS, on) if o})
    X = np.stack([(apply_aus(base.astype(np.float32), c) - base)[keep].ravel() for c in confs])
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    dirs = vt[:N_EXPR] * (s[:N_EXPR, None] / np.sqrt(len(X)))  # coefficient 1 = one std
    return dirs.reshape(N_EXPR, -1, 3).transpose(1, 2, 0)


def _shape_space(keep: np.ndarray, rng) -> np.ndarray:
    from faces.shape_space import shape_basis

    b = shape_basis()[:, keep].transpose(1, 2, 0).astype(np.float64)  # (V, 3, K)
    v = _template()[keep]
    feats = np.stack([np.ones(len(v)), *v.T, *(v.T ** 2), v[:, 0] * v[:, 1], v[:, 1] * v[:, 2]], 1)
    extra = N_SHAPE - b.shape[2]
    amp = 4e-4 / np.sqrt(np.arange(1, extra + 1))  # small, decaying: FLAME's later components
    w = rng.standard_normal((feats.shape[1], 3, extra)) / np.sqrt(feats.shape[1])
    smooth = np.einsum("vk,kcn->vcn", feats / np.abs(feats).max(0), w) * amp
    return np.concatenate([b, smooth], axis=2)


def _template() -> np.ndarray:
    from faces import builtin_head as H

    return H.build_template().mesh.vertices.astype(np.float64)


def _joints(v: np.ndarray, t, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FLAME's joints (global, neck, jaw, left eye, right eye) and a non-negative sparse
    regressor that reproduces them from the template."""
    from scipy.optimize import nnls

    from faces import builtin_head as H

    eye_l, eye_r = H.EYE_CENTER * [1, 1, 1], H.EYE_CENTER * [-1, 1, 1]  # +x: subject's left
    J = np.array([[0, -0.10, -0.02], [0, -0.07, -0.02], [0, -0.005, -0.012], eye_l, eye_r])
    reg = np.zeros((5, len(v)))
    for j, p in enumerate(J):
        cand = np.argsort(np.linalg.norm(v - p, axis=1))[:400]
        A = np.r_[v[cand].T, 10 * np.ones((1, len(cand)))]
        w, _ = nnls(A, np.r_[p, 10.0])
        reg[j, cand] = w / w.sum()
    return J, reg


def _lbs_weights(v: np.ndarray, t, keep: np.ndarray) -> np.ndarray:
    from faces.geometry import smoothstep
    from faces.rig import rig_basis

    jaw = rig_basis().jaw_weight[keep].astype(np.float64)
    root = smoothstep(-0.10, -0.14, v[:, 1]) * (1 - jaw)
    w = np.zeros((len(v), 5))
    w[:, 0], w[:, 2] = root, jaw
    w[:, 1] = 1 - root - jaw
    for part, j in (("eyeball_r", 3), ("eyeball_l", 4)):  # built-in "_r" is the +x eye
        sl = t.part_slices[part]
        rows = np.flatnonzero((keep >= sl.start) & (keep < sl.stop))
        w[rows] = 0.0
        w[rows, j] = 1.0
    return w


def build_model(seed: int = 0) -> dict:
    """The FLAME-format model as a dict of numpy arrays (FLAME 2023's pickle layout)."""
    from scipy import sparse

    from faces import builtin_head as H

    rng = np.random.default_rng(seed)
    t = H.build_template()
    keep, faces, _, _ = _topology()
    v = _template()[keep]
    _, reg = _joints(v, t, keep)
    dirs = np.concatenate([_shape_space(keep, rng), _expression_space(keep, rng)], axis=2)
    return {"v_template": v, "f": faces.astype(np.uint32), "shapedirs": dirs,
            "posedirs": np.zeros((len(v), 3, 36)), "J_regressor": sparse.csc_matrix(reg),
            "weights": _lbs_weights(v, t, keep),
            "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.uint32),
            "bs_style": "lbs", "bs_type": "lrotmin"}


def build_texture_space(seed: int = 0, n: int = 24) -> dict:
    """FLAME_texture.npz's arrays: a mean albedo and N_TEX directions (0-255 scale) in the
    built-in atlas, with the test model's vt / ft."""
    from faces.demographics import sample_demographics
    from faces.dressing import sample_dressing
    from faces.texture import make_texture

    _, faces, cuv, _ = _topology()
    texs = []
    for i in range(n):
        demo = sample_demographics(i, seed)
        rng = np.random.default_rng([seed, i])
        texs.append(make_texture(demo, rng, TEX_SIZE, sample_dressing(seed, i, demo))[..., :3]
                    .astype(np.float32))
    X = np.stack(texs).reshape(n, -1)
    mean = X.mean(0)
    _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
    tex_dir = (vt[:N_TEX] * (s[:N_TEX, None] / np.sqrt(n))).T.reshape(TEX_SIZE, TEX_SIZE, 3, N_TEX)
    uv, ft = np.unique(cuv.reshape(-1, 2), axis=0, return_inverse=True)
    return {"mean": mean.reshape(TEX_SIZE, TEX_SIZE, 3), "tex_dir": tex_dir.astype(np.float32),
            "vt": uv.astype(np.float64), "ft": ft.reshape(-1, 3).astype(np.int64)}


def build_landmarks(model: dict, n: int = 105) -> dict:
    """A MediaPipe landmark embedding on the test model: the built-in head's landmarks, each
    as a triangle and barycentric coordinates of its closest point."""
    from faces.flame_rig import builtin_landmarks

    idx, pts = builtin_landmarks()
    pick = np.unique(np.linspace(0, len(idx) - 1, n).round().astype(int))
    v, f = model["v_template"], model["f"].astype(np.int64)
    skin_rows = np.flatnonzero((f < _topology()[3]).all(1))
    cent = v[f[skin_rows]].mean(1)
    face_idx, bary = [], []
    for p in pts[pick]:
        cand = np.argsort(np.linalg.norm(cent - p, axis=1))[:24]
        (_, b), c = min(((_closest(p, v[f[skin_rows[c]]]), c) for c in cand),
                        key=lambda r: r[0][0])
        face_idx.append(int(skin_rows[c]))
        bary.append(b)
    return {"lmk_face_idx": np.array(face_idx, np.int64), "lmk_b_coords": np.array(bary),
            "landmark_indices": idx[pick].astype(np.int64)}


def _closest(p: np.ndarray, tri: np.ndarray) -> tuple[float, np.ndarray]:
    """(distance, barycentric coordinates) of the closest point to p on a triangle, found on a
    fine barycentric grid (exact enough for landmarks, simple to read)."""
    g = np.linspace(0, 1, 41)
    a, b = np.meshgrid(g, g)
    ok = a + b <= 1
    bc = np.c_[1 - a[ok] - b[ok], a[ok], b[ok]]
    d = np.linalg.norm(bc @ tri - p, axis=1)
    i = int(np.argmin(d))
    return float(d[i]), bc[i]


def write(out: str | Path, seed: int = 0) -> list[Path]:
    """Write the four files into ``out`` (created); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(seed)
    paths = []
    with open(out / "flame2023.pkl", "wb") as fh:
        pickle.dump(model, fh, protocol=2)
    paths.append(out / "flame2023.pkl")
    try:
        import chumpy as ch
    except ImportError:
        ch = None  # FLAME 2020's chumpy layout needs chumpy to write
    if ch is not None:
        legacy = dict(model, **{k: ch.array(model[k]) for k in ("v_template", "shapedirs",
                                                                "posedirs", "weights")})
        with open(out / "generic_model.pkl", "wb") as fh:
            pickle.dump(legacy, fh, protocol=2)
        paths.append(out / "generic_model.pkl")
    np.savez_compressed(out / "FLAME_texture.npz", **build_texture_space(seed))
    np.savez(out / "mediapipe_landmark_embedding.npz", **build_landmarks(model))
    return paths + [out / "FLAME_texture.npz", out / "mediapipe_landmark_embedding.npz"]
