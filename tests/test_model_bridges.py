"""NFR rigging and Hunyuan3D 2.1 texturing through the model bridge, against stand-ins of
both repositories (tests/standins/) in the stand-in environment (numpy<2, torch 2.13)."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actors.base import StageConfig, make_backend
from actors.hunyuan3d import masked_reference, surface_colors
from actors.nfr import ICT_CODES, NFROptions, ict_codes, place_output
from actors.options import OptionsError
from bridge.client import BridgeError
from cluster.config import load_config
from faces.objfile import ObjMesh, read_obj
from faces.rig import RIG_AUS
from pipelines.tasks import identity_rows
from tests.standins.bundles import HUNYUAN_REPO, NFR_REPO


def standin_nfr():
    """The stand-in's own region rule (its mymodel.code_weights), read from its file."""
    sys.path.insert(0, str(NFR_REPO))
    try:
        import mymodel
    finally:
        sys.path.remove(str(NFR_REPO))
    return mymodel


def nfr_stage(python, bundle, **options):
    return StageConfig(backend="nfr", model=str(bundle),
                       options=dict({"python": python, "repo": str(NFR_REPO)}, **options))


@pytest.fixture(scope="module")
def cfg():
    return load_config("local", ["render.size=64", "face.texture_size=128"])


@pytest.fixture(scope="module")
def rigged(standin_python, standin_models, cfg):
    """Two identities rigged by the stand-in NFR (built-in head)."""
    ctx = {"face": cfg.face, "render": cfg.render}
    rig = make_backend("rigging", nfr_stage(standin_python, standin_models[0]), ctx, "cpu")
    b = identity_rows({"identity": np.array([0, 1])}, cfg)
    out = rig({k: v.copy() for k, v in b.items()})
    rig.server.close()
    return rig, b, out


def test_au_to_ict_mapping_and_curve():
    aus = np.zeros((3, len(RIG_AUS)), np.float32)
    aus[0, RIG_AUS.index("AU4")] = 5
    aus[1, RIG_AUS.index("AU26")] = 2.5
    aus[2, RIG_AUS.index("AU43")] = 5
    o = NFROptions(python="p", repo="r")
    c = ict_codes(aus, o)
    assert c.shape == (3, 53) and set(np.flatnonzero(c[0])) == {
        ICT_CODES.index("browDown_L"), ICT_CODES.index("browDown_R")}
    assert c[0, ICT_CODES.index("browDown_L")] == 1.0
    assert c[1, ICT_CODES.index("jawOpen")] == 0.5
    assert c[2, ICT_CODES.index("eyeBlink_R")] == 1.0
    o2 = NFROptions(python="p", repo="r", code_at_5=0.8, curve_gamma=2.0)
    assert ict_codes(aus, o2)[1, ICT_CODES.index("jawOpen")] == pytest.approx(0.8 * 0.25)


def test_nfr_options_are_checked():
    with pytest.raises(OptionsError, match="options.python is required"):
        make_backend("rigging", StageConfig(backend="nfr", model="x"), {}, "cpu")
    with pytest.raises(OptionsError, match="shift must be three numbers"):
        make_backend("rigging", StageConfig(backend="nfr", model="x", options={
            "python": "p", "repo": "r", "shift": [0, 1]}), {}, "cpu")


def test_nfr_neutral_is_the_code_zero_output_and_zero_rows_reuse_it(rigged):
    rig, b, out = rigged
    v = out["vertices"].astype(np.float64)
    assert v.shape == (2, 11, rig.model.template.n_vertices, 3)  # vertex count and order kept
    for i in range(2):
        neutral_in = rig.model.neutral(b["shape"][i])
        drift = np.linalg.norm(v[i, 0] - neutral_in, axis=1)
        assert drift.max() > 2e-4  # the stand-in drifts at code 0 ...
        for e in np.flatnonzero(~b["aus"][i].any(1)):  # ... and every no-AU row is that output
            np.testing.assert_array_equal(v[i, e], v[i, 0])
    np.testing.assert_array_equal(out["expression_params"][0], ict_codes(b["aus"][0],
                                                                          rig.o))


