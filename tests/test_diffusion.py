"""Kandinsky 2.2 backends through the real diffusers pipelines, on tiny random models built
in code (no download)."""
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from actors.base import StageConfig, make_backend
from cluster.cli import main
from cluster.config import load_config
from faces.demographics import identity_rng
from faces.texture import make_texture
from pipelines.tasks import identity_rows


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from actors.tiny_diffusion import make_tiny_kandinsky

    return make_tiny_kandinsky(tmp_path_factory.mktemp("tinyk"))


def _overrides(paths):
    return [f"generate.stages.neutral_face.model={paths['controlnet']}",
            f"generate.stages.neutral_face.options.prior={paths['prior']}",
            f"generate.stages.inpainting.model={paths['inpaint']}",
            f"generate.stages.inpainting.options.prior={paths['prior']}"]


def _rows(cfg, ids):
    ctx = {"face": cfg.face, "render": cfg.render}
    b = identity_rows({"identity": np.array(ids)}, cfg)
    return make_backend("rigging", cfg.generate.stages.rigging, ctx, "cpu")(b), ctx


def test_neutral_face_is_seeded_per_identity(tiny_models):
    cfg = load_config("tiny-diffusion", _overrides(tiny_models))
    b, ctx = _rows(cfg, [0, 1])
    nf = make_backend("neutral_face", cfg.generate.stages.neutral_face, ctx, "cpu")
    a = nf({k: v.copy() for k, v in b.items()})
    assert a["neutral_image"].shape == (2, 64, 64, 3)
    assert a["frontal_depth"].shape == (2, 64, 64) and (a["frontal_depth"] > 0).mean() > 0.2
    assert not np.array_equal(a["neutral_image"][0], a["neutral_image"][1])
    # identity 1 alone gives the same picture as inside the batch (up to float rounding of
    # batched CPU kernels), and a different identity a different one
    b1, _ = _rows(cfg, [1])
    one = nf(b1)
    diff = np.abs(one["neutral_image"][0].astype(int) - a["neutral_image"][1].astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.5
    other = np.abs(a["neutral_image"][0].astype(int) - a["neutral_image"][1].astype(int))
    assert other.mean() > 10


def test_depth_hint_is_near_bright():
    from actors.diffusion import KandinskyNeutralFace

    d = np.zeros((4, 4), np.float32)
    d[1, 1], d[2, 2] = 0.5, 0.6
    h = KandinskyNeutralFace.depth_hint(d)
    assert h.shape == (3, 4, 4) and h[0, 1, 1] == 1.0 and h[0, 2, 2] == pytest.approx(0.2)
    assert h[0, 0, 0] == 0.0


def test_tiny_diffusion_preset_end_to_end(ray_local, tiny_models, tmp_path, capsys):
    out = tmp_path / "td"
    rc = main(["generate", "--config", "tiny-diffusion", "--out", str(out)]
              + _overrides(tiny_models))
    assert rc == 0, capsys.readouterr().err[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["frames"] == 2 * 33 and m["counts"]["heatmaps"] == 2 * 30
    st = m["config"]["generate"]["stages"]
    assert st["neutral_face"]["backend"] == "kandinsky" and st["texturing"]["backend"] == "projection"
    # the albedo was baked from the generated image, not the procedural one
    baked = np.asarray(Image.open(out / "textured_meshes" / "000000" / "neutral.png"))
    demo_row = pq.read_table(out / "frames" / "identity=000000.parquet").slice(0, 1).to_pylist()[0]
    from faces.demographics import Demographics

    demo = Demographics(demo_row["age_group"], demo_row["gender"], demo_row["ethnicity"])
    procedural = make_texture(demo, identity_rng(0, 0, "texture"), baked.shape[0])
    assert np.abs(baked.astype(int) - procedural.astype(int)).mean() > 20
    img = np.asarray(Image.open(io.BytesIO(demo_row["image"])))
    assert img.shape == (64, 64, 3)


def test_missing_weights_fail_at_startup(tmp_path, capsys):
    out = tmp_path / "never"
    rc = main(["generate", "--config", "tiny-diffusion", "--out", str(out),
               "generate.stages.neutral_face.model=/nonexistent/kandinsky-controlnet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "/nonexistent/kandinsky-controlnet" in err and "huggingface-cli download" in err
    assert not out.exists()


NFR_STANDIN = '''
import numpy as np
CALLS = []
def load(checkpoint, device):
    CALLS.append((checkpoint, device))
    def rigger(vertices, faces, aus):
        out = vertices.copy()
        out[:, 1] += 0.001 * aus.get("AU4", 0.0)   # a recognisable, AU-dependent shift
        return out
    return rigger
'''

HUNYUAN_STANDIN = '''
import numpy as np
def load(model_path, device):
    def painter(vertices, faces, corner_uv, image, texture_size):
        t = np.zeros((texture_size, texture_size, 3), np.uint8)
        t[...] = image.reshape(-1, 3).mean(0).astype(np.uint8)
        return t
    return painter
'''


@pytest.fixture
def standins(tmp_path, monkeypatch):
    (tmp_path / "nfr_standin.py").write_text(NFR_STANDIN)
    (tmp_path / "hy3d_standin.py").write_text(HUNYUAN_STANDIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_nfr_adapter_plumbing(standins):
    import nfr_standin

    cfg = load_config("local", ["render.size=64", "face.texture_size=128"])
    ctx = {"face": cfg.face, "render": cfg.render}
    b = identity_rows({"identity": np.array([2])}, cfg)
    sc = StageConfig(backend="nfr", model="/ckpt/nfr.pth", options={"module": "nfr_standin"})
    out = make_backend("rigging", sc, ctx, "cpu")(b)
    assert nfr_standin.CALLS == [("/ckpt/nfr.pth", "cpu")]
    v = out["vertices"][0]
    assert v.shape[0] == 11
    au4 = b["aus"][0][:, 0]
    np.testing.assert_allclose(v[:, :, 1].mean(1) - v[0, :, 1].mean(), 0.001 * au4, atol=1e-6)
    assert np.array_equal(out["expression_params"][0], b["aus"][0])


def test_adapters_say_what_is_missing():
    cfg = load_config("local")
    ctx = {"face": cfg.face, "render": cfg.render}
    with pytest.raises(RuntimeError, match="Neural Face Rigging"):
        make_backend("rigging", StageConfig(backend="nfr", model="x",
                                            options={"module": "no_such_nfr"}), ctx, "cpu")
    with pytest.raises(RuntimeError, match="Hunyuan3D"):
        make_backend("texturing", StageConfig(backend="hunyuan3d", model="x",
                                              options={"module": "no_such_hy3d"}), ctx, "cpu")
    with pytest.raises(ValueError, match="unknown rigging backend"):
        make_backend("rigging", StageConfig(backend="magic"), ctx, "cpu")


def test_hunyuan_adapter_plumbing(standins):
    cfg = load_config("local", ["render.size=64", "face.texture_size=128"])
    ctx = {"face": cfg.face, "render": cfg.render}
    b, _ = _rows(cfg, [0])
    b = make_backend("neutral_face", cfg.generate.stages.neutral_face, ctx, "cpu")(b)
    sc = StageConfig(backend="hunyuan3d", model="/weights/hy3d",
                     options={"module": "hy3d_standin", "texture_size": 64})
    out = make_backend("texturing", sc, ctx, "cpu")(b)
    assert out["texture"].shape == (1, 64, 64, 3)
    assert np.all(out["texture"][0] == b["neutral_image"][0].reshape(-1, 3).mean(0).astype(np.uint8))
