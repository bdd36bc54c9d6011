import os
import shutil
import tempfile

import numpy as np
import pytest

# Ray's default folder holds the address of the last cluster started on the machine (by `ray
# start` or ray.cluster_utils), which a ray.init() without an address joins: the test session
# and its subprocesses get a folder of their own, so they never join a cluster left running
# by a killed test or by the user. Short: Ray's socket paths must fit 107 characters.
os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="r3t", dir="/tmp")
# Ray Train's controller polls its workers every 2 s, and a run waits on several polls from
# start to finish: 0.2 s makes a tiny training run ~7 s (a quarter) shorter. Ray Train
# passes the variable on to the controller it starts.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

# stand-ins of other projects' code (their test_user.py is NFR's script, not a test)
collect_ignore = ["standins"]

# a tiny ViTPain for training tests (the test Ray declares fake GPUs: no NCCL here)
# (a ViT; the local preset's conv net is tested apart: TINY_CONV)
TINY_TRAIN = ["train.model.backbone=vit_tiny_patch16_224", "train.model.img_size=32",
              "train.model.backbone_kwargs={depth: 2, patch_size: 8}",
              "train.model.head_hidden=32", "train.batch_size=16", "train.cpus_per_worker=0.5",
              "train.use_gpu=false"]
TINY_CONV = ["train.model.img_size=32", "train.model.backbone_kwargs={channels: [8, 8, 16, 16]}",
             "train.model.head_hidden=32", "train.batch_size=16", "train.cpus_per_worker=0.5",
             "train.use_gpu=false"]


def pytest_unconfigure(config):
    shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)


def random_batch(n: int = 8, size: int = 32, seed: int = 0) -> dict:
    """A seeded random training batch: images, heatmaps, PSPI levels and AU intensities."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 3, size, size, generator=g),
            "heatmap": torch.randn(n, 3, size, size, generator=g),
            "pspi": torch.randint(0, 17, (n,), generator=g),
            "aus": torch.rand(n, 6, generator=g) * 5}


def tiny_args(identities: int, size: int, texture: int) -> list[str]:
    """`pain3d generate` arguments of a small dataset: no meshes, no AU read-back (faces
    this small are not found)."""
    return ["--identities", str(identities), f"render.size={size}",
            f"face.texture_size={texture}", "generate.write_meshes=false",
            "generate.stages.qa.backend=none"]


def tiny_dataset(tmp_path_factory, identities: int, size: int, texture: int) -> str:
    """A small generated dataset in a fresh temporary folder."""
    from cluster.cli import main

    out = tmp_path_factory.mktemp(f"d{identities}") / "ds"
    assert main(["generate", "--out", str(out), *tiny_args(identities, size, texture)]) == 0
    return str(out)


@pytest.fixture(scope="session")
def data10(tmp_path_factory, ray_local):
    """A 10-identity dataset at 48 px (330 frames) for the training and sweep tests."""
    return tiny_dataset(tmp_path_factory, 10, 48, 128)


@pytest.fixture(scope="session")
def tiny_teacher(data10, tmp_path_factory):
    """The best checkpoint of a 1-epoch tiny ViT teacher on data10 (the sweep's teacher and
    the cross-validation's pretrained start)."""
    from cluster.cli import main

    runs = tmp_path_factory.mktemp("tteacher")
    assert main(["train", "teacher", "--data", data10, "--name", "t", f"train.storage={runs}",
                 "train.epochs=1"] + TINY_TRAIN) == 0
    return (runs / "t" / "best_checkpoint.txt").read_text()


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

    if ray.is_initialized():
        yield ray
        return
    ray.init(num_cpus=2, num_gpus=2, object_store_memory=250_000_000,
             include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()  # before pytest_unconfigure removes its folder


@pytest.fixture(scope="session")
def test_flame(tmp_path_factory):
    """The FLAME-format test model's files (faces/flame_testmodel.py), and a face config that
    uses them; the derived AU rig is cached in the session's own folder."""
    import os

    from faces import flame_testmodel
    from faces.models import FaceConfig

    from cluster.cli import main

    d = tmp_path_factory.mktemp("flame")
    os.environ["PAIN3D_CACHE"] = str(d / "cache")
    assert main(["make-test-flame", str(d)]) == 0
    assert sorted(p.name for p in d.iterdir() if p.is_file()) == sorted(flame_testmodel.FILES)
    cfg = FaceConfig(model="flame", flame_path=str(d / "flame2023.pkl"),
                     flame_landmarks_path=str(d / "mediapipe_landmark_embedding.npz"),
                     flame_uv_path=str(d / "FLAME_texture.npz"), texture_size=512)
    return d, cfg


def flame_overrides(d) -> list[str]:
    """`pain3d` overrides selecting the FLAME test model and its derived rig."""
    return ["face.model=flame", f"face.flame_path={d / 'flame2023.pkl'}",
            f"face.flame_landmarks_path={d / 'mediapipe_landmark_embedding.npz'}",
            f"face.flame_uv_path={d / 'FLAME_texture.npz'}", "generate.stages.rigging.backend=flame"]


@pytest.fixture(scope="session")
def standin_python():
    """The stand-in model environment's interpreter (tests/standins/make_env.sh; .ci/install
    builds it, and this builds it when it is missing)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    py = root / ".venv-standin" / "bin" / "python"
    if not py.exists():
        subprocess.run(["bash", str(root / "tests/standins/make_env.sh")], check=True)
    return str(py)


@pytest.fixture(scope="session")
def standin_models(tmp_path_factory):
    """(NFR data bundle, Hunyuan3D weights folder) of the stand-ins."""
    from tests.standins.bundles import make_hunyuan_model, make_nfr_bundle

    d = tmp_path_factory.mktemp("standin-models")
    return make_nfr_bundle(d / "nfr"), make_hunyuan_model(d / "hunyuan3d")