def test_nfr_pain_frame_moves_only_where_the_standin_moved(rigged):
    rig, b, out = rigged
    mymodel = standin_nfr()
    from actors.nfr import _components

    labels = _components(rig.faces, rig.model.template.n_vertices)
    skin = labels == np.bincount(labels).argmax()
    for i in range(2):
        neutral_in = rig.model.neutral(b["shape"][i]).astype(np.float64)
        v = out["vertices"][i].astype(np.float64)
        for e in range(1, 11):
            w = mymodel.code_weights(neutral_in[skin], out["expression_params"][i, e]).sum(1)
            moved = np.linalg.norm(v[e] - v[0], axis=1)
            assert moved[~skin].max() < 1e-9  # eyeballs, teeth: rigid, not expression-driven
            assert moved[skin][w == 0].max() < 1e-7  # nothing outside the stand-in's regions
            if out["expression_params"][i, e].any():
                assert moved[skin][w > 0].max() > 1e-4  # and its regions did move


def test_nfr_pieces_it_drops_follow_the_drift_rigidly(rigged):
    rig, b, out = rigged
    from actors.nfr import _components

    labels = _components(rig.faces, rig.model.template.n_vertices)
    neutral_in = rig.model.neutral(b["shape"][0]).astype(np.float64)
    v0 = out["vertices"][0, 0].astype(np.float64)
    for lab in np.unique(labels):
        if lab == np.bincount(labels).argmax():
            continue
        p = np.flatnonzero(labels == lab)
        d_in = np.linalg.norm(neutral_in[p][:, None] - neutral_in[p][None], axis=-1)
        d_out = np.linalg.norm(v0[p][:, None] - v0[p][None], axis=-1)
        assert np.abs(d_in - d_out).max() < 1e-6  # a rigid motion
        assert np.linalg.norm(v0[p] - neutral_in[p], axis=1).max() < 2e-3  # the drift's size


def test_nfr_scale_and_shift_are_undone(standin_python, standin_models, cfg, rigged):
    _, b, out = rigged
    ctx = {"face": cfg.face, "render": cfg.render}
    rig = make_backend("rigging", nfr_stage(standin_python, standin_models[0], scale=10.0,
                                            shift=[1.0, -2.0, 0.5]), ctx, "cpu")
    scaled = rig({k: v.copy() for k, v in b.items() if k in ("shape", "aus")})
    rig.server.close()
    np.testing.assert_allclose(scaled["vertices"], out["vertices"], atol=2e-6)


def test_place_output_vertices_nfr_dropped_from_its_piece_follow_their_neighbours():
    g = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0)), -1).reshape(-1, 2)
    neutral = np.c_[g * 0.01, np.zeros(25)]  # a 5 x 5 sheet, 1 cm apart
    q = (np.arange(4)[:, None] * 5 + np.arange(4)).ravel()
    faces = np.r_[np.c_[q, q + 1, q + 6], np.c_[q, q + 6, q + 5]]
    keep = np.arange(25) != 12  # NFR dropped the centre vertex
    moved = neutral[keep].copy()
    moved[:, 2] += 0.002 * (neutral[keep, 0] > 0.025)  # code 1 lifts the two right columns
    outs = np.stack([neutral[keep], moved]) - neutral[keep].mean(0)
    frames = place_output(neutral, faces, neutral[keep], outs, 1.0, [0, 0, 0])
    np.testing.assert_allclose(frames[0], neutral, atol=1e-7)
    lift = frames[1, :, 2] - frames[0, :, 2]
    np.testing.assert_allclose(lift[keep], 0.002 * (neutral[keep, 0] > 0.025), atol=1e-7)
    assert lift[12] in (0.0, pytest.approx(0.002))  # as its nearest rigged neighbour


def test_place_output_refuses_a_mesh_that_is_not_the_input():
    neutral = np.random.default_rng(0).normal(size=(50, 3))
    faces = np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match="only 0 match"):
        place_output(neutral, faces, neutral[:40] + 1.0, np.zeros((1, 40, 3)), 1.0, [0, 0, 0])


