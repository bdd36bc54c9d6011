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


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """One local Ray for the session: 2 CPUs, 2 declared (fake) GPUs, a small object store."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, num_gpus=2, object_store_memory=250_000_000,
                 include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")),
                 log_to_driver=False)
    yield ray
