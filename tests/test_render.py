import cv2
import numpy as np
import pytest

from faces.demographics import sample_demographics
from faces.heatmap import displacement, heat_colors
from faces.identity import identity_appearance, make_appearance, make_identity, render_expression
from faces.render import Camera, RenderConfig


@pytest.fixture(scope="module")
def neutral_mesh(builtin_model):
    return builtin_model.mesh(builtin_model.neutral(np.zeros(builtin_model.n_shape, np.float32)))


def _cam(model, yaw=0.0):
    return Camera(yaw_deg=yaw, target=model.camera_target)


def test_context_reports_renderer(renderer):
    assert renderer.gl_renderer and isinstance(renderer.software, bool)


def test_nose_tip_nearer_than_cheeks(renderer, builtin_model, neutral_mesh, template):
    cam = _cam(builtin_model)
    out = renderer.render(neutral_mesh, cam, 256, outputs=("depth", "mask"))
    v, r = neutral_mesh.vertices, template.mesh.regions

    def depth_at(idx):
        px = cam.project(v[idx], 256).round().astype(int)
        return np.median(out["depth"][px[:, 1], px[:, 0]])

    d_nose, d_cheek = depth_at(r["nose_tip"]), depth_at(r["cheek"])
    assert 0 < d_nose < d_cheek - 0.01
    # metric: the nose tip's depth equals its distance along the view axis
    tip = v[r["nose_tip"]][np.argmax(v[r["nose_tip"], 2])]
    assert d_nose == pytest.approx(cam.position()[2] - tip[2], abs=0.004)
    assert out["depth"][~out["mask"]].max() == 0.0


def test_mask_matches_projected_mesh(renderer, builtin_model, neutral_mesh):
    for yaw in (0.0, 30.0):
        cam = _cam(builtin_model, yaw)
        mask = renderer.render(neutral_mesh, cam, 256, outputs=("mask",))["mask"]
        px = cam.project(neutral_mesh.vertices, 256)
        ref = np.zeros((256, 256), np.uint8)
        # pixel centres sit at +0.5; rasterise each triangle on its own (union of triangles)
        tri = np.round((px[neutral_mesh.faces] - 0.5) * 16).astype(np.int32)
        for t in tri:
            cv2.fillConvexPoly(ref, t, 1, lineType=cv2.LINE_8, shift=4)
        ref = ref.astype(bool)
        iou = (mask & ref).sum() / (mask | ref).sum()
        assert iou > 0.98, (yaw, iou)


def test_side_views_of_symmetric_identity_mirror(renderer, builtin_model, neutral_mesh):
    a = renderer.render(neutral_mesh, _cam(builtin_model, 30.0), 256, outputs=("depth", "mask"))
    b = renderer.render(neutral_mesh, _cam(builtin_model, -30.0), 256, outputs=("depth", "mask"))
    mb = b["mask"][:, ::-1]
    iou = (a["mask"] & mb).sum() / (a["mask"] | mb).sum()
    assert iou > 0.99
    both = a["mask"] & mb
    assert np.median(np.abs(a["depth"][both] - b["depth"][:, ::-1][both])) < 1e-4
    # and the two side views are not the same picture
    assert (a["mask"] ^ b["mask"]).sum() > 200


def test_rendering_is_deterministic_and_textured(renderer, builtin_model):
    spec = make_identity(4, 0, builtin_model)
    app = make_appearance(spec, builtin_model)
    mesh = builtin_model.mesh(builtin_model.neutral(spec.shape))
    cam = _cam(builtin_model)
    a = renderer.render(mesh, cam, 128, texture=app.texture)
    b = renderer.render(mesh, cam, 128, texture=app.texture)
    for k in a:
        assert np.array_equal(a[k], b[k])
    assert a["rgb"][a["mask"]].std() > 10  # shaded and textured, not flat
    assert a["rgb"][~a["mask"]].max() == 0


def test_outputs_at_other_sizes(renderer, builtin_model, neutral_mesh):
    out = renderer.render(neutral_mesh, _cam(builtin_model), 512, outputs=("rgb", "vcolor"),
                          vertex_colors=np.full((neutral_mesh.n_vertices, 3), 255, np.uint8))
    assert out["rgb"].shape == (512, 512, 3) and out["vcolor"].shape == (512, 512, 3)
    with pytest.raises(ValueError, match="unknown render outputs"):
        renderer.render(neutral_mesh, _cam(builtin_model), 64, outputs=("normals",))


