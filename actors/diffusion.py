"""Kandinsky 2.2 backends (diffusers): the neutral face from a depth ControlNet, and
background/hair inpainting.

Weights are the user's: ``<stage>.model`` (decoder) and ``<stage>.options.prior`` are local
folders or hub ids; nothing is downloaded unless a hub id is given and the hub is reachable.
Missing weights fail at start-up naming the path and how to get them.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from actors.base import StageConfig, register
from actors.inpainting import inpaint_mask
from actors.neutral_face import FrontalRenderer
from faces.demographics import NEGATIVE_PROMPT, identity_rng

log = logging.getLogger(__name__)

DEFAULT_PRIOR = "kandinsky-community/kandinsky-2-2-prior"
DEFAULT_CONTROLNET = "kandinsky-community/kandinsky-2-2-controlnet-depth"
DEFAULT_INPAINT = "kandinsky-community/kandinsky-2-2-decoder-inpaint"


def looks_local(where: str) -> bool:
    return where.startswith(("/", "./", "../", "~")) or os.path.exists(where)


def check_weights(where: str, stage: str, key: str) -> None:
    """Start-up check in the driver: a local folder must hold a diffusers pipeline; a hub id
    must be reachable or already in the local Hugging Face cache."""
    if looks_local(where):
        if not os.path.isfile(os.path.join(os.path.expanduser(where), "model_index.json")):
            raise FileNotFoundError(
                f"{stage}: no diffusers pipeline at {key}={where!r} (model_index.json missing); "
                f"download the weights with `huggingface-cli download <repo> --local-dir {where}`"
                " or run `pain3d make-tiny-diffusion` for the tiny test models")
        return
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(where, local_files_only=True)
        except Exception as e:  # noqa: BLE001
            raise FileNotFoundError(
                f"{stage}: {key}={where!r} is not in the local Hugging Face cache and the hub is "
                f"offline; run `huggingface-cli download {where}` or use a local folder") from e


def load_pipeline(cls_name: str, where: str, device: str, stage: str):
    import diffusers
    import torch

    cls = getattr(diffusers, cls_name)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    where = os.path.expanduser(where)
    local = os.path.isdir(where)
    try:
        pipe = cls.from_pretrained(where, torch_dtype=dtype, local_files_only=local or
                                   os.environ.get("HF_HUB_OFFLINE") == "1")
    except Exception as e:  # noqa: BLE001 - one sentence naming path and fix
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(
            f"{stage}: cannot load {cls_name} from {where!r} ({first}); download the weights "
            f"with `huggingface-cli download <repo> --local-dir <folder>` and point {stage}.model "
            "(or options.prior) at that folder") from e
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generators(batch, stream: str, device: str):
    import torch

    gens = []
    for s, i in zip(batch["seed"], batch["identity"]):
        seed = int(identity_rng(int(s), int(i), stream).integers(2 ** 31))
        gens.append(torch.Generator(device="cpu" if not device.startswith("cuda") else device)
                    .manual_seed(seed))
    return gens


class _KandinskyPrior:
    def __init__(self, cfg: StageConfig, device: str, stage: str):
        self.prior = load_pipeline("KandinskyV22PriorPipeline",
                                   cfg.options.get("prior", DEFAULT_PRIOR), device, stage)
        self.steps = int(cfg.options.get("prior_steps", 25))
        self.negative = cfg.options.get("negative_prompt", NEGATIVE_PROMPT)

    def embeds(self, prompts: list[str], generators):
        """One call per identity with its own generator: the prior runs the negative prompt
        in the same batch, and per-identity calls keep results independent of batching."""
        import torch

        pos, neg = [], []
        for prompt, gen in zip(prompts, generators):
            out = self.prior(prompt=prompt, negative_prompt=self.negative,
                             num_inference_steps=self.steps, generator=gen)
            pos.append(out.image_embeds)
            neg.append(out.negative_image_embeds)
        return torch.cat(pos), torch.cat(neg)


class _KandinskyStage:
    """Options both Kandinsky stages share, and their prior + decoder pipelines."""

    stage, pipeline, default_decoder = "", "", ""

    def __init__(self, cfg: StageConfig, device: str, default_size: int = 512):
        self.device = device
        self.size = int(cfg.options.get("size", default_size))
        self.steps = int(cfg.options.get("steps", 50))
        self.guidance = float(cfg.options.get("guidance_scale", 4.0))
        self.prior = _KandinskyPrior(cfg, device, self.stage)
        self.decoder = load_pipeline(self.pipeline, cfg.model or self.default_decoder, device,
                                     self.stage)


@register("neutral_face", "kandinsky")
class KandinskyNeutralFace(_KandinskyStage):
    """Prior (prompt -> image embedding) + depth-ControlNet decoder with the frontal depth map
    of the neutral mesh as the hint; one seed per identity."""

    stage, pipeline = "neutral_face", "KandinskyV22ControlnetPipeline"
    default_decoder = DEFAULT_CONTROLNET

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        super().__init__(cfg, device)
        self.frontal = FrontalRenderer(context, self.size)

    @staticmethod
    def depth_hint(depth: np.ndarray) -> np.ndarray:
        """Metric depth -> (3, H, W) in [0, 1], near = bright, background = 0 (as the
        depth ControlNet was trained on)."""
        fg = depth > 0
        hint = np.zeros_like(depth, np.float32)
        if fg.any():
            near, far = depth[fg].min(), depth[fg].max()
            hint[fg] = 1.0 - 0.8 * (depth[fg] - near) / max(far - near, 1e-6)
        return np.repeat(hint[None], 3, axis=0)

    def __call__(self, batch: dict) -> dict:
        import torch

        depths = np.stack([self.frontal(v0)["depth"] for v0 in batch["vertices"][:, 0]])
        hints = torch.from_numpy(np.stack([self.depth_hint(d) for d in depths]))
        hints = hints.to(self.device, dtype=self.decoder.unet.dtype)
        gens = _generators(batch, "kandinsky-face", self.device)
        emb, neg = self.prior.embeds([str(p) for p in batch["prompt"]], gens)
        images = self.decoder(image_embeds=emb, negative_image_embeds=neg, hint=hints,
                              height=self.size, width=self.size, num_inference_steps=self.steps,
                              guidance_scale=self.guidance, generator=gens,
                              output_type="np").images
        batch["neutral_image"] = (np.clip(images, 0, 1) * 255).astype(np.uint8)
        batch["frontal_depth"] = depths.astype(np.float32)
        return batch


@register("inpainting", "kandinsky")
class KandinskyInpaint(_KandinskyStage):
    """Kandinsky 2.2 inpainting of background and hair (mask from the render), prompted with
    the identity's demographic prompt; face pixels are kept from the render."""

    stage, pipeline = "inpainting", "KandinskyV22InpaintPipeline"
    default_decoder = DEFAULT_INPAINT

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        super().__init__(cfg, device)
        self.volume = float(cfg.options.get("hair_volume", 0.04))
        self.frames_per_call = int(cfg.options.get("frames_per_call", 8))

    def __call__(self, batch: dict) -> dict:
        from PIL import Image

        rgb = batch["rgb"].copy()
        B, E, V, H, W, _ = rgb.shape
        gens = _generators(batch, "kandinsky-inpaint", self.device)
        emb, neg = self.prior.embeds([str(p) for p in batch["prompt"]], gens)
        for i in range(B):
            jobs = [(e, v) for e in range(E) for v in range(V)]
            for k in range(0, len(jobs), self.frames_per_call):
                chunk = jobs[k:k + self.frames_per_call]
                images, masks = [], []
                for e, v in chunk:
                    m = inpaint_mask(batch["scalp"][i, v], batch["mask"][i, e, v], self.volume)
                    masks.append(Image.fromarray(m.astype(np.uint8) * 255).resize(
                        (self.size, self.size), Image.NEAREST))  # white = repaint
                    images.append(Image.fromarray(rgb[i, e, v]).resize((self.size, self.size),
                                                                        Image.BICUBIC))
                n = len(chunk)
                out = self.decoder(image=images, mask_image=masks,
                                   image_embeds=emb[i:i + 1].repeat(n, 1),
                                   negative_image_embeds=neg[i:i + 1].repeat(n, 1),
                                   height=self.size, width=self.size,
                                   num_inference_steps=self.steps, guidance_scale=self.guidance,
                                   generator=gens[i], output_type="np").images
                for (e, v), img in zip(chunk, out):
                    up = np.asarray(Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
                                    .resize((W, H), Image.BICUBIC))
                    keep = ~inpaint_mask(batch["scalp"][i, v], batch["mask"][i, e, v],
                                         self.volume)
                    rgb[i, e, v] = np.where(keep[..., None], rgb[i, e, v], up)
        batch["rgb"] = rgb
        return batch
