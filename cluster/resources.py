"""What a config asks the cluster for, and whether a cluster launcher config can provide it.

Every Ray Data stage, training worker and sweep trial reserves a resource bundle; a bundle
that fits no worker node type is never placed and the job waits forever, so `pain3d submit`
and the tests check presets against ``ray_config.yaml`` before anything runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig


def demands(cfg: "Pain3DConfig") -> dict[str, dict[str, float]]:
    """name -> the resource bundle one of its actors, tasks or workers reserves."""
    st, tc = cfg.generate.stages, cfg.train
    out = {}
    for name in st.MODEL_STAGES:
        sc = getattr(st, name)
        out[f"generate.stages.{name}"] = {"CPU": sc.num_cpus, "GPU": sc.num_gpus}
    for name in ("render", "write"):
        out[f"generate.stages.{name}"] = {"CPU": getattr(st, name).num_cpus, "GPU": 0.0}
    out["train worker"] = {"CPU": tc.cpus_per_worker, "GPU": 1.0 if tc.use_gpu else 0.0}
    out["train data decoding"] = {"CPU": tc.decode_cpus, "GPU": 0.0}
    out["tune trial"] = {"CPU": cfg.tune.cpus_per_trial, "GPU": 0.0}
    return out


def node_types(cluster_yaml: str | Path) -> dict[str, dict[str, float]]:
    """Worker node type -> its declared resources (the head is left out: it runs no work)."""
    data = yaml.safe_load(Path(cluster_yaml).read_text())
    head = data.get("head_node_type")
    return {name: {k: float(v) for k, v in (t.get("resources") or {}).items()}
            for name, t in data["available_node_types"].items() if name != head}


def unplaceable(cfg: "Pain3DConfig", cluster_yaml: str | Path) -> list[str]:
    """The demands that no worker node type can hold, as sentences (empty: all fit)."""
    types = node_types(cluster_yaml)

    def fits(bundle, res):
        return all(v <= res.get(k, 0.0) + 1e-9 for k, v in bundle.items() if v > 0)

    bad = []
    for name, bundle in demands(cfg).items():
        if not any(fits(bundle, res) for res in types.values()):
            want = ", ".join(f"{k}={v:g}" for k, v in bundle.items() if v > 0)
            bad.append(f"{name} needs {{{want}}} but no node type in {cluster_yaml} has it")
    if cfg.train.use_gpu is not False:  # the whole DDP group needs that many GPUs at once
        most = max_gpus(cluster_yaml)
        if most and cfg.train.num_workers > most:
            bad.append(f"train.num_workers={cfg.train.num_workers} GPU workers exceed the {most:g} "
                       f"GPUs {cluster_yaml} can ever hold")
    return bad


def max_gpus(cluster_yaml: str | Path) -> float:
    """GPUs of the cluster at its largest (each node type at its max_workers)."""
    data = yaml.safe_load(Path(cluster_yaml).read_text())
    return sum(float((t.get("resources") or {}).get("GPU", 0)) * int(t.get("max_workers", 0))
               for name, t in data["available_node_types"].items()
               if name != data.get("head_node_type"))
