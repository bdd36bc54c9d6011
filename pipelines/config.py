"""The ``generate`` section of the config: what to make, where, and each stage's resources."""
from __future__ import annotations

from dataclasses import dataclass, field

from actors.base import StageConfig
from actors.qa import QAConfig


@dataclass
class TaskConfig:
    """A CPU stage without a model (render + heatmaps, encode + write): an actor pool of 1 to
    ``max_concurrency`` actors, each holding ``num_cpus``, so that a process keeps its EGL
    context and face model (pipelines/generate.py RenderStage)."""

    num_cpus: float = 0.5
    batch_size: int = 1
    max_concurrency: int | None = None  # None: as many actors as the cluster's CPUs allow


def _stage(backend="builtin", **kw) -> StageConfig:
    return StageConfig(backend=backend, **kw)


@dataclass
class StagesConfig:
    rigging: StageConfig = field(default_factory=lambda: _stage(num_cpus=0.25))
    neutral_face: StageConfig = field(default_factory=lambda: _stage(num_cpus=0.25))
    texturing: StageConfig = field(default_factory=lambda: _stage(num_cpus=0.25))
    inpainting: StageConfig = field(default_factory=lambda: _stage(num_cpus=0.25))
    qa: StageConfig = field(default_factory=lambda: _stage("mediapipe", num_cpus=0.25))
    render: TaskConfig = field(default_factory=TaskConfig)
    write: TaskConfig = field(default_factory=lambda: TaskConfig(num_cpus=0.25))

    MODEL_STAGES = ("rigging", "neutral_face", "texturing", "inpainting", "qa")


@dataclass
class RayInitConfig:
    """The local Ray to start when no cluster is given (RAY_ADDRESS unset); with one, how
    long to wait for its head to answer."""

    num_cpus: int | None = None
    num_gpus: int | None = None
    object_store_memory: int | None = None
    include_dashboard: bool = False
    connect_timeout_s: float = 30.0


@dataclass
class GenerateConfig:
    out: str = "data/pain3d"
    identities: int = 8
    start: int = 0
    overwrite: bool = False
    write_meshes: bool = True
    codec: str = "png"  # image/heatmap/mask bytes: png | webp (lossless); see tasks.CODECS
    png_level: int = 1  # zlib level of png: 1 (fast) .. 9 (small)
    stages: StagesConfig = field(default_factory=StagesConfig)
    qa: QAConfig = field(default_factory=QAConfig)
    ray: RayInitConfig = field(default_factory=RayInitConfig)
