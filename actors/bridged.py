"""What the backends behind the model bridge share: their worker, from their options."""
from __future__ import annotations

import os

from bridge.client import ModelServer, WorkerSpec


def worker_spec(stage: str, backend: str, handler: str, o, env: dict | None = None,
                **options) -> WorkerSpec:
    """The worker of ``backend``: the shared options ``o`` (a BridgeOptions subclass) and
    the handler's own ``options``."""
    return WorkerSpec(name=f"{stage}.backend '{backend}'", python=os.path.expanduser(o.python),
                      handler=handler, timeout_s=o.timeout_s, start_timeout_s=o.start_timeout_s,
                      options=dict(options, repo=local(o.repo)),
                      python_key=f"generate.stages.{stage}.options.python", env=env or {})


def start_worker(spec: WorkerSpec) -> ModelServer:
    """Start the worker and check its health (it stays up for the actor's life)."""
    server = ModelServer(spec)
    server.start()
    return server


def probe_worker(spec: WorkerSpec) -> dict:
    """Start the worker only to import the model's code and check its files (`pain3d check`)."""
    with ModelServer(spec) as server:
        return server.start(load=False)


def local(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


class HoldsWorker:
    """A stage that keeps a model worker in ``self.server``: the worker ends with it (its
    process group is also killed when the actor dies without collecting it)."""

    server: ModelServer | None = None

    def __del__(self):
        if self.server is not None:
            self.server.shutdown()

