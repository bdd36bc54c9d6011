"""What every model stage shares: its config, backend registry and the device it runs on.

A stage = backends (plain classes with ``__call__(batch) -> batch``, no Ray) + a thin actor
shell (:class:`StageActor`) that builds one backend once, on the device Ray assigned, and
maps it over batches of identity rows.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from actors.options import NoOptions, parse_options

log = logging.getLogger(__name__)


@dataclass
class StageConfig:
    backend: str = "builtin"
    model: str | None = None  # local folder or hub id of a real backend's weights
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    batch_size: int = 1  # identities per batch
    concurrency: tuple[int, int] = (1, 1)  # actor pool (min, max) the autoscaler works with
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific settings


_BACKENDS: dict[str, dict[str, Callable]] = {}


def register(stage: str, name: str, options: type = NoOptions):
    """Class decorator: make a backend selectable as ``<stage>.backend: <name>``, with its
    typed ``options`` (a dataclass; actors/options.py)."""
    def deco(cls):
        cls.Options = options
        _BACKENDS.setdefault(stage, {})[name] = cls
        return cls
    return deco


def backend_class(stage: str, backend: str):
    _import_stages()
    try:
        return _BACKENDS[stage][backend]
    except KeyError:
        raise ValueError(f"unknown {stage} backend {backend!r}; "
                         f"choose from {backend_names(stage)}") from None


def options_of(stage: str, cfg: "StageConfig"):
    """The stage's ``options`` as its backend's typed dataclass (refused in one sentence)."""
    cls = backend_class(stage, cfg.backend)
    return parse_options(cls.Options, cfg.options, f"generate.stages.{stage}.options",
                         cfg.backend)


def backend_names(stage: str) -> list[str]:
    _import_stages()
    return sorted(_BACKENDS.get(stage, {}))


def make_backend(stage: str, cfg: StageConfig, context: dict, device: str):
    return backend_class(stage, cfg.backend)(cfg, context, device)


def _import_stages():
    # the stage modules register their backends on import
    from actors import (diffusion, hunyuan3d, inpainting, neutral_face, nfr, qa,  # noqa: F401
                        rigging, texturing)


def resolve_device(stage: str, num_gpus: float) -> tuple[str, list]:
    """Torch device for a stage actor: the GPU Ray assigned, or the CPU (said once)."""
    gpu_ids: list = []
    try:
        import ray

        if ray.is_initialized():
            gpu_ids = list(ray.get_gpu_ids())
    except ImportError:
        pass
    if num_gpus > 0:
        import torch

        if torch.cuda.is_available():
            # Ray sets CUDA_VISIBLE_DEVICES to the assigned GPUs, so the first visible is ours.
            return "cuda:0", gpu_ids
        log.warning("stage %s holds GPU %s but no CUDA device is visible; running on CPU",
                    stage, gpu_ids)
    return "cpu", gpu_ids


def egl_device_index(gpu_ids: list) -> int | None:
    """EGL device for the renderer: the assigned GPU on NVIDIA nodes (matched by PCI address,
    faces/egl.py), the default display otherwise."""
    if gpu_ids and os.path.exists("/dev/nvidia0"):
        from faces.egl import egl_device_for_cuda

        return egl_device_for_cuda()
    return None


# stages whose backends build the face model from face.* files
FACE_STAGES = ("rigging", "neutral_face", "texturing")


def stage_files(stage: str, cfg: StageConfig, face_cfg=None) -> list[tuple[str, str]]:
    """(config key, local path) of every file or folder a stage loads on its node: its
    weights and, for stages that build the face model, the FLAME files."""
    out = []
    if cfg.model and looks_local(cfg.model):
        out.append((f"generate.stages.{stage}.model", cfg.model))
    opts = cfg.options if isinstance(cfg.options, dict) else {}
    for key in ("prior", "python", "repo"):  # a prior's weights; a bridged model's env + clone
        where = opts.get(key)
        if isinstance(where, str) and where and looks_local(where):
            out.append((f"generate.stages.{stage}.options.{key}", where))
    if face_cfg is not None and stage in FACE_STAGES + ("render",) and face_cfg.model == "flame":
        from faces.models import FLAME_FILES

        out += [(f"face.{k}", getattr(face_cfg, k)) for k in FLAME_FILES if getattr(face_cfg, k)]
    return out


def looks_local(where: str) -> bool:
    """A local path (not a hub id or a URL)."""
    return where.startswith(("/", "./", "../", "~")) or os.path.exists(where)


def check_on_node(stage: str, files: list[tuple[str, str]]) -> None:
    """Each file where it is loaded: a worker node without it fails in one sentence that
    names the node, the path and the fix (the driver's check sees only its own disk)."""
    for key, path in files:
        if not os.path.exists(os.path.expanduser(path)):
            raise FileNotFoundError(
                f"{stage} on node {socket.gethostname()}: {key} {path} is not there; every node "
                f"that runs {stage} needs it at the same path: copy it to each worker node (or "
                "put it on shared storage mounted at that path)")


class StageActor:
    """Ray actor shell: one backend per actor, loaded once, called per batch."""

    stage = ""

    def __init__(self, cfg: StageConfig, context: dict):
        check_on_node(self.stage, stage_files(self.stage, cfg, context.get("face")))
        self.device, self.gpu_ids = resolve_device(self.stage, cfg.num_gpus)
        self.backend = make_backend(self.stage, cfg, context, self.device)
        self.node_id = _node_id()

    def __call__(self, batch: dict) -> dict:
        out = self.backend(batch)
        n = len(next(iter(out.values())))
        out[f"{self.stage}_gpu"] = np.array([",".join(map(str, self.gpu_ids))] * n, dtype=object)
        out[f"{self.stage}_node"] = np.array([self.node_id] * n, dtype=object)
        out[f"{self.stage}_device"] = np.array([self.device] * n, dtype=object)
        return out


def _node_id() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - provenance only
        pass
    return socket.gethostname()


def stage_actor(stage: str) -> type:
    """A named StageActor subclass per stage (so Ray's progress bars read well)."""
    name = "".join(p.title() for p in stage.split("_")) + "Stage"
    return type(name, (StageActor,), {"stage": stage})
