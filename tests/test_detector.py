"""An off-the-shelf face detector must see the built-in faces as faces, at every view."""
import numpy as np
import pytest

from faces.backdrop import backdrop, view_window
from faces.detect import haar_faces
from faces.identity import make_appearance, make_identity, render_expression
from faces.render import RenderConfig
from faces.scene import sample_scene

SEED = 2024  # the look was developed on seed 0


@pytest.mark.slow  # ~40 s: 150 frames through four cascade passes
def test_haar_cascades_find_the_face_at_every_yaw(builtin_model, renderer):
    """50 identities in their own scenes (light, backdrop, camera jitter, dressing), each
    at its strongest pain expression: a face is found in >= 98% of frames at each yaw."""
    rc = RenderConfig(size=256)
    hits: dict[float, list[bool]] = {}
    for i in range(50):
        spec = make_identity(i, SEED, builtin_model)
        app = make_appearance(spec, builtin_model)
        strongest = int(np.argmax(spec.pspi))
        for v in render_expression(builtin_model, spec, strongest, app, renderer, rc).views:
            hits.setdefault(v.yaw, []).append(len(haar_faces(v.rgb)) > 0)
    rates = {y: float(np.mean(h)) for y, h in hits.items()}
    assert set(rates) == set(rc.yaws)
    assert min(rates.values()) >= 0.98, rates


def test_no_face_in_an_empty_scene():
    """The detector is not simply saying yes: backdrops alone and a flat frame hold none."""
    rc = RenderConfig(size=256)
    for i in range(10):
        wide = backdrop(sample_scene(SEED, i, rc), 256)
        for yaw in rc.yaws:
            assert haar_faces((view_window(wide, yaw) * 255).astype(np.uint8)) == [], i
    assert haar_faces(np.full((256, 256, 3), 128, np.uint8)) == []