def test_nfr_without_its_code_or_bundle_fails_at_start_in_one_sentence(
        standin_python, standin_models, tmp_path, cfg):
    ctx = {"face": cfg.face, "render": cfg.render}
    sc = nfr_stage(standin_python, standin_models[0])
    sc.options["repo"] = str(tmp_path)  # a folder without NFR's code
    with pytest.raises(BridgeError, match=r"could not start \(probe\): ImportError: cannot "
                                          r"import NFR's test_user.py") as e:
        make_backend("rigging", sc, ctx, "cpu")
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="is not NFR's data bundle: .*gradients_std.npy"):
        make_backend("rigging", nfr_stage(standin_python, tmp_path), ctx, "cpu")


# ---- Hunyuan3D 2.1 ----

def hunyuan_stage(python, model, **options):
    return StageConfig(backend="hunyuan3d", model=str(model), options=dict(
        {"python": python, "repo": str(HUNYUAN_REPO), "paint_texture_size": 512,
         "texture_size": 128}, **options))


@pytest.fixture(scope="module")
def painted(standin_python, standin_models, cfg):
    ctx = {"face": cfg.face, "render": cfg.render}
    b = identity_rows({"identity": np.array([3])}, cfg)
    b = make_backend("rigging", StageConfig(), ctx, "cpu")(b)
    b = make_backend("neutral_face", cfg.generate.stages.neutral_face, ctx, "cpu")(b)
    tx = make_backend("texturing", hunyuan_stage(standin_python, standin_models[1]), ctx, "cpu")
    out = tx({k: v.copy() for k, v in b.items()})
    tx.server.close()
    return tx, b, out


def uv_to_surface(obj: ObjMesh, uv: np.ndarray) -> np.ndarray:
    """The 3-D point of ``obj`` at each atlas coordinate (the inverse of its UV map)."""
    from scipy.spatial import cKDTree

    tri_uv = obj.corner_uv
    _, cand = cKDTree(tri_uv.mean(1)).query(uv, k=16)
    best = np.zeros((len(uv), 3))
    err = np.full(len(uv), np.inf)
    for j in range(cand.shape[1]):
        t = tri_uv[cand[:, j]]
        m = np.stack([t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]], -1)  # (N, 2, 2)
        ok = np.abs(np.linalg.det(m)) > 1e-14
        w = np.zeros((len(uv), 2))
        w[ok] = np.linalg.solve(m[ok], (uv - t[:, 0])[ok][..., None])[..., 0]
        bary = np.c_[1 - w.sum(1), w]
        out = -np.minimum(bary, 0).sum(1) + (~ok) * 1e9
        better = out < err
        p = obj.vertices[obj.faces[cand[:, j]]]
        best[better] = (bary[:, :, None] * p).sum(1)[better]
        err[better] = out[better]
    return best


def test_hunyuan_albedo_comes_back_in_the_meshs_own_uvs(painted, renderer):
    tx, b, out = painted
    tex = out["texture"][0]
    assert tex.shape == (128, 128, 3)
    obj = read_obj(next(Path(tx.server.work_dir).glob("identity-1/textured_mesh.obj")))
    neutral = b["vertices"][0, 0].astype(np.float64)
    # the stand-in re-unwrapped the mesh: its UVs are not the face model's
    assert obj.faces.shape[0] == tx.model.template.faces.shape[0]
    attrs, covered = renderer.bake_uv(tx.model.mesh(neutral), neutral, 128)
    # its albedo encodes its own UVs (red = u, green = v): decode, find that point on its mesh
    uv = tex[covered][:, :2].astype(np.float64) / 255.0
    where = uv_to_surface(obj, uv)
    err = np.linalg.norm(where - attrs[..., :3][covered], axis=1)
    assert np.median(err) < 5e-3 and np.mean(err < 1e-2) > 0.9  # the same surface point
    wrong = uv_to_surface(obj, tx.model.template.corner_uv.reshape(-1, 2)[:len(uv)])
    assert np.median(np.linalg.norm(wrong - attrs[..., :3][covered][:len(wrong)], axis=1)) > 0.02


