"""Every PSPI AU at intensity 5 moves its region by what a FACS coder scores as E.

Measured as the projected 2-D displacement of the template's anchor points in the frontal
image, over the outer-eye-corner distance (faces.au_measure), on identities of a seed the
rig was not tuned on."""
import numpy as np
import pytest

from faces.au_measure import (AU_MEASURES, TARGETS, eye_corner_distance, measure,
                              template_anchors, template_points)
from faces.render import Camera

AUS = ("AU4", "AU6", "AU7", "AU9", "AU10")
SEED = 2026


@pytest.fixture(scope="module")
def readings(builtin_model):
    """(identity, AU, intensity 0-5) -> measures; AU43 read at 0 and 1."""
    from faces.identity import make_identity

    cam = Camera(target=builtin_model.camera_target)
    out = {}
    for ident in range(10):
        spec = make_identity(ident, SEED, builtin_model)
        neutral = template_points(builtin_model.neutral(spec.shape), cam)
        for au in AUS + ("AU43",):
            levels = (0, 1) if au == "AU43" else range(6)
            for i in levels:
                posed = template_points(builtin_model.posed(spec.shape, {au: i}), cam)
                out[ident, au, i] = measure(neutral, posed)
    return out


def test_anchor_groups_cover_both_sides(template):
    v = template.mesh.vertices
    for group, idx in template_anchors().items():
        assert len(idx) >= 2, group
        assert np.any(v[idx, 0] > 0) and np.any(v[idx, 0] < 0), group
    d = np.linalg.norm(np.subtract(*v[template_anchors()["outer_canthus"]]))
    assert 0.08 < d < 0.10  # an adult's outer-eye-corner distance, about 9 cm


@pytest.mark.parametrize("au", AUS)
def test_intensity_5_reaches_the_target_on_every_identity(readings, au):
    got = np.array([readings[i, au, 5][au] for i in range(10)])
    assert got.min() >= TARGETS[au], (au, AU_MEASURES[au], got.round(4))


@pytest.mark.parametrize("au", AUS)
def test_every_au_is_monotone_in_intensity(readings, au):
    for i in range(10):
        series = [readings[i, au, k][au] for k in range(6)]
        assert series[0] == 0.0
        assert np.all(np.diff(series) > 1e-4), (au, i, np.round(series, 4))


def test_au43_closes_the_eye(readings):
    for i in range(10):
        assert readings[i, "AU43", 1]["AU43"] > 0.07  # ~7 mm of aperture gone


@pytest.mark.parametrize("au,partner", [("AU6", "AU7"), ("AU7", "AU6"), ("AU9", "AU10"),
                                        ("AU10", "AU9")])
def test_each_au_moves_its_own_region(readings, au, partner):
    """AU6 moves the cheek and AU7 the lid; AU9 the nose and AU10 the lip: an AU moves its
    own region at least twice as much as its partner's region."""
    for i in range(10):
        r = readings[i, au, 5]
        assert r[au] > 2 * abs(r[partner]), (au, i, r)


def test_measure_on_known_points():
    base = {"brow": np.array([[40.0, 50], [60, 50]]), "upper_lid": np.array([[40.0, 60]]),
            "lower_lid": np.array([[40.0, 66]]), "cheek": np.array([[40.0, 80]]),
            "nose_wing": np.array([[50.0, 90]]), "upper_lip": np.array([[50.0, 100]]),
            "outer_canthus": np.array([[0.0, 63], [100, 63]])}
    posed = {k: v.copy() for k, v in base.items()}
    posed["brow"][:, 1] += 3  # 3 px down
    posed["cheek"][:, 1] -= 5  # 5 px up
    posed["upper_lid"][:, 1] += 4  # the eye closes by 4 px
    m = measure(base, posed)
    assert eye_corner_distance(base) == 100
    assert m == pytest.approx({"AU4": 0.03, "AU6": 0.05, "AU7": 0.0, "AU9": 0.0, "AU10": 0.0,
                               "AU43": 0.04})
    base["outer_canthus"][1] = base["outer_canthus"][0]
    with pytest.raises(ValueError, match="eye corners coincide"):
        measure(base, posed)
