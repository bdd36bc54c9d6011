"""Kandinsky 2.2 backends (diffusers): the neutral face from a depth ControlNet, and
background/hair inpainting.

Weights are the user's: ``<stage>.model`` (decoder) and ``<stage>.options.prior`` are local
folders or hub ids; nothing is downloaded unless a hub id is given and the hub is reachable.
Missing weights fail at start-up naming the path and how to get them.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from actors.base import StageConfig, looks_local, options_of, register
from actors.options import rng
from actors.inpainting import inpaint_mask
from actors.neutral_face import FrontalRenderer
from faces.demographics import NEGATIVE_PROMPT, identity_rng

log = logging.getLogger(__name__)

DEFAULT_PRIOR = "kandinsky-community/kandinsky-2-2-prior"
DEFAULT_CONTROLNET = "kandinsky-community/kandinsky-2-2-controlnet-depth"
DEFAULT_INPAINT = "kandinsky-community/kandinsky-2-2-decoder-inpaint"


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


def load_pipeline(cls_name: str, where: str, device: str, stage: str, **components):
    """A diffusers pipeline from a local folder or hub id; ``components`` replace (or, as
    None, skip) some of its parts."""
    import diffusers
    import torch

    cls = getattr(diffusers, cls_name)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    where = os.path.expanduser(where)
    local = os.path.isdir(where)
    try:
        pipe = cls.from_pretrained(where, dtype=dtype, local_files_only=local or
                                   os.environ.get("HF_HUB_OFFLINE") == "1", **components)
    except Exception as e:  # noqa: BLE001 - one sentence naming path and fix
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(
            f"{stage}: cannot load {cls_name} from {where!r} ({first}); download the weights "
            f"with `huggingface-cli download <repo> --local-dir <folder>` and point {stage}.model "
            "(or options.prior) at that folder") from e
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def weight_bytes(pipe) -> int:
    """Bytes of the parameters a loaded pipeline holds."""
    import torch

    return sum(p.numel() * p.element_size() for m in pipe.components.values()
               if isinstance(m, torch.nn.Module) for p in m.parameters())


def folder_weight_bytes(where: str, part: str) -> int | None:
    """On-disk size of one component's weights in a local diffusers folder (None: unknown)."""
    d = os.path.join(os.path.expanduser(where), part)
    if not os.path.isdir(d):
        return None
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
               if f.endswith((".safetensors", ".bin")))


def _generators(seeds, identities, stream: str, device: str):
    import torch

    gens = []
    for s, i in zip(seeds, identities):
        seed = int(identity_rng(int(s), int(i), stream).integers(2 ** 31))
        gens.append(torch.Generator(device="cpu" if not device.startswith("cuda") else device)
                    .manual_seed(seed))
    return gens


@dataclass(frozen=True)
class KandinskyOptions:
    """Options both Kandinsky 2.2 stages take."""

    prior: str = DEFAULT_PRIOR  # local folder or hub id of the prior pipeline
    prior_steps: int = rng(1, 1000, 25)
    negative_prompt: str = NEGATIVE_PROMPT
    size: int = rng(64, 2048, 512)  # diffusion resolution; frames are resized to and from it
    steps: int = rng(1, 1000, 50)
    guidance_scale: float = rng(1.0, 50.0, 4.0)

    def __post_init__(self):
        if self.size % 64:  # the MoVQ latent is size/8 rounded up to a multiple of 8
            near = max(64, 64 * round(self.size / 64))
            raise ValueError(f"size {self.size} is not a multiple of 64, which Kandinsky 2.2 "
                             f"needs (its latent would not match the hint or mask); use {near}")
        if not self.negative_prompt.strip():
            raise ValueError("negative_prompt is empty; give one (without it the prior needs "
                             "its 1.8 B-parameter image encoder, which pain3d does not load)")


@dataclass(frozen=True)
class KandinskyInpaintOptions(KandinskyOptions):
    hair_volume: float = rng(0.0, 0.3, 0.04)  # hair layer grown from the scalp (image fraction)
    frames_per_call: int = rng(1, 64, 8)  # (identity, view) backgrounds per diffusion call


class _KandinskyPrior:
    """The prior from prompt to image embedding, loaded without its CLIP image encoder: with a
    negative prompt, text embeddings are all it needs."""

    def __init__(self, o: KandinskyOptions, device: str, stage: str):
        self.prior = load_pipeline("KandinskyV22PriorPipeline", o.prior, device, stage,
                                   image_encoder=None)
        self.loaded_bytes = weight_bytes(self.prior)
        self.skipped_bytes = folder_weight_bytes(o.prior, "image_encoder")
        log.info("%s: Kandinsky prior loaded without its image encoder: %.2f GB of weights "
                 "(the encoder's %s on disk not loaded)", stage, self.loaded_bytes / 1e9,
                 "unknown size" if self.skipped_bytes is None else
                 f"{self.skipped_bytes / 1e9:.2f} GB")
        self.steps, self.negative = o.prior_steps, o.negative_prompt

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
    """The prior + decoder pipelines both Kandinsky stages load."""

    stage, pipeline, default_decoder = "", "", ""

    def __init__(self, cfg: StageConfig, device: str):
        self.device = device
        self.o = options_of(self.stage, cfg)
        self.size, self.steps, self.guidance = self.o.size, self.o.steps, self.o.guidance_scale
        self.prior = _KandinskyPrior(self.o, device, self.stage)
        self.decoder = load_pipeline(self.pipeline, cfg.model or self.default_decoder, device,
                                     self.stage)


