"""What the backends behind the model bridge share: starting their worker from options."""
from __future__ import annotations

import os

from bridge.client import ModelServer, WorkerSpec


def start_worker(stage: str, backend: str, handler: str, o, env: dict | None = None,
                 **options) -> ModelServer:
    """Start (and health-check) the worker of ``backend`` with the shared options ``o``
    (a BridgeOptions subclass) and the handler's own ``options``."""
    spec = WorkerSpec(name=f"{stage}.backend '{backend}'", python=os.path.expanduser(o.python),
                      handler=handler, timeout_s=o.timeout_s,
                      options=dict(options, repo=local(o.repo)),
                      start_timeout_s=o.start_timeout_s,
                      python_key=f"generate.stages.{stage}.options.python", env=env or {})
    server = ModelServer(spec)
    server.start()
    return server


def local(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))
