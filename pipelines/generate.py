"""The generation graph on Ray Data, streaming identity rows through the stages:

    identity rows -> rigging* -> neutral face* -> texturing* -> render + heatmaps
                  -> inpainting* -> AU read-back QA* -> encode + write  (* = actor pool)

The identity is the unit of work and of output: its shard is written once, atomically, so a
re-run skips finished identities and a lost worker leaves neither a duplicate nor a hole.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.fs as pafs

from actors.base import stage_actor
from pipelines import guard, storage
from pipelines.manifest import build_manifest, content_config
from pipelines.tasks import face_model, identity_rows, render_rows, write_rows

if TYPE_CHECKING:
    from cluster.config import Pain3DConfig

log = logging.getLogger(__name__)


class OutputConflict(ValueError):
    """The output folder holds a dataset made with another content config."""


@dataclass
class GenerationResult:
    out: str
    requested: list[int]
    skipped: list[int]
    generated: list[int]
    seconds: float
    manifest: dict
    summaries: list[dict] = field(default_factory=list)

    def steady_fps(self) -> float | None:
        """Frames/s between the first and the last finished identity (start-up excluded)."""
        if len(self.summaries) < 3:
            return None
        done = sorted(self.summaries, key=lambda s: s["finished_after_s"])
        span = done[-1]["finished_after_s"] - done[0]["finished_after_s"]
        return sum(s["frames"] for s in done[1:]) / span if span > 0 else None

    def line(self) -> str:
        c = self.manifest["counts"]
        made = sum(s["frames"] for s in self.summaries)
        fps = made / self.seconds if self.seconds > 0 else 0.0
        return (f"{len(self.generated)} identities generated, {len(self.skipped)} already done; "
                f"dataset: {c['identities']} identities, {c['frames']} frames, "
                f"{c['heatmaps']} heatmaps; {self.seconds:.1f} s, {fps:.1f} frames/s -> {self.out}")


def content_hash(cfg: "Pain3DConfig") -> str:
    blob = json.dumps(content_config(cfg.to_dict()), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def finished_identities(loc: storage.Location, check: bool = False) -> set[int]:
    """Identities whose shard is in place. ``check`` also reads each shard's Parquet footer:
    a truncated or corrupt shard does not count, so a re-run regenerates it."""
    import pyarrow.parquet as pq

    out = set()
    for name in storage.list_files(loc, "frames", ".parquet"):
        if not name.startswith("identity="):
            continue
        try:
            ident = int(name[len("identity="):-len(".parquet")])
        except ValueError:
            continue
        if check:
            try:
                pq.read_metadata(loc.join("frames", name), filesystem=loc.fs)
            except Exception:  # noqa: BLE001 - unreadable: generated again
                log.warning("shard frames/%s is unreadable (truncated?); regenerating it", name)
                continue
        out.add(ident)
    return out


def generate_inputs(cfg: "Pain3DConfig") -> list[str]:
    """The files and folders generation reads: never deleted, whatever --out is."""
    from faces.models import FLAME_FILES

    paths = [getattr(cfg.face, k) for k in FLAME_FILES]
    for name in cfg.generate.stages.MODEL_STAGES:
        sc = getattr(cfg.generate.stages, name)
        paths += [sc.model, sc.options.get("prior") if isinstance(sc.options.get("prior"),
                                                                    str) else None]
    return [p for p in paths if p and (p.startswith("s3://") or os.path.exists(p))]


def preflight(cfg: "Pain3DConfig") -> None:
    """Checks that need no Ray: weights of the real backends exist where the config says."""
    from actors.diffusion import DEFAULT_CONTROLNET, DEFAULT_INPAINT, DEFAULT_PRIOR, check_weights

    if cfg.face.model == "flame":  # the user's FLAME files, before any actor loads them
        from faces.models import FLAME_FILES

        for key in FLAME_FILES:
            path = getattr(cfg.face, key)
            if path and not os.path.isfile(path):
                raise FileNotFoundError(f"face.{key} {path} does not exist; point it at your "
                                        "file (see configs/paper.yaml for what each one is)")
        face_model(cfg.face)  # shapes, formats and the derived AU rig, before any actor
    st = cfg.generate.stages
    if st.rigging.backend == "learned":  # its checkpoint, and that it fits face.model
        from actors.rigging import LearnedRigBackend

        LearnedRigBackend(st.rigging, {"face": cfg.face}, "cpu")
    if st.qa.backend == "mediapipe":
        from actors.qa import model_path

        model_path(st.qa.model)  # the landmarker bundle is installed (never downloaded)
    defaults = {"neutral_face": DEFAULT_CONTROLNET, "inpainting": DEFAULT_INPAINT}
    for name in ("neutral_face", "inpainting"):
        sc = getattr(st, name)
        if sc.backend == "kandinsky":
            check_weights(sc.model or defaults[name], name, f"generate.stages.{name}.model")
            check_weights(sc.options.get("prior", DEFAULT_PRIOR), name,
                          f"generate.stages.{name}.options.prior")


def flame_rig_record(cfg: "Pain3DConfig") -> dict | None:
    """Which AU rig a FLAME run used: the given basis file, or the derived one (its cache
    file and fit) so that a run can be traced to the rig it was made with."""
    if cfg.face.model != "flame":
        return None
    m = face_model(cfg.face)  # the one preflight built (kept per process)
    d = m.derived or {}
    return {"source": m.basis.source, "derived": d.get("derived"),
            "fit_r2": {au: e.get("fit_r2") for au, e in d.get("aus", {}).items()} or None}


OWN = ("frames", "textured_meshes", "run.json", "manifest.json")


def check_output(cfg: "Pain3DConfig") -> tuple[storage.Location, str]:
    """The output is writable, holds no dataset of another config and nothing of the user's
    where generate writes (frames/, textured_meshes/, run.json, manifest.json); writes
    nothing."""
    g = cfg.generate
    loc = storage.resolve(g.out)
    storage.check_writable(loc)
    h = content_hash(cfg)
    guard.claim_names(loc, OWN, g.out)
    prior = guard.read_record(loc, "run.json")
    guard.read_record(loc, "manifest.json")  # a manifest.json of the user's is refused
    if prior is None and guard.read_record(loc, "import.json") is not None:
        raise OutputConflict(f"{g.out} holds an imported dataset; choose another --out")
    if prior and prior.get("content_hash") != h and not g.overwrite:
        raise OutputConflict(
            f"{g.out} holds a dataset made with a different config (hash "
            f"{prior.get('content_hash')}, this run {h}); use --overwrite to replace it or "
            "choose another --out")
    return loc, h


def prepare_output(cfg: "Pain3DConfig") -> tuple[storage.Location, str]:
    loc, h = check_output(cfg)
    guard.mark_root(loc, "dataset")
    if cfg.generate.overwrite:
        guard.guarded_delete(loc, ["frames", "textured_meshes", "manifest.json"],
                             generate_inputs(cfg))
    guard.write_record(loc, "run.json", {"content_hash": h, "config": cfg.to_dict(),
                                         "flame_rig": flame_rig_record(cfg)})
    return loc, h


def discard_unstarted_output(loc: storage.Location, made_root: bool, inputs: list[str]) -> bool:
    """After a failed or interrupted first run that finished no identity: remove what it
    wrote (run.json, stray meshes, the marker, the folder if this run created it), so that
    no dataset-looking folder is left behind. A first run refuses folders that already hold
    any of those names, so everything removed here is this run's own."""
    if finished_identities(loc):
        return False  # real progress: kept, a re-run resumes from it
    guard.guarded_delete(loc, list(OWN) + [guard.MARKER], inputs)
    if made_root:
        guard.remove_empty_dir(loc)
    return True


