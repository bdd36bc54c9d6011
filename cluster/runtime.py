"""Connecting to Ray: the cluster in RAY_ADDRESS, or a local one started with the config."""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def init_ray(rcfg) -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return
    kwargs = {"include_dashboard": rcfg.include_dashboard}
    for key in ("num_cpus", "num_gpus", "object_store_memory"):
        value = getattr(rcfg, key)
        if value is not None:
            kwargs[key] = value
    ray.init(**kwargs)
