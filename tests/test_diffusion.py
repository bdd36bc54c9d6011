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


def _two_frames():
    rng = np.random.default_rng(0)
    a, b = ((rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(2))
    ma, mb = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    ma[:32, :32] = True  # A repaints its top-left, B its bottom-right
    mb[32:, 32:] = True
    return a, b, ma, mb


def _gens(*seeds):
    import torch

    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.fixture(scope="module")
def inpaint_pipe(tiny_models):
    from actors.diffusion import load_pipeline

    return load_pipeline("KandinskyV22InpaintPipeline", str(tiny_models["inpaint"]), "cpu",
                         "inpainting")


def test_batched_inpainting_keeps_each_frames_own_content(inpaint_pipe):
    """diffusers 0.42 blends every frame with the first frame's image inside the first
    frame's mask; pain3d's call keeps each frame's own latents outside its repainted region."""
    import torch
    from PIL import Image

    from actors.diffusion import inpaint_frames

    a, b, ma, mb = _two_frames()
    emb, neg = torch.randn(2, 32, generator=_gens(5)[0]), torch.randn(2, 32, generator=_gens(6)[0])
    lat = torch.stack(inpaint_frames(inpaint_pipe, [a, b], [ma, mb], emb, neg, _gens(1, 2), 64,
                                     3, 4.0, output_type="latent"))

    def enc(x):
        t = torch.from_numpy(x).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            return inpaint_pipe.movq.encode(t)["latents"][0]

    la, lb = enc(a), enc(b)
    corner = (slice(None), slice(6, 8), slice(0, 2))  # bottom-left: both frames keep it
    assert (lat[1][corner] - lb[corner]).abs().max() < 1e-5  # B's own content
    assert (lat[0][corner] - la[corner]).abs().max() < 1e-5
    assert (lat[1][corner] - la[corner]).abs().max() > 0.05
    # the premise: the pipeline called directly paints A's content into B there
    raw = inpaint_pipe(image=[Image.fromarray(a), Image.fromarray(b)],
                       mask_image=[Image.fromarray(m.astype(np.uint8) * 255) for m in (ma, mb)],
                       image_embeds=emb, negative_image_embeds=neg, height=64, width=64,
                       num_inference_steps=3, generator=_gens(1, 2), output_type="latent").images
    assert (raw[1][corner] - la[corner]).abs().max() < 1e-5


def test_a_frame_inpaints_the_same_alone_and_in_a_batch(inpaint_pipe):
    import torch

    from actors.diffusion import inpaint_frames

    a, b, ma, mb = _two_frames()
    emb, neg = torch.randn(2, 32, generator=_gens(5)[0]), torch.randn(2, 32, generator=_gens(6)[0])
    both = inpaint_frames(inpaint_pipe, [a, b], [ma, mb], emb, neg, _gens(1, 2), 64, 3, 4.0)
    alone = inpaint_frames(inpaint_pipe, [b], [mb], emb[1:], neg[1:], _gens(2), 64, 3, 4.0)
    assert np.abs(both[1] - alone[0]).max() < 1e-3
    assert np.abs(both[0] - both[1]).mean() > 0.01


def test_prior_is_loaded_without_its_image_encoder(tiny_models):
    from actors.diffusion import KandinskyOptions, _KandinskyPrior

    p = _KandinskyPrior(KandinskyOptions(prior=str(tiny_models["prior"])), "cpu", "inpainting")
    assert p.prior.image_encoder is None
    assert p.loaded_bytes > 0 and p.skipped_bytes and p.skipped_bytes > 1000
    emb, neg = p.embeds(["a face"], _gens(3))
    assert emb.shape == neg.shape == (1, 32)


@pytest.mark.parametrize("key,value,needle", [
    ("size", 100, "size 100 is not a multiple of 64"),
    ("guidance", 7, "unknown generate.stages.inpainting.options.guidance"),
    ("steps", "many", "options.steps must be an integer"),
    ("negative_prompt", " ", "negative_prompt is empty"),
])
def test_kandinsky_options_are_checked(tiny_models, key, value, needle):
    from cluster.validate import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config("tiny-diffusion", _overrides(tiny_models)
                    + [f"generate.stages.inpainting.options.{key}={value!r}"
                       if isinstance(value, str) else
                       f"generate.stages.inpainting.options.{key}={value}"])
    assert needle in str(e.value), str(e.value)


def test_every_stage_refuses_an_unknown_option():
    from actors.base import backend_class, backend_names
    from cluster.validate import ConfigError

    stages = ("rigging", "neutral_face", "texturing", "inpainting", "qa")
    for stage in stages:
        for backend in backend_names(stage):
            accepted = [f.name for f in __import__("dataclasses").fields(
                backend_class(stage, backend).Options)]
            with pytest.raises(ConfigError) as e:
                load_config("local", [f"generate.stages.{stage}.backend={backend}",
                                      f"generate.stages.{stage}.options.bogus=1"])
            msg = str(e.value)
            assert f"{stage}.options.bogus for backend '{backend}'" in msg, msg
            assert all(a in msg for a in accepted), msg


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
    # one background per identity and view: outside every expression's head it is the same
    rows = pq.read_table(out / "frames" / "identity=000000.parquet").to_pylist()
    backs = {}
    for v in range(3):
        mine = [r for r in rows if r["view"] == v]
        imgs = np.stack([np.asarray(Image.open(io.BytesIO(r["image"])).convert("RGB")) for r in mine])
        heads = np.stack([np.asarray(Image.open(io.BytesIO(r["mask"]))) > 0 for r in mine])
        outside = ~heads.any(0)
        assert outside.mean() > 0.2 and len(mine) == 11
        assert (imgs[:, outside] == imgs[0, outside]).all()
        backs[v] = (imgs[0].astype(int), outside)
    both = backs[0][1] & backs[2][1]  # each view has a background of its own (its own seed)
    assert np.abs(backs[0][0][both] - backs[2][0][both]).mean() > 5


def test_missing_weights_fail_at_startup(tmp_path, capsys):
    out = tmp_path / "never"
    rc = main(["generate", "--config", "tiny-diffusion", "--out", str(out),
               "generate.stages.neutral_face.model=/nonexistent/kandinsky-controlnet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "/nonexistent/kandinsky-controlnet" in err and "huggingface-cli download" in err
    assert not out.exists()


def test_bridged_backends_say_what_is_missing():
    cfg = load_config("local")
    ctx = {"face": cfg.face, "render": cfg.render}
    with pytest.raises(ValueError, match="rigging.options.python is required"):
        make_backend("rigging", StageConfig(backend="nfr", model="x"), ctx, "cpu")
    with pytest.raises(ValueError, match="texturing.options.repo is required"):
        make_backend("texturing", StageConfig(backend="hunyuan3d", model="x",
                                              options={"python": "python3"}), ctx, "cpu")
    with pytest.raises(ValueError, match="unknown rigging backend"):
        make_backend("rigging", StageConfig(backend="magic"), ctx, "cpu")