def test_heatmap_values_and_neutral_has_none(renderer, builtin_model):
    spec = make_identity(2, 0, builtin_model)
    app = make_appearance(spec, builtin_model)
    rcfg = RenderConfig(size=128)
    neutral = render_expression(builtin_model, spec, 0, app, renderer, rcfg)
    assert all(v.heatmap is None for v in neutral.views)
    assert neutral.pspi == 0 and len(neutral.views) == 3
    pain = render_expression(builtin_model, spec, 1, app, renderer, rcfg)
    assert pain.pspi == spec.pspi[1] > 0
    h = pain.views[1].heatmap
    assert h.shape == (128, 128, 3) and h.max() > 150  # something moved, brightly
    # displacement maths: magnitude and direction relative to the normal
    v0 = builtin_model.neutral(spec.shape)
    d = displacement(v0, v0 + np.array([0, 0, 0.002], np.float32), builtin_model.template.faces)
    assert np.allclose(d.magnitude, 0.002, atol=1e-6)
    nose = builtin_model.template.regions["nose_tip"]
    assert d.normal_cos[nose].mean() > 0.6  # +z is mostly outwards at the nose tip
    c = heat_colors(d, "magnitude", scale=0.004)
    assert np.ptp(c.astype(int), axis=0).max() <= 1  # uniform motion -> uniform colour
    still = displacement(v0, v0, builtin_model.template.faces)
    assert np.all(heat_colors(still)[:, 0] < 5)  # no motion is black in 'inferno'
    with pytest.raises(ValueError):
        heat_colors(d, "rainbow")


def test_heatmap_brightness_grows_with_pspi(renderer, builtin_model):
    spec = make_identity(1, 0, builtin_model)
    app = make_appearance(spec, builtin_model)
    rcfg = RenderConfig(size=96, yaws=(0.0,))
    means = []
    for aus in ({"AU4": 1}, {"AU4": 3, "AU6": 2, "AU9": 2}, {"AU4": 5, "AU6": 5, "AU9": 5, "AU43": 1}):
        r = render_expression(builtin_model, spec, 1, app, renderer, rcfg, aus=aus)
        means.append(r.views[0].heatmap.mean())
    assert means[0] < means[1] < means[2]


def test_one_identity_regenerates_identically(renderer, builtin_model):
    a = make_identity(9, 42, builtin_model)
    b = make_identity(9, 42, builtin_model)
    assert a.configs == b.configs and a.prompt == b.prompt and np.array_equal(a.shape, b.shape)
    assert a.demographics == sample_demographics(9, 42)
    ta = make_appearance(a, builtin_model).texture
    tb = identity_appearance(builtin_model, 42, 9, b.demographics).texture
    assert np.array_equal(ta, tb)


def test_scene_and_dressing_are_seeded_per_identity_and_switchable():
    from faces.dressing import sample_dressing
    from faces.scene import sample_scene

    rc = RenderConfig()
    assert sample_scene(42, 9, rc) == sample_scene(42, 9, rc)
    demo = sample_demographics(9, 42)
    assert sample_dressing(42, 9, demo) == sample_dressing(42, 9, demo)
    scenes = [sample_scene(42, i, rc) for i in range(40)]
    for field in ("light_azimuth_deg", "light_temperature_k", "camera_distance_m",
                  "camera_roll_deg", "background"):
        assert len({getattr(s, field) for s in scenes}) > 5, field  # identities differ
    lo, hi = rc.vary.light_azimuth_deg
    assert all(lo <= s.light_azimuth_deg <= hi for s in scenes)
    off = RenderConfig()
    off.vary.lighting = off.vary.background = off.vary.camera = False
    fixed = [sample_scene(42, i, off) for i in range(10)]
    f = fixed[0]
    assert all(s == f for s in fixed)  # every identity in the preset's one set-up
    assert (f.camera_distance_m, f.camera_roll_deg, f.light_temperature_k, f.background) == (
        off.camera.distance, 0.0, 6500.0, "plain wall")
