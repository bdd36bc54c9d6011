"""FLAME through the real loading code, on a small synthetic FLAME-format file."""
import json
import pickle

import numpy as np
import pytest
from scipy import sparse
from scipy.spatial import ConvexHull

from faces.flame import FlameAUBasis, FlameModel
from faces.models import FaceConfig, make_face_model

N_VERTS = 5023  # FLAME's vertex count
N_SHAPE, N_EXPR = 30, 10


def _synthetic_flame(rng) -> dict:
    i = np.arange(N_VERTS) + 0.5
    y = 1 - 2 * i / N_VERTS
    r = np.sqrt(1 - y * y)
    th = np.pi * (1 + 5 ** 0.5) * i
    v = np.c_[0.08 * r * np.sin(th), 0.11 * y, 0.09 * r * np.cos(th)]
    faces = ConvexHull(v).simplices
    # smooth random directions: low-order functions of position
    basis = np.stack([v[:, 0], v[:, 1], v[:, 2], v[:, 0] * v[:, 1] * 50, v[:, 1] ** 2 * 50,
                      np.ones(N_VERTS) * 0.02], 1)
    dirs = np.einsum("vk,kcn->vcn", basis, rng.standard_normal((6, 3, N_SHAPE + N_EXPR)) * 0.05)
    jaw = v[:, 1] < -0.03
    weights = np.zeros((N_VERTS, 5))
    weights[:, 0] = 1.0
    weights[jaw, 0], weights[jaw, 2] = 0.0, 1.0
    J = np.zeros((5, N_VERTS))
    for j, sel in enumerate([np.ones(N_VERTS, bool), v[:, 1] < -0.08, jaw, v[:, 0] > 0.05,
                             v[:, 0] < -0.05]):
        J[j, sel] = 1.0 / sel.sum()
    return {"v_template": v, "f": faces.astype(np.uint32), "shapedirs": dirs,
            "posedirs": rng.standard_normal((N_VERTS, 3, 36)) * 1e-4,
            "J_regressor": sparse.csc_matrix(J), "weights": weights,
            "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
            "bs_type": "lrotmin", "bs_style": "lbs"}


@pytest.fixture(scope="module")
def flame_files(tmp_path_factory):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("flame")
    model = _synthetic_flame(rng)
    np_path = d / "generic_model_numpy.pkl"
    with open(np_path, "wb") as fh:
        pickle.dump(model, fh, protocol=2)
    # the FLAME 2020 release stores chumpy arrays: write one like it
    import chumpy as ch

    ch_model = dict(model)
    for k in ("v_template", "shapedirs", "posedirs", "weights"):
        ch_model[k] = ch.array(model[k])
    ch_path = d / "generic_model_chumpy.pkl"
    with open(ch_path, "wb") as fh:
        pickle.dump(ch_model, fh, protocol=2)
    basis = {"format": "pain3d-flame-au-basis", "version": 1, "n_expression": N_EXPR,
             "aus": {au: {"expression": rng.standard_normal(N_EXPR).tolist()}
                     for au in ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43")}}
    basis["aus"]["AU26"] = {"expression": [0.0] * N_EXPR, "jaw": [0.25, 0.0, 0.0]}
    au_path = d / "au_basis.json"
    au_path.write_text(json.dumps(basis))
    return {"numpy": np_path, "chumpy": ch_path, "au": au_path, "raw": model}


@pytest.mark.parametrize("kind", ["numpy", "chumpy"])
def test_loads_and_has_right_vertex_count(flame_files, kind):
    m = FlameModel.load(flame_files[kind], n_shape=N_SHAPE)
    assert m.v_template.shape == (N_VERTS, 3)
    assert m.n_shape == N_SHAPE and m.n_expression == N_EXPR and m.n_joints == 5
    v = m.forward()
    assert v.shape == (N_VERTS, 3)
    assert np.allclose(v, flame_files["raw"]["v_template"], atol=1e-6)


def test_shape_expression_and_jaw_move_vertices(flame_files):
    m = FlameModel.load(flame_files["numpy"], n_shape=N_SHAPE)
    v0 = m.forward()
    vs = m.forward(shape=np.r_[1.0, np.zeros(N_SHAPE - 1)])
    expected = flame_files["raw"]["shapedirs"][:, :, 0]
    assert np.allclose(vs - v0, expected, atol=1e-5)  # linear blendshape, exactly
    ve = m.forward(expression=np.r_[2.0, np.zeros(N_EXPR - 1)])
    assert np.allclose(ve - v0, 2 * flame_files["raw"]["shapedirs"][:, :, N_SHAPE], atol=1e-5)
    pose = np.zeros(15)
    pose[6] = 0.3  # jaw opens about x
    vj = m.forward(pose=pose)
    jaw = flame_files["raw"]["v_template"][:, 1] < -0.03
    moved = np.linalg.norm(vj - v0, axis=1)
    assert moved[jaw].mean() > 0.005 and moved[~jaw].max() < 1e-3
    with pytest.raises(ValueError):
        m.forward(shape=np.zeros(N_SHAPE + 1))


def test_au_basis_rigs_flame(flame_files):
    cfg = FaceConfig(model="flame", flame_path=str(flame_files["numpy"]), flame_n_shape=N_SHAPE,
                     au_basis_path=str(flame_files["au"]))
    model = make_face_model(cfg)
    shape = model.sample_shape(None, np.random.default_rng(1))
    v0 = model.neutral(shape)
    assert v0.shape == (N_VERTS, 3)
    v4 = model.posed(shape, {"AU4": 5})
    v4h = model.posed(shape, {"AU4": 2.5})
    d, dh = np.abs(v4 - v0).max(), np.abs(v4h - v0).max()
    assert d > 1e-3 and dh == pytest.approx(d / 2, rel=0.05)  # linear in intensity
    assert np.array_equal(model.posed(shape, {}), v0)
    p = model.expression_params({"AU26": 5})
    assert p.shape == (N_EXPR + 3,) and p[-3] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="AU12"):
        model.posed(shape, {"AU12": 2})


def test_flame_renders_with_vertex_colours(flame_files, renderer):
    from faces.demographics import Demographics
    from faces.render import Camera

    cfg = FaceConfig(model="flame", flame_path=str(flame_files["chumpy"]), flame_n_shape=N_SHAPE,
                     au_basis_path=str(flame_files["au"]))
    model = make_face_model(cfg)
    app = model.appearance(Demographics("young", "man", "Black"), np.random.default_rng(0))
    mesh = model.mesh(model.neutral(np.zeros(model.n_shape)))
    out = renderer.render(mesh, Camera(target=model.camera_target, distance=0.6), 96,
                          vertex_colors=app.vertex_colors)
    assert out["mask"].mean() > 0.1


def test_flame_errors_name_the_problem(tmp_path, flame_files):
    with pytest.raises(FileNotFoundError, match="flame.is.tue.mpg.de"):
        FlameModel.load(tmp_path / "missing.pkl")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable FLAME pickle"):
        FlameModel.load(bad)
    with pytest.raises(ValueError, match="flame_n_shape"):
        FlameModel.load(flame_files["numpy"])  # 40 components, not FLAME's 400
    with pytest.raises(ValueError, match="flame_path is not set"):
        make_face_model(FaceConfig(model="flame"))
    with pytest.raises(FileNotFoundError, match="AU basis"):
        FlameAUBasis.load(tmp_path / "none.json", N_EXPR)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="format"):
        FlameAUBasis.load(wrong, N_EXPR)