def test_hunyuan_gets_the_neutral_image_without_its_background(painted):
    tx, b, _ = painted
    ref = np.asarray(Image.open(next(Path(tx.server.work_dir).glob("identity-1/image.png"))))
    assert ref.shape[-1] == 4
    np.testing.assert_array_equal(ref[..., 3] > 0, b["frontal_depth"][0] > 0)
    np.testing.assert_array_equal(ref[..., :3], b["neutral_image"][0])
    np.testing.assert_array_equal(masked_reference(b["neutral_image"][0],
                                                   b["frontal_depth"][0]), ref)


def test_surface_colors_and_a_remeshed_answer():
    quad = ObjMesh(np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float),
                   np.array([[0, 1, 2], [0, 2, 3]]),
                   np.array([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]], float), None)
    tex = np.zeros((64, 64, 3), np.float32)
    tex[..., 0] = (np.arange(64) + 0.5)[None, :] * 4  # red grows with u
    tex[..., 1] = (63.5 - np.arange(64))[:, None] * 4  # green grows with v (row 0 is v = 1)
    pts = np.array([[0.25, 0.5, 0.0], [0.75, 0.1, 0.0], [0.5, 0.9, 0.02]])
    cols, dist = surface_colors(quad, tex, pts)
    np.testing.assert_allclose(cols[:, 0] / 256, pts[:, 0], atol=0.02)
    np.testing.assert_allclose(cols[:, 1] / 256, pts[:, 1], atol=0.02)
    np.testing.assert_allclose(dist, [0, 0, 0.02], atol=1e-9)


def test_hunyuan_checks_its_weights_folder_and_code(standin_python, standin_models, tmp_path,
                                                    cfg):
    ctx = {"face": cfg.face, "render": cfg.render}
    with pytest.raises(FileNotFoundError, match="lacks .*models--tencent--Hunyuan3D-2.1.*"
                                                "RealESRGAN_x4plus.pth"):
        make_backend("texturing", hunyuan_stage(standin_python, tmp_path), ctx, "cpu")
    sc = hunyuan_stage(standin_python, standin_models[1])
    sc.options["repo"] = str(tmp_path)
    with pytest.raises(BridgeError, match="cannot import hy3dpaint's textureGenPipeline"):
        make_backend("texturing", sc, ctx, "cpu")
    with pytest.raises(OptionsError, match="resolution must be 512 or 768"):
        make_backend("texturing", hunyuan_stage(standin_python, tmp_path, resolution=600),
                     ctx, "cpu")


# ---- pain3d generate / check with both backends behind the bridge ----

def bridged_overrides(python, models, rig_options="") -> list[str]:
    nfr, hy = models
    return ["generate.stages.rigging.backend=nfr", f"generate.stages.rigging.model={nfr}",
            f"generate.stages.rigging.options={{python: {python}, repo: {NFR_REPO}{rig_options}}}",
            "generate.stages.texturing.backend=hunyuan3d", f"generate.stages.texturing.model={hy}",
            f"generate.stages.texturing.options={{python: {python}, repo: {HUNYUAN_REPO}, "
            "paint_texture_size: 512}"]


def hot_pixels(table) -> list[int]:
    """Per pain frame: heatmap pixels hotter than zero displacement (inferno's black)."""
    import io

    out = []
    for h in table.column("heatmap").to_pylist():
        if h is not None:
            a = np.asarray(Image.open(io.BytesIO(h))).astype(int)
            out.append(int((a.max(-1) > 8).sum()))
    return out


def generate(tmp_path, python, models, extra=()):
    import pyarrow.parquet as pq

    from cluster.cli import main

    out = tmp_path / "ds"
    assert main(["generate", "--identities", "2", "--out", str(out), "render.size=64",
                 "face.texture_size=128", "generate.stages.qa.backend=none",
                 *bridged_overrides(python, models, *extra)]) == 0
    return out, pq.read_table(out / "frames")