def build_dataset(cfg: "Pain3DConfig", todo: list[int]):
    """The lazy Ray Data graph for the given identity indices."""
    import ray
    from ray.data import ActorPoolStrategy

    g, st = cfg.generate, cfg.generate.stages
    context = {"face": cfg.face, "render": cfg.render, "qa": g.qa}
    ds = ray.data.from_items([{"identity": int(i)} for i in todo],
                             override_num_blocks=max(1, len(todo)))
    ds = ds.map_batches(identity_rows, fn_kwargs={"cfg": cfg}, batch_size=1, num_cpus=0.25,
                        batch_format="numpy")

    def actor_stage(ds, name):
        sc = getattr(st, name)
        lo, hi = sc.concurrency
        return ds.map_batches(
            stage_actor(name), fn_constructor_kwargs={"cfg": sc, "context": context},
            batch_size=sc.batch_size, num_cpus=sc.num_cpus, num_gpus=sc.num_gpus or None,
            compute=ActorPoolStrategy(min_size=lo, max_size=hi), batch_format="numpy")

    for name in ("rigging", "neutral_face", "texturing"):
        ds = actor_stage(ds, name)
    ds = _cpu_stage(ds, RenderStage, st.render, cfg=cfg)
    ds = actor_stage(ds, "inpainting")
    if st.qa.backend != "none":
        ds = actor_stage(ds, "qa")
    return _cpu_stage(ds, WriteStage, st.write, cfg=cfg, out_uri=g.out)