@register("neutral_face", "kandinsky", options=KandinskyOptions)
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
        gens = _generators(batch["seed"], batch["identity"], "kandinsky-face", self.device)
        emb, neg = self.prior.embeds([str(p) for p in batch["prompt"]], gens)
        images = self.decoder(image_embeds=emb, negative_image_embeds=neg, hint=hints,
                              height=self.size, width=self.size, num_inference_steps=self.steps,
                              guidance_scale=self.guidance, generator=gens,
                              output_type="np").images
        batch["neutral_image"] = (np.clip(images, 0, 1) * 255).astype(np.uint8)
        batch["frontal_depth"] = depths.astype(np.float32)
        return batch


@register("inpainting", "kandinsky", options=KandinskyInpaintOptions)
class KandinskyInpaint(_KandinskyStage):
    """Kandinsky 2.2 inpainting of background and hair, prompted with the identity's
    demographic prompt. One background per identity and view, painted around the neutral
    frame where any of its expressions shows background or hair (seeded per view), then
    composited behind every expression: only the face changes between a pain frame and its
    neutral. Face pixels are kept from the render."""

    stage, pipeline = "inpainting", "KandinskyV22InpaintPipeline"
    default_decoder = DEFAULT_INPAINT

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        super().__init__(cfg, device)
        self.volume, self.frames_per_call = self.o.hair_volume, self.o.frames_per_call

    def __call__(self, batch: dict) -> dict:
        rgb = batch["rgb"].copy()
        B, E, V, H, W, _ = rgb.shape
        emb, neg = self.prior.embeds([str(p) for p in batch["prompt"]], _generators(
            batch["seed"], batch["identity"], "kandinsky-inpaint", self.device))
        keeps = {(i, v): [~inpaint_mask(batch["scalp"][i, v], batch["mask"][i, e, v], self.volume)
                          for e in range(E)] for i in range(B) for v in range(V)}
        jobs = list(keeps)
        for k in range(0, len(jobs), self.frames_per_call):
            chunk = jobs[k:k + self.frames_per_call]
            idx = [i for i, _ in chunk]
            gens = [_generators([batch["seed"][i]], [batch["identity"][i]],
                                f"kandinsky-inpaint-view{v}", self.device)[0] for i, v in chunk]
            out = inpaint_frames(self.decoder, [rgb[i, 0, v] for i, v in chunk],
                                 [~np.logical_and.reduce(keeps[j]) for j in chunk],
                                 emb[idx], neg[idx], gens, self.size, self.steps, self.guidance)
            for (i, v), img in zip(chunk, out):
                back = resize(img, (W, H))
                for e in range(E):
                    rgb[i, e, v] = np.where(keeps[i, v][e][..., None], rgb[i, e, v], back)
        batch["rgb"] = rgb
        return batch


def resize(img: np.ndarray, wh: tuple[int, int], resample=None) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(img if img.dtype == np.uint8 else
                         (np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    return np.asarray(im.resize(wh, Image.BICUBIC if resample is None else resample))


def inpaint_frames(pipe, images: list[np.ndarray], repaint: list[np.ndarray], emb, neg, gens,
                   size: int, steps: int, guidance: float, output_type: str = "np") -> list:
    """One ``KandinskyV22InpaintPipeline`` call over several frames, each blended with its
    own image and mask (uint8 RGB frames and bool repaint masks in; float RGB out).

    diffusers 0.42 blends every frame's latents with ``image[:1]`` inside ``mask_image[:1]``
    (the first frame's) at each step and at the end, which paints the first frame into the
    others. So a leading frame that keeps nothing is added (its blend changes nothing), and
    each frame is blended with its own noised image latents inside its own mask after every
    step (``callback_on_step_end``, from the noise this function draws per frame). A pipeline
    that blended per frame itself would give the same result."""
    import torch
    from diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_inpainting import (
        prepare_mask_and_masked_image)
    from PIL import Image

    lead = len(images) > 1
    if lead:
        images, repaint = [images[0]] + list(images), [np.ones_like(repaint[0])] + list(repaint)
        emb, neg = torch.cat([emb[:1], emb]), torch.cat([neg[:1], neg])
        gens = [torch.Generator(gens[0].device).manual_seed(0)] + list(gens)
    pil = [Image.fromarray(resize(im, (size, size))) for im in images]
    masks = [Image.fromarray(m.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)
             for m in repaint]  # white = repaint
    unet = pipe.unet
    lat_hw = size // pipe.movq_scale_factor
    shape = (pipe.movq.config.latent_channels, lat_hw, lat_hw)
    noise = torch.stack([torch.randn(shape, generator=g, device=g.device, dtype=unet.dtype)
                         for g in gens]).to(pipe.device)
    _, img_t = prepare_mask_and_masked_image(pil, masks, size, size)
    with torch.no_grad():
        img_lat = pipe.movq.encode(img_t.to(pipe.device, unet.dtype))["latents"]
    start = noise * pipe.scheduler.init_noise_sigma

    def blend(p, i, t, kw):
        n = len(pil)
        keep, lat = kw["mask_image"][:n], kw["latents"]  # [:n]: the guidance copy comes second
        ts = p.scheduler.timesteps
        ref = img_lat if i == len(ts) - 1 else p.scheduler.add_noise(
            img_lat, start, torch.tensor([ts[i + 1]]))
        return {"latents": keep * ref + (1 - keep) * lat}

    out = pipe(image=pil, mask_image=masks, image_embeds=emb, negative_image_embeds=neg,
               height=size, width=size, num_inference_steps=steps, guidance_scale=guidance,
               generator=gens, latents=noise, output_type=output_type, callback_on_step_end=blend,
               callback_on_step_end_tensor_inputs=["latents", "mask_image"]).images
    return list(out[1:] if lead else out)
