import numpy as np
import pytest

from faces.demographics import Demographics, identity_rng, sample_demographics
from faces.geometry import check_mesh, triangle_areas
from faces.shape_space import COMPONENTS, prior_mean

REQUIRED_REGIONS = ("brow", "brow_r", "brow_l", "upper_lid", "lower_lid", "upper_lid_margin",
                    "lower_lid_margin", "cheek", "nose_wing", "nose_tip", "nose_bridge",
                    "glabella", "upper_lip", "lower_lip", "mouth_corner", "chin", "forehead",
                    "crows_feet", "eyeball_r", "eyeball_l", "ear_r", "ear_l", "neck", "scalp")


def test_template_size_uvs_and_parts(template):
    m = template.mesh
    assert m.n_vertices >= 5000
    assert m.corner_uv is not None and m.corner_uv.shape == (len(m.faces), 3, 2)
    assert np.all(np.isfinite(m.corner_uv))
    assert m.faces.min() >= 0 and m.faces.max() < m.n_vertices
    for name in ("eyeball_r", "eyeball_l", "ear_r", "ear_l", "mouth_cavity"):
        assert name in template.part_slices
    # every vertex is used by some triangle and no triangle is degenerate
    assert len(np.unique(m.faces)) == m.n_vertices
    a = triangle_areas(m.vertices, m.faces)
    assert a.min() > 1e-10


def test_regions_exist_and_sit_where_anatomy_says(template):
    v = template.mesh.vertices
    r = template.mesh.regions
    for name in REQUIRED_REGIONS:
        assert len(r[name]) > 0, name
    y = lambda n: v[r[n], 1].mean()  # noqa: E731
    # top-to-bottom order of features on the face
    assert y("forehead") > y("brow") > y("upper_lid_margin") > y("lower_lid_margin") \
        > y("nose_tip") > y("upper_lip") > y("lower_lip") > y("chin") > y("neck")
    # sides
    assert np.all(v[r["brow_r"], 0] > 0) and np.all(v[r["brow_l"], 0] < 0)
    assert np.all(v[r["ear_r"], 0] > 0.06) and np.all(v[r["ear_l"], 0] < -0.06)
    # nose tip is the most forward point of the face
    assert v[r["nose_tip"], 2].max() == pytest.approx(v[: template.skin_count, 2].max(), abs=1e-3)


def test_template_is_mirror_symmetric(template):
    v = template.mesh.vertices
    mirrored = v[template.mirror] * np.array([-1, 1, 1])
    assert np.abs(mirrored - v).max() < 1e-4


def test_shape_space_has_interpretable_components(builtin_model):
    assert builtin_model.n_shape >= 20
    for name in ("face_width", "face_length", "jaw_width", "nose_size", "brow_prominence",
                 "lip_fullness", "cheek_fullness", "eye_spacing", "age_sag", "age_hollow"):
        assert name in COMPONENTS


def test_named_components_move_what_they_say(builtin_model, template):
    r = template.mesh.regions
    zero = np.zeros(builtin_model.n_shape, np.float32)
    v0 = builtin_model.neutral(zero)

    def with_(name, value=2.0):
        b = zero.copy()
        b[COMPONENTS.index(name)] = value
        return builtin_model.neutral(b)

    width = lambda v: np.ptp(v[: template.skin_count, 0])  # noqa: E731
    assert width(with_("face_width")) > width(v0) * 1.05
    v = with_("eye_spacing")
    er, el = template.part_slices["eyeball_r"], template.part_slices["eyeball_l"]
    assert (v[er, 0].mean() - v[el, 0].mean()) > (v0[er, 0].mean() - v0[el, 0].mean()) + 0.005
    v = with_("nose_size")
    assert v[r["nose_tip"], 2].mean() > v0[r["nose_tip"], 2].mean() + 0.001
    v = with_("age_sag")
    jowl = r["chin"]
    assert v[: template.skin_count, 1].min() <= v0[: template.skin_count, 1].min() + 1e-6
    assert np.abs(v - v0).max() > 0.003 and np.abs(v[jowl] - v0[jowl]).max() > 0.0005


def test_same_seed_same_mesh_different_seed_different(builtin_model):
    demo = sample_demographics(3, 0)
    a = builtin_model.neutral(builtin_model.sample_shape(demo, identity_rng(0, 3, "shape")))
    b = builtin_model.neutral(builtin_model.sample_shape(demo, identity_rng(0, 3, "shape")))
    c = builtin_model.neutral(builtin_model.sample_shape(demo, identity_rng(1, 3, "shape")))
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


@pytest.mark.parametrize("sign", [-3.0, 3.0])
def test_three_sigma_shapes_stay_plausible(builtin_model, template, sign):
    v0 = template.mesh.vertices
    for k in range(builtin_model.n_shape):
        b = np.zeros(builtin_model.n_shape, np.float32)
        b[k] = sign
        chk = check_mesh(builtin_model.neutral(b), v0, template.mesh.faces)
        assert chk.ok, (COMPONENTS[k], chk)
    # all components at +-3 sigma together (random signs)
    rng = np.random.default_rng(int(abs(sign)))
    b = (sign * np.sign(rng.standard_normal(builtin_model.n_shape))).astype(np.float32)
    assert check_mesh(builtin_model.neutral(b), v0, template.mesh.faces).ok


def test_demographics_shift_the_prior():
    young = prior_mean(Demographics("young", "woman", "White"))
    old = prior_mean(Demographics("elderly", "woman", "White"))
    assert old[COMPONENTS.index("age_sag")] > young[COMPONENTS.index("age_sag")] + 1.5
    man = prior_mean(Demographics("young", "man", "White"))
    assert man[COMPONENTS.index("masculinity")] > young[COMPONENTS.index("masculinity")]


def test_texture_follows_demographics(builtin_model):
    from faces.texture import make_texture, position_map

    P, covered = position_map(256)
    assert covered.mean() > 0.5
    face = (P[..., 2] > 0.07) & (np.abs(P[..., 0]) > 0.03) & (np.abs(P[..., 1] + 0.02) < 0.01)

    def cheek_lum(eth, seed):
        t = make_texture(Demographics("young", "woman", eth), np.random.default_rng(seed), 256)
        return t[face].mean()

    dark = np.mean([cheek_lum("Black", s) for s in range(4)])
    light = np.mean([cheek_lum("East Asian", s) for s in range(4)])
    assert light > dark + 40
    # elderly textures carry wrinkle lines: more high-frequency contrast on the forehead
    fh = (P[..., 2] > 0.06) & (P[..., 1] > 0.045) & (P[..., 1] < 0.07) & (np.abs(P[..., 0]) < 0.03)
    yo = make_texture(Demographics("young", "man", "White"), np.random.default_rng(2), 256)
    el = make_texture(Demographics("elderly", "man", "White"), np.random.default_rng(2), 256)
    hf = lambda t: np.abs(np.diff(t[..., 1].astype(float), axis=0))[fh[1:]].mean()  # noqa: E731
    assert hf(el) > hf(yo) * 1.3
