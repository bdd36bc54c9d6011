"""Connecting to Ray: the cluster in RAY_ADDRESS, or a local one started with the config."""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


class ClusterUnreachable(ConnectionError):
    """RAY_ADDRESS names a head that does not answer."""


def check_reachable(address: str, timeout_s: float) -> None:
    """Ray's own connect retries for minutes without a word; a head that accepts no TCP
    connection within ``timeout_s`` is named in one sentence instead."""
    import socket
    import time

    hostport = address.split("://", 1)[-1].rstrip("/")
    if hostport in ("auto", "local", "") or ":" not in hostport:
        return  # Ray finds the address itself (a running local head)
    host, port = hostport.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except (OSError, ValueError) as e:
            if isinstance(e, ValueError) or time.monotonic() >= deadline:
                raise ClusterUnreachable(
                    f"cannot reach the Ray cluster at RAY_ADDRESS={address} (no answer in "
                    f"{timeout_s:g} s); start it (ray start --head, or ray up ray_config.yaml)"
                    ", fix the address, or unset RAY_ADDRESS to run on a local Ray") from None
            time.sleep(0.5)


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
        check_reachable(address, rcfg.connect_timeout_s)
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
