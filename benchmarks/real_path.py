"""The paper preset through the real stage actors on one identity at the paper's sizes.

    .venv/bin/python benchmarks/real_path.py [--work benchmarks/real_path_out] [--steps 2]

- Kandinsky 2.2 prior, depth-ControlNet decoder and inpainting decoder are built with their
  full published configurations (benchmarks/kandinsky_full.py) and random weights, saved as
  diffusers folders and loaded with ``from_pretrained`` as real weights would be (once; the
  folders are kept under --work, ~17 GB).
- The face is the FLAME-format test model (faces/flame_testmodel.py) with the derived rig.
- configs/paper.yaml as given, except: rigging ``flame`` (NFR: issue 29), texturing
  ``projection`` (Hunyuan3D: issue 29), no GPUs, 1 identity, ``--steps`` denoising steps and 2
  prior steps (CPU).
- Each stage runs in this process through the same ``StageActor`` shell Ray uses (so a
  stage's peak memory is its own); per stage: seconds and peak resident memory, sampled.

Prints a table and writes ``results.json`` and ``frames.png`` (neutral and one pain
expression, three views) under --work.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 50 ms)."""

    def __enter__(self):
        import psutil

        self._p, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.start = self._p.memory_info().rss
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._p.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._p.memory_info().rss)


def config(work: Path, models: dict, flame: Path, steps: int):
    from cluster.config import load_config

    st = "generate.stages"
    over = [f"face.flame_path={flame / 'flame2023.pkl'}",
            f"face.flame_landmarks_path={flame / 'mediapipe_landmark_embedding.npz'}",
            f"face.flame_uv_path={flame / 'FLAME_texture.npz'}",
            f"{st}.rigging.backend=flame", f"{st}.rigging.model=null",
            f"{st}.rigging.options={{}}",
            f"{st}.texturing.backend=projection", f"{st}.texturing.model=null",
            f"{st}.texturing.options={{}}", f"generate.out={work / 'dataset'}",
            "generate.identities=1"]
    for name, key in (("neutral_face", "controlnet"), ("inpainting", "inpaint")):
        over += [f"{st}.{name}.model={models[key]}", f"{st}.{name}.options.prior={models['prior']}",
                 f"{st}.{name}.options.steps={steps}", f"{st}.{name}.options.prior_steps=2"]
    for name in ("rigging", "neutral_face", "texturing", "inpainting", "qa"):
        over += [f"{st}.{name}.num_gpus=0"]
    return load_config("paper", over)


def run_stages(cfg) -> tuple[list[dict], dict]:
    from actors.base import stage_actor
    from pipelines.tasks import identity_rows, render_rows, write_rows

    context = {"face": cfg.face, "render": cfg.render, "qa": cfg.generate.qa}
    st = cfg.generate.stages
    batch = identity_rows({"identity": np.array([0])}, cfg)
    rows = []

    def step(name, make, call):
        with PeakRSS() as mem:
            t0 = time.time()
            fn = make()
            t1 = time.time()
            out = call(fn)
            t2 = time.time()
        extra = {}
        backend = getattr(fn, "backend", None)
        if backend is not None and hasattr(backend, "prior"):
            p = backend.prior
            extra = {"prior_loaded_bytes": p.loaded_bytes,
                     "prior_image_encoder_skipped_bytes": p.skipped_bytes or 0}
        rows.append({"stage": name, "load_s": round(t1 - t0, 1), "run_s": round(t2 - t1, 1),
                     "peak_rss_gb": round(mem.peak / 1e9, 2),
                     "added_rss_gb": round((mem.peak - mem.start) / 1e9, 2), **extra})
        print(f"  {name}: {rows[-1]}", flush=True)
        del fn
        import gc

        gc.collect()
        return out

    for name in ("rigging", "neutral_face", "texturing"):
        batch = step(name, lambda n=name: stage_actor(n)(getattr(st, n), context),
                     lambda fn: fn(batch))
    batch = step("render", lambda: None, lambda _: render_rows(batch, cfg))
    for name in ("inpainting", "qa"):
        batch = step(name, lambda n=name: stage_actor(n)(getattr(st, n), context),
                     lambda fn: fn(batch))
    os.makedirs(cfg.generate.out, exist_ok=True)
    step("write", lambda: None, lambda _: write_rows(batch, cfg, cfg.generate.out))
    return rows, batch


def picture(batch, path: Path) -> None:
    from PIL import Image

    rgb = batch["rgb"][0]  # (E, V, H, W, 3)
    e = int(np.argmax(batch["pspi"][0])) if "pspi" in batch else 1
    grid = np.concatenate([np.concatenate(list(rgb[0]), 1), np.concatenate(list(rgb[e]), 1)], 0)
    Image.fromarray(grid).resize((grid.shape[1] // 2, grid.shape[0] // 2)).save(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="benchmarks/real_path_out")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--tiny", action="store_true",
                    help="tiny random pipelines instead of the full ones (checks the script)")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PAIN3D_CACHE", str(work / "cache"))
    from benchmarks.kandinsky_full import build_full_kandinsky
    from faces import flame_testmodel

    t0 = time.time()
    if a.tiny:
        from actors.tiny_diffusion import make_tiny_kandinsky

        models = make_tiny_kandinsky(work / "tiny")
    else:
        models = build_full_kandinsky(work / "models")
    flame = work / "flame"
    if not (flame / "flame2023.pkl").exists():
        flame_testmodel.write(flame)
    print(f"models ready in {time.time() - t0:.0f} s", flush=True)
    cfg = config(work, models, flame, a.steps)
    print(f"render {cfg.render.size} px, neutral face {cfg.generate.stages.neutral_face.options['size']}"
          f" px, inpainting {cfg.generate.stages.inpainting.options['size']} px, {a.steps} steps")
    rows, batch = run_stages(cfg)
    qa = batch.get("qa_face_found")
    found = float(np.mean(qa)) if qa is not None else None
    picture(batch, work / "frames.png")
    result = {"tiny": a.tiny, "steps": a.steps, "stages": rows, "qa_face_found": found,
              "torch_threads": __import__("torch").get_num_threads()}
    (work / "results.json").write_text(json.dumps(result, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(result))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
