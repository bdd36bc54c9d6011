"""FLAME with only what a FLAME user has: the FLAME-format test model (real dimensions, the
built-in head's shape), its texture space and landmark embedding; the AU rig is derived."""
import dataclasses
import json
import pickle

import numpy as np
import pytest

from faces.au_measure import TARGETS, measure
from faces.flame import FlameModel
from faces.models import FaceConfig, make_face_model
from faces.render import Camera

AUS = ("AU4", "AU6", "AU7", "AU9", "AU10")


@pytest.fixture(scope="module")
def flame(test_flame):
    return make_face_model(test_flame[1])


def test_the_test_model_has_flame_dimensions(test_flame):
    d, _ = test_flame
    with open(d / "flame2023.pkl", "rb") as fh:
        raw = pickle.load(fh)
    assert raw["v_template"].shape == (5023, 3)
    assert raw["shapedirs"].shape == (5023, 3, 400)
    assert raw["posedirs"].shape == (5023, 3, 36)
    assert raw["J_regressor"].shape == (5, 5023) and hasattr(raw["J_regressor"], "tocsc")
    assert raw["weights"].shape == (5023, 5)
    assert np.allclose(raw["weights"].sum(1), 1.0)
    assert raw["kintree_table"].tolist() == [[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]
    assert raw["f"].max() == 5022 and len(np.unique(raw["f"])) == 5023  # every vertex used


def test_chumpy_and_numpy_pickles_hold_the_same_model(test_flame):
    d, _ = test_flame
    blob = (d / "generic_model.pkl").read_bytes()
    assert b"chumpy" in blob  # FLAME 2020's layout: chumpy objects, read without chumpy
    a, b = FlameModel.load(d / "generic_model.pkl"), FlameModel.load(d / "flame2023.pkl")
    assert np.array_equal(a.v_template, b.v_template) and np.array_equal(a.exprdirs, b.exprdirs)
    assert a.n_shape == 300 and a.n_expression == 100


def test_derived_rig_fits_every_au(flame):
    assert flame.derived is not None
    r2 = {au: e["fit_r2"] for au, e in flame.derived["aus"].items()}
    assert set(r2) >= set(AUS) | {"AU43", "AU26"}
    assert min(r2.values()) > 0.95, r2


@pytest.fixture(scope="module")
def readings(flame):
    cam = Camera(target=flame.camera_target)

    def pts(v):
        return {g: cam.project(np.asarray(v, np.float64)[i], 512)
                for g, i in flame.anchors().items()}

    out = {}
    for ident in range(4):
        shape = flame.sample_shape(None, np.random.default_rng(100 + ident))
        neutral = pts(flame.neutral(shape))
        for au in AUS:
            for lv in range(6):
                out[ident, au, lv] = measure(neutral, pts(flame.posed(shape, {au: lv})))
        out[ident, "AU43", 1] = measure(neutral, pts(flame.posed(shape, {"AU43": 1})))
    return out


@pytest.mark.parametrize("au", AUS)
def test_au_visibility_meets_the_built_in_targets_on_flame(readings, au):
    for i in range(4):
        series = [readings[i, au, lv][au] for lv in range(6)]
        assert series[5] >= TARGETS[au], (au, i, np.round(series, 4))
        assert np.all(np.diff(series) > 1e-4), (au, i, np.round(series, 4))  # monotone


def test_au43_closes_flame_eyes(readings):
    for i in range(4):
        assert readings[i, "AU43", 1]["AU43"] > 0.07


@pytest.mark.parametrize("au,partner", [("AU6", "AU7"), ("AU7", "AU6"), ("AU9", "AU10"),
                                        ("AU10", "AU9")])
def test_flame_aus_keep_their_effects_separate(readings, au, partner):
    for i in range(4):
        r = readings[i, au, 5]
        assert r[au] > 2 * abs(r[partner]), (au, i, r)


def test_given_basis_overrides_the_derived_rig(flame, test_flame, tmp_path):
    doc = json.loads(open(flame.basis.source).read())
    doc["aus"]["AU4"]["expression"] = [list(2 * np.asarray(r)) for r in doc["aus"]["AU4"]["expression"]]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(doc))
    mine = make_face_model(dataclasses.replace(test_flame[1], au_basis_path=str(path)))
    assert mine.derived is None and mine.basis.source == str(path)
    psi_derived = flame.expression_params({"AU4": 3})[:100]
    assert np.allclose(mine.expression_params({"AU4": 3})[:100], 2 * psi_derived)


