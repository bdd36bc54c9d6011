import numpy as np
import pytest

from faces import builtin_head as H
from faces.geometry import check_mesh
from faces.regions import eye_local
from faces.rig import apply_aus, intensity_curve


@pytest.fixture(scope="module")
def neutral(builtin_model):
    from faces.demographics import identity_rng, sample_demographics

    demo = sample_demographics(5, 0)
    shape = builtin_model.sample_shape(demo, identity_rng(0, 5, "shape"))
    return builtin_model.neutral(shape)


def _region(template, name):
    return template.mesh.regions[name]


def test_zero_aus_change_nothing(neutral):
    assert np.array_equal(apply_aus(neutral, {}), neutral)
    zero = {k: 0.0 for k in ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43", "AU12", "AU25", "AU26")}
    assert np.array_equal(apply_aus(neutral, zero), neutral)


def test_au4_lowers_brows_and_draws_them_together(neutral, template):
    posed = apply_aus(neutral, {"AU4": 4})
    b = _region(template, "brow")
    dy = posed[b, 1] - neutral[b, 1]
    assert dy.mean() < -0.003  # several millimetres down
    # towards the midline on both sides
    for side in ("brow_r", "brow_l"):
        idx = _region(template, side)
        assert np.abs(posed[idx, 0]).mean() < np.abs(neutral[idx, 0]).mean() - 0.001
    # a furrow appears between the brows: glabella skin moves, brows more than forehead top
    g = _region(template, "glabella")
    assert np.linalg.norm(posed[g] - neutral[g], axis=1).max() > 0.002


def _gap(v, template, sign):
    t = template
    s_up, _, _ = eye_local(t.mesh.vertices[_region(t, "upper_lid_margin")].astype(float), sign)
    s_lo, _, _ = eye_local(t.mesh.vertices[_region(t, "lower_lid_margin")].astype(float), sign)
    up = _region(t, "upper_lid_margin")[np.abs(s_up) < 0.3]
    lo = _region(t, "lower_lid_margin")[np.abs(s_lo) < 0.3]
    up = up[np.sign(t.mesh.vertices[up, 0]) == sign]
    lo = lo[np.sign(t.mesh.vertices[lo, 0]) == sign]
    assert len(up) >= 3 and len(lo) >= 3
    return v[up, 1].mean() - v[lo, 1].mean()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_au43_closes_the_eye(neutral, template, sign):
    g0 = _gap(neutral, template, sign)
    assert g0 > 0.006  # an open eye, several mm
    g1 = _gap(apply_aus(neutral, {"AU43": 1}), template, sign)
    assert 0 <= g1 < 0.1 * g0
    # half closure is in between
    gh = _gap(apply_aus(neutral, {"AU43": 0.5}), template, sign)
    assert 0.3 * g0 < gh < 0.7 * g0


def test_closed_lids_stay_outside_the_eyeball(neutral, template):
    posed = apply_aus(neutral, {"AU43": 1, "AU6": 5, "AU7": 5})
    for part, sign in (("eyeball_r", 1.0), ("eyeball_l", -1.0)):
        c = H.EYE_CENTER * np.array([sign, 1, 1]) + (posed[template.part_slices[part]].mean(0)
                                                      - template.mesh.vertices[template.part_slices[part]].mean(0))
        lid = np.union1d(_region(template, "upper_lid_margin"), _region(template, "lower_lid_margin"))
        lid = lid[np.sign(template.mesh.vertices[lid, 0]) == sign]
        q = posed[lid] - c
        # distance from the eyeball's axis in the y-z plane, scaled by the spheroid
        r = np.sqrt(q[:, 1] ** 2 + q[:, 2] ** 2 + (q[:, 0] * H.EYE_R / H.EYE_AX) ** 2)
        assert np.all(r > H.EYE_R * 0.98)


def test_au10_raises_upper_lip(neutral, template):
    posed = apply_aus(neutral, {"AU10": 4})
    ul = _region(template, "upper_lip")
    assert (posed[ul, 1] - neutral[ul, 1]).mean() > 0.0015
    ll = _region(template, "lower_lip")
    assert abs((posed[ll, 1] - neutral[ll, 1]).mean()) < 0.0005  # lower lip stays


def test_au9_raises_nose_wings(neutral, template):
    posed = apply_aus(neutral, {"AU9": 4})
    w = _region(template, "nose_wing")
    assert (posed[w, 1] - neutral[w, 1]).mean() > 0.002


def test_au6_raises_cheeks(neutral, template):
    posed = apply_aus(neutral, {"AU6": 4})
    c = _region(template, "cheek")
    dy = posed[c, 1] - neutral[c, 1]
    assert dy.mean() > 0.0008 and dy.max() > 0.0025


def test_au7_raises_lower_lid(neutral, template):
    posed = apply_aus(neutral, {"AU7": 5})
    lo = _region(template, "lower_lid_margin")
    assert (posed[lo, 1] - neutral[lo, 1]).mean() > 0.0007
    assert _gap(posed, template, 1.0) < 0.8 * _gap(neutral, template, 1.0)


def test_intensity_is_monotonic_and_combinable(neutral, template):
    b = _region(template, "brow")
    d = [np.abs(apply_aus(neutral, {"AU4": i})[b, 1] - neutral[b, 1]).mean() for i in (1, 3, 5)]
    assert 0 < d[0] < d[1] < d[2]
    assert intensity_curve(1) > 0.2  # trace intensity is visible
    both = apply_aus(neutral, {"AU4": 4, "AU10": 4})
    assert (both[b, 1] - neutral[b, 1]).mean() < -0.003
    ul = _region(template, "upper_lip")
    assert (both[ul, 1] - neutral[ul, 1]).mean() > 0.0015


def test_pain_expressions_do_not_fold_the_mesh(builtin_model, template):
    from faces.demographics import identity_rng, sample_demographics

    for i in range(8):
        demo = sample_demographics(i, 11)
        v0 = builtin_model.neutral(builtin_model.sample_shape(demo, identity_rng(11, i, "shape")))
        for aus in ({"AU4": 5}, {"AU6": 5}, {"AU7": 5}, {"AU9": 5}, {"AU10": 5}, {"AU43": 1},
                    {"AU4": 5, "AU43": 1}):
            chk = check_mesh(apply_aus(v0, aus), v0, template.mesh.faces)
            assert chk.degenerate == 0 and chk.flipped == 0, (i, aus, chk)
        # every PSPI AU at its maximum: at most a couple of triangles fold at the inner lid
        extreme = {"AU4": 5, "AU6": 5, "AU7": 5, "AU9": 5, "AU10": 5, "AU43": 1}
        chk = check_mesh(apply_aus(v0, extreme), v0, template.mesh.faces)
        assert chk.degenerate == 0 and chk.flipped <= 4, (i, chk)


def test_bad_au_input_is_rejected(neutral):
    with pytest.raises(ValueError, match="AU99"):
        apply_aus(neutral, {"AU99": 1})
    with pytest.raises(ValueError, match="outside 0-5"):
        apply_aus(neutral, {"AU4": 7})
