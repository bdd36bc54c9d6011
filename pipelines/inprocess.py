"""The generation graph's stages as plain calls in one process, in the graph's order: for
benchmarks (a stage's cost alone), reference frames and tests. `pain3d generate` runs the same
functions and backends as a Ray Data graph (pipelines/generate.py)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from actors.base import make_backend
from pipelines.tasks import identity_rows, render_rows, write_rows

Step = tuple[str, Callable[[dict], dict]]


def stage_steps(cfg, out: str | None = None) -> list[Step]:
    """(name, function of a batch) per stage; the qa stage only when its backend is on, the
    write stage only with an ``out`` folder."""
    ctx = {"face": cfg.face, "render": cfg.render, "qa": cfg.generate.qa}
    st = cfg.generate.stages

    def backend(name):
        return make_backend(name, getattr(st, name), ctx, "cpu")

    steps: list[Step] = [("identity", lambda b: identity_rows(b, cfg))]
    steps += [(n, backend(n)) for n in ("rigging", "neutral_face", "texturing")]
    steps += [("render", lambda b: render_rows(b, cfg)), ("inpainting", backend("inpainting"))]
    if st.qa.backend != "none":
        steps.append(("qa", backend("qa")))
    if out:
        steps.append(("write", lambda b: write_rows(b, cfg, out)))
    return steps


def run_stages(steps: list[Step], identity: int, until: str | None = None) -> dict:
    """One identity's batch after the stages up to and including ``until`` (all: None)."""
    b = {"identity": np.array([identity])}
    for name, fn in steps:
        b = fn(b)
        if name == until:
            break
    return b