class RenderStage:
    """Render + heatmaps as an actor: its process keeps the EGL context, the compiled
    programs, the face model and the identity's GL buffers. As Ray tasks, idle workers were
    recycled and each new one paid ~1.5 s of CPU for them again (6 processes in 12
    identities on a 2-core laptop)."""

    def __init__(self, cfg):
        self.cfg = cfg

    def __call__(self, batch: dict) -> dict:
        return render_rows(batch, self.cfg)


class WriteStage:
    """Encode + write as an actor (its process keeps the face model for the meshes)."""

    def __init__(self, cfg, out_uri: str):
        self.cfg, self.out_uri = cfg, out_uri

    def __call__(self, batch: dict) -> dict:
        return write_rows(batch, self.cfg, self.out_uri)


def _cpu_stage(ds, cls, tc, **kwargs):
    """A CPU stage's actor pool: 1 up to ``max_concurrency`` actors (None: as many as the
    cluster's CPUs allow), each holding ``num_cpus``."""
    from ray.data import ActorPoolStrategy

    return ds.map_batches(cls, fn_constructor_kwargs=kwargs, batch_size=tc.batch_size,
                          num_cpus=tc.num_cpus, batch_format="numpy",
                          compute=ActorPoolStrategy(min_size=1, max_size=tc.max_concurrency))


def _finished(ds, t0: float):
    """One summary per identity as its shard lands."""
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for k in range(len(batch["identity"])):
            s = {key: (v[k].tolist() if isinstance(v[k], np.ndarray) else
                       v[k].item() if hasattr(v[k], "item") else v[k])
                 for key, v in batch.items()}
            s["finished_after_s"] = time.time() - t0  # for steady-state throughput
            yield s


def run(cfg: "Pain3DConfig", progress=None) -> GenerationResult:
    """``progress(n)`` is called as identities finish (already finished ones first)."""
    g = cfg.generate
    if g.identities < 1:
        raise ValueError(f"generate.identities must be >= 1, got {g.identities}")
    if g.start < 0:
        raise ValueError(f"generate.start must be >= 0, got {g.start}")
    t0 = time.time()
    preflight(cfg)
    out = storage.resolve(g.out)
    fresh = guard.marker(out) is None
    made_root = not out.is_s3 and not os.path.exists(out.root)
    loc, h = prepare_output(cfg)
    requested = list(range(g.start, g.start + g.identities))
    done = finished_identities(loc, check=True)
    todo = [i for i in requested if i not in done]
    if progress:
        progress(len(requested) - len(todo))
    summaries: list[dict] = []
    try:
        if todo:
            for s in _finished(build_dataset(cfg, todo), t0):
                summaries.append(s)
                if progress:
                    progress(1)
    except BaseException as e:  # a failure or Ctrl-C: a first run leaves nothing dataset-like
        if fresh and discard_unstarted_output(loc, made_root, generate_inputs(cfg)):
            e.pain3d_nothing_kept = True
        raise
    for rel in ("frames", "textured_meshes"):  # left by writers that died (a lost node)
        n = guard.remove_temporaries(loc, rel)
        if n:
            log.info("removed %d temporaries of interrupted writes under %s", n, rel)
    manifest = build_manifest(loc, cfg.to_dict(), h)
    guard.write_record(loc, "manifest.json", manifest)
    generated = sorted(int(s["identity"]) for s in summaries)
    return GenerationResult(g.out, requested, sorted(set(requested) & done), generated,
                            time.time() - t0, manifest, summaries)
