import numpy as np
import pytest


@pytest.fixture(scope="session")
def builtin_model():
    from faces.models import FaceConfig, make_face_model

    return make_face_model(FaceConfig(texture_size=512))


@pytest.fixture(scope="session")
def template():
    from faces.builtin_head import build_template

    return build_template()


@pytest.fixture(scope="session")
def renderer():
    from faces.render import get_renderer

    return get_renderer()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