@pytest.mark.slow
def test_generate_with_nfr_and_hunyuan3d_behind_the_bridge(ray_local, standin_python,
                                                           standin_models, tmp_path):
    import json

    out, t = generate(tmp_path, standin_python, standin_models)
    m = json.loads((out / "manifest.json").read_text())
    assert t.num_rows == m["counts"]["frames"] == 2 * 11 * 3
    hot = hot_pixels(t)
    assert len(hot) == 60 and min(hot) > 0  # each pain frame shows the stand-in's motion ...
    masks = t.filter(t.column("expression").to_numpy() > 0).column("mask").to_pylist()
    import io
    area = [int((np.asarray(Image.open(io.BytesIO(mk))) > 0).sum()) for mk in masks]
    assert max(h / a for h, a in zip(hot, area)) < 0.4  # ... only in its regions
    params = np.stack(t.column("expression_params").to_numpy(zero_copy_only=False))
    assert params.shape[1] == 53  # the ICT codes each expression was rigged with
    tex = np.asarray(Image.open(out / "textured_meshes/000000/neutral.png"))
    assert tex.shape == (128, 128, 3) and tex[..., 0].std() > 20  # the stand-in's UV colours
    assert not bridge_workers(within=15.0)  # the actors' workers ended with them


def bridge_workers(within: float) -> list:
    """Model-bridge worker processes still alive after ``within`` seconds."""
    import time

    import psutil

    def workers():  # this test process's descendants only (Ray's workers included)
        out = []
        for p in psutil.Process().children(recursive=True):
            try:
                if (p.status() != psutil.STATUS_ZOMBIE
                        and any(a.endswith("bridge/worker.py") for a in p.cmdline())):
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    deadline = time.monotonic() + within
    while True:
        alive = workers()
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


@pytest.mark.slow
def test_generate_at_code_zero_has_all_zero_heatmaps(ray_local, standin_python, standin_models,
                                                     tmp_path):
    """Every expression at code 0 (code_at_5: 0) is the neutral passed through NFR: no heat,
    although the stand-in drifts every vertex away from the input neutral."""
    _, t = generate(tmp_path, standin_python, standin_models, (", code_at_5: 0.0",))
    hot = hot_pixels(t)
    assert len(hot) == 60 and max(hot) == 0


def test_check_starts_each_worker_and_imports_its_code(standin_python, standin_models,
                                                       tmp_path, capsys):
    from cluster.cli import main

    args = ["generate.stages.qa.backend=none", *bridged_overrides(standin_python, standin_models)]
    assert main(["check", *args]) == 0
    out = capsys.readouterr().out
    assert out.count("[    found    ] model code (worker started, imports checked)") == 2
    assert "numpy 1.26" in out and "torch 2.13" in out
    (tmp_path / "empty").mkdir()
    assert main(["check", *args, f"generate.stages.texturing.options.repo={tmp_path / 'empty'}",
                 f"generate.stages.rigging.model={tmp_path}"]) == 1
    out = capsys.readouterr().out
    assert "[wrong-format ] model code" in out and "cannot import hy3dpaint" in out
    assert "[   missing   ] weights" in out and "gradients_std.npy" in out


def test_nfr_rigs_the_flame_format_head_and_keeps_its_eyeballs(standin_python, standin_models,
                                                               test_flame):
    from actors.nfr import _components

    cfg = load_config("local", ["render.size=64"])
    cfg.face = test_flame[1]
    ctx = {"face": cfg.face, "render": cfg.render}
    rig = make_backend("rigging", nfr_stage(standin_python, standin_models[0]), ctx, "cpu")
    b = identity_rows({"identity": np.array([5])}, cfg)
    out = rig({k: v.copy() for k, v in b.items()})
    rig.server.close()
    v = out["vertices"][0].astype(np.float64)
    assert v.shape == (11, 5023, 3)
    labels = _components(rig.faces, 5023)
    pieces = np.bincount(labels)
    assert len(pieces) >= 3  # the face and (at least) two eyeballs NFR does not rig
    still = labels != pieces.argmax()
    assert np.abs(v[1:, still] - v[:1, still]).max() < 1e-9
    assert np.abs(v[1:, ~still] - v[:1, ~still]).max() > 1e-4
