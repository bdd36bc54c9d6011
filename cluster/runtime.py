"""Connecting to Ray: the cluster in RAY_ADDRESS, or a local one started with the config."""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def init_ray(rcfg, verbose: bool = False) -> None:
    """Without ``verbose``, the workers' output stays in Ray's session logs (not forwarded
    here) and Ray Data draws no progress bars of its own: pain3d shows its own progress."""
    import ray
    from ray.data import DataContext

    from cluster import console

    if ray.is_initialized():
        return
    if not verbose:
        console.redirect_native_stderr()
    kwargs = {"log_to_driver": verbose}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        kwargs["address"] = address
    else:
        kwargs["include_dashboard"] = rcfg.include_dashboard
        for key in ("num_cpus", "num_gpus", "object_store_memory"):
            value = getattr(rcfg, key)
            if value is not None:
                kwargs[key] = value
    ray.init(**kwargs)
    console.install_signal_handlers()  # ray.init replaced the SIGTERM handler with sys.exit
    if not verbose:
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        console.quiet_ray_loggers()
