"""Kandinsky 2.2 neutral faces through pain3d's actor pool against a bare diffusers loop, in
the same run: images/s of each and their ratio (target >= 0.95). For a GPU machine.

    python benchmarks/diffusion.py [--images 32] [--batch 4] [--steps 25] [--prior-steps 25]
                                   [--size 512] [--tiny] [--device cuda] [--json F]

No weights are downloaded: the prior (PriorTransformer, CLIP ViT-bigG-sized text and image
encoders) and the depth-ControlNet decoder (UNet 1.2 B parameters, MoVQ) are built at their
published sizes with random weights and saved as diffusers folders, which both sides load.
Pictures are noise; the arithmetic per step is the real model's. The tokenizer is pain3d's
character-level test tokenizer (prompts are padded to 77 tokens either way).
- bare: the prior once per identity (as the backend does) and the decoder over batches of
  depth hints, in this process.
- pool: `pain3d generate`'s own graph up to the neutral-face stage (identity rows, rigging,
  the kandinsky neutral-face actor on one GPU, its frontal depth render included); images/s
  from the first batch out to the last (the actor's load excluded, as the bare side's).
`--tiny` swaps in the tiny test pipelines (seconds on a CPU: exercises this script).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def full_size(out: Path) -> dict[str, Path]:
    """Random-initialised Kandinsky 2.2 prior and depth-ControlNet decoder at full size."""
    from benchmarks.kandinsky_full import build_full_kandinsky

    return build_full_kandinsky(out, ("prior", "controlnet"))


def stage_config(paths, args):
    from actors.base import StageConfig

    return StageConfig(backend="kandinsky", model=str(paths["controlnet"]),
                       num_gpus=1 if args.device.startswith("cuda") else 0, num_cpus=0.5,
                       batch_size=args.batch, options={
                           "prior": str(paths["prior"]), "steps": args.steps,
                           "prior_steps": args.prior_steps, "size": args.size})


def bare(paths, args, batches: list[dict]) -> float:
    """The backend's own calls, minus Ray: images/s after one warm-up batch."""
    import torch

    from actors.diffusion import KandinskyNeutralFace

    stage = KandinskyNeutralFace(stage_config(paths, args), _context(), args.device)
    hints = [torch.from_numpy(np.stack([stage.depth_hint(stage.frontal(v)["depth"])
                                        for v in b["vertices"][:, 0]])) for b in batches]

    def run(b, hint):
        gens = [torch.Generator(device=args.device).manual_seed(int(i)) for i in b["identity"]]
        emb, neg = stage.prior.embeds([str(p) for p in b["prompt"]], gens)
        return stage.decoder(image_embeds=emb, negative_image_embeds=neg,
                             hint=hint.to(args.device, dtype=stage.decoder.unet.dtype),
                             height=args.size, width=args.size, num_inference_steps=args.steps,
                             guidance_scale=stage.guidance, generator=gens,
                             output_type="np").images

    run(batches[0], hints[0])
    _sync(args.device)
    t0 = time.perf_counter()
    n = sum(len(run(b, h)) for b, h in zip(batches[1:], hints[1:]))
    _sync(args.device)
    return n / (time.perf_counter() - t0)


def pool(paths, args, n_images: int) -> float:
    """pain3d's graph up to the neutral-face actor: images/s from the first batch out."""
    import ray
    from ray.data import ActorPoolStrategy

    from actors.base import stage_actor
    from cluster.config import load_config
    from pipelines.tasks import identity_rows

    cfg = load_config("local")
    ray.init(num_cpus=max(2, os.cpu_count() or 2), object_store_memory=500_000_000,
             include_dashboard=False, log_to_driver=False)
    ds = ray.data.from_items([{"identity": i} for i in range(n_images)],
                             override_num_blocks=n_images)
    ds = ds.map_batches(identity_rows, fn_kwargs={"cfg": cfg}, batch_size=1, num_cpus=0.25,
                        batch_format="numpy")
    ds = ds.map_batches(stage_actor("rigging"), fn_constructor_kwargs={
        "cfg": cfg.generate.stages.rigging, "context": _context()}, batch_size=args.batch,
        num_cpus=cfg.generate.stages.rigging.num_cpus, compute=ActorPoolStrategy(size=1),
        batch_format="numpy")
    sc = stage_config(paths, args)
    ds = ds.map_batches(stage_actor("neutral_face"), fn_constructor_kwargs={
        "cfg": sc, "context": _context()}, batch_size=args.batch, num_cpus=sc.num_cpus,
        num_gpus=sc.num_gpus or None,
        compute=ActorPoolStrategy(size=1), batch_format="numpy")
    times, counts = [], []
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        times.append(time.perf_counter())
        counts.append(len(b["identity"]))
    ray.shutdown()
    return sum(counts[1:]) / (times[-1] - times[0])


def _context():
    from cluster.config import load_config

    cfg = load_config("local")
    return {"face": cfg.face, "render": cfg.render, "qa": cfg.generate.qa}


def _sync(device: str):
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _batches(args) -> list[dict]:
    from cluster.config import load_config
    from pipelines.inprocess import run_stages, stage_steps

    steps = stage_steps(load_config("local", ["generate.stages.qa.backend=none"]))
    rows = [run_stages(steps, i, until="rigging") for i in range(args.images)]
    return [{k: np.concatenate([r[k] for r in rows[j:j + args.batch]])
             for k in ("identity", "prompt", "vertices", "seed")}
            for j in range(0, args.images, args.batch)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--prior-steps", type=int, default=25)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny test pipelines (CPU smoke run)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.images < 2 * args.batch:
        ap.error(f"--images must be at least two batches (one warms up), got {args.images} "
                 f"with --batch {args.batch}")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            ap.error("--device cuda: no CUDA device is visible; run this on a GPU machine, or "
                     "--tiny --device cpu to check the script")
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            from actors.tiny_diffusion import make_tiny_kandinsky

            paths = make_tiny_kandinsky(tmp)
        else:
            paths = full_size(Path(tmp))
        b = bare(paths, args, _batches(args))
        p = pool(paths, args, args.images)
    print(f"{'tiny' if args.tiny else 'full-size'} Kandinsky 2.2 depth ControlNet + prior, "
          f"{args.size} px, {args.steps} decoder / {args.prior_steps} prior steps, batch "
          f"{args.batch}, {args.images} images on {args.device}")
    print(f"  bare diffusers loop: {b:.3f} images/s\n  pain3d actor pool:   {p:.3f} images/s\n"
          f"  ratio pool / bare:   {p / b:.3f} (target >= 0.95)")
    if args.json:
        Path(args.json).write_text(json.dumps({"tiny": args.tiny, "device": args.device,
                                               "bare_images_s": b, "pool_images_s": p,
                                               "ratio": p / b}, indent=1))


if __name__ == "__main__":
    main()