def test_derived_rig_is_cached_and_reused(flame, test_flame, monkeypatch):
    import faces.flame_rig as fr

    monkeypatch.setattr(fr, "derive_rig", lambda *a: pytest.fail("derived again"))
    again = make_face_model(test_flame[1])
    assert np.array_equal(again.expression_params({"AU9": 4}), flame.expression_params({"AU9": 4}))


def test_texture_space_gives_a_textured_face_that_mediapipe_finds(flame, renderer):
    from actors.qa import FaceReader, model_path
    from faces.demographics import Demographics

    app = flame.appearance(Demographics("elderly", "man", "Black"), np.random.default_rng(1))
    assert app.texture is not None and app.texture.shape == (512, 512, 3)
    out = renderer.render(flame.mesh(flame.neutral(np.zeros(300))), Camera(target=flame.camera_target),
                          256, texture=app.texture, materials=flame.materials(),
                          background=(128, 128, 128))
    assert out["mask"].mean() > 0.1
    reader = FaceReader(model_path(None))
    try:
        assert reader.read(out["rgb"]) is not None
    finally:
        reader.close()


def _broken(tmp_path, raw, **change):
    p = tmp_path / "flame_bad.pkl"
    with open(p, "wb") as fh:
        pickle.dump(dict(raw, **change), fh, protocol=2)
    return p


@pytest.fixture(scope="module")
def raw_model(test_flame):
    with open(test_flame[0] / "flame2023.pkl", "rb") as fh:
        return pickle.load(fh)


@pytest.mark.parametrize("change,needle", [
    ({"shapedirs": np.zeros((5000, 3, 400))}, "shapedirs has shape (5000, 3, 400)"),
    ({"weights": np.zeros((5023, 4))}, "weights has shape"),
    ({"posedirs": np.zeros((5023, 3, 10))}, "posedirs has shape"),
    ({"f": np.array([[0, 1, 9999]])}, "f indexes vertex 9999"),
])
def test_flame_file_of_the_wrong_shape_is_named(tmp_path, raw_model, change, needle):
    with pytest.raises(ValueError) as e:
        FlameModel.load(_broken(tmp_path, raw_model, **change))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_corrupt_and_wrong_format_files(tmp_path, test_flame):
    cut = tmp_path / "cut.pkl"
    cut.write_bytes((test_flame[0] / "flame2023.pkl").read_bytes()[:100_000])
    with pytest.raises(ValueError, match="is not a readable FLAME pickle"):
        FlameModel.load(cut)
    lst = tmp_path / "list.pkl"
    lst.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="holds a list"):
        FlameModel.load(lst)


def test_missing_texture_space_and_landmarks_are_named(test_flame, tmp_path):
    cfg = test_flame[1]
    with pytest.raises(FileNotFoundError, match="face.flame_uv_path .* does not exist"):
        make_face_model(dataclasses.replace(cfg, flame_uv_path=str(tmp_path / "none.npz")))
    with pytest.raises(ValueError, match="needs FLAME's landmark embedding"):
        make_face_model(dataclasses.replace(cfg, flame_landmarks_path=None))
    other = tmp_path / "other.npz"
    np.savez(other, vt=np.zeros((10, 2)), ft=np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="is it for another FLAME"):
        make_face_model(dataclasses.replace(cfg, flame_uv_path=str(other)))
