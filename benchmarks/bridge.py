"""What the model bridge costs: worker start-up, a round trip per array size against the
same arithmetic in-process, and one identity through each stand-in (tests/standins/).

    python benchmarks/bridge.py [--python .venv-standin/bin/python] [--repeats 20] [--json F]

The stand-in environment comes from tests/standins/make_env.sh. Stand-in model times say
what the bridge and pain3d's mapping add around a model, not what NFR or Hunyuan3D take.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.client import ModelServer, WorkerSpec  # noqa: E402

FAULTS = str(ROOT / "tests/standins/fault_handler.py")


def round_trips(python: str, repeats: int) -> dict:
    out = {}
    with ModelServer(WorkerSpec(name="bench", python=python, handler=FAULTS)) as s:
        t = time.perf_counter()
        s.start()
        out["start_s"] = time.perf_counter() - t
        for mb in (0.001, 1, 16, 64):
            x = np.random.default_rng(0).random(int(mb * 2 ** 20 / 8))
            s.call({}, {"x": x})  # warm
            t = time.perf_counter()
            for _ in range(repeats):
                s.call({}, {"x": x})
            bridged = (time.perf_counter() - t) / repeats
            t = time.perf_counter()
            for _ in range(repeats):
                _ = x * 2
            local = (time.perf_counter() - t) / repeats
            out[f"{mb:g}MB"] = {"bridge_ms": 1e3 * bridged, "in_process_ms": 1e3 * local}
    return out


def standin_identities(python: str) -> dict:
    from actors.base import StageConfig, make_backend
    from cluster.config import load_config
    from pipelines.tasks import identity_rows
    from tests.standins.bundles import (HUNYUAN_REPO, NFR_REPO, make_hunyuan_model,
                                        make_nfr_bundle)

    d = Path(tempfile.mkdtemp())
    cfg = load_config("local")
    ctx = {"face": cfg.face, "render": cfg.render}
    b = identity_rows({"identity": np.array([0])}, cfg)
    out = {}
    t = time.perf_counter()
    rig = make_backend("rigging", StageConfig(backend="nfr", model=str(make_nfr_bundle(d / "n")),
                       options={"python": python, "repo": str(NFR_REPO)}), ctx, "cpu")
    out["nfr_start_s"] = time.perf_counter() - t
    t = time.perf_counter()
    b = rig(b)
    out["nfr_identity_s (11 expressions)"] = time.perf_counter() - t
    rig.server.close()
    b = make_backend("neutral_face", cfg.generate.stages.neutral_face, ctx, "cpu")(b)
    t = time.perf_counter()
    tx = make_backend("texturing", StageConfig(
        backend="hunyuan3d", model=str(make_hunyuan_model(d / "h")),
        options={"python": python, "repo": str(HUNYUAN_REPO), "paint_texture_size": 2048}),
        ctx, "cpu")
    out["hunyuan3d_start_s"] = time.perf_counter() - t
    t = time.perf_counter()
    tx(b)
    out[f"hunyuan3d_identity_s (bake at {tx.size}²)"] = time.perf_counter() - t
    tx.server.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--python", default=str(ROOT / ".venv-standin/bin/python"))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json")
    a = p.parse_args()
    res = {"round_trips": round_trips(a.python, a.repeats),
           "standins": standin_identities(a.python)}
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