def test_flame_uv_file_gives_corner_uvs(flame_files, tmp_path):
    raw = flame_files["raw"]
    vt = np.random.default_rng(0).random((N_VERTS, 2)).astype(np.float32)
    np.savez(tmp_path / "FLAME_texture.npz", vt=vt, ft=raw["f"].astype(np.int64))
    cfg = FaceConfig(model="flame", flame_path=str(flame_files["numpy"]), flame_n_shape=N_SHAPE,
                     au_basis_path=str(flame_files["au"]),
                     flame_uv_path=str(tmp_path / "FLAME_texture.npz"))
    m = make_face_model(cfg)
    assert m.template.corner_uv.shape == (len(raw["f"]), 3, 2)
    assert np.allclose(m.template.corner_uv[5], vt[raw["f"][5]])
    np.savez(tmp_path / "bad.npz", vt=vt, ft=raw["f"][:10].astype(np.int64))
    cfg.flame_uv_path = str(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="triangles"):
        make_face_model(cfg)


def test_flame_through_every_generation_stage(flame_files, tmp_path):
    """rigging(flame) -> neutral face -> texturing -> render -> inpainting -> write, no Ray."""
    import pyarrow.parquet as pq

    from actors.base import make_backend
    from cluster.config import load_config
    from pipelines.tasks import identity_rows, render_rows, write_rows

    cfg = load_config("local", [
        "face.model=flame", f"face.flame_path={flame_files['numpy']}", f"face.flame_n_shape={N_SHAPE}",
        f"face.au_basis_path={flame_files['au']}", "render.size=64",
        "generate.stages.rigging.backend=flame", f"generate.out={tmp_path}"])
    ctx = {"face": cfg.face, "render": cfg.render}
    b = identity_rows({"identity": np.array([0])}, cfg)
    for stage in ("rigging", "neutral_face", "texturing"):
        b = make_backend(stage, getattr(cfg.generate.stages, stage), ctx, "cpu")(b)
    assert b["vertices"].shape == (1, 11, N_VERTS, 3) and b["vertex_colors"].shape == (1, N_VERTS, 3)
    assert b["expression_params"].shape == (1, 11, N_EXPR + 3)
    b = render_rows(b, cfg)
    b = make_backend("inpainting", cfg.generate.stages.inpainting, ctx, "cpu")(b)
    out = write_rows(b, cfg, str(tmp_path))
    assert out["frames"][0] == 33
    t = pq.read_table(tmp_path / "frames" / "identity=000000.parquet").to_pylist()
    assert t[0]["face_model"] == "flame" and len(t[0]["shape_params"]) == N_SHAPE
    obj = (tmp_path / "textured_meshes" / "000000" / "neutral.obj").read_text()
    assert obj.count("\nv ") == N_VERTS and "mtllib" not in obj  # vertex colours, no UVs
