"""Tiny random-initialised Kandinsky 2.2 pipelines (prior, depth ControlNet, inpaint), built
in code and saved with ``save_pretrained`` — no download. They exercise the real diffusers
code path (loading, prompting, denoising, decoding) in seconds on a CPU; their pictures
are noise. ``pain3d make-tiny-diffusion OUT`` writes them for configs/tiny-diffusion.yaml.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

EMB = 32  # image-embedding width shared by the prior and the decoders


def _tokenizer(folder: Path):
    """A CLIP BPE tokenizer over single characters (no merges), from files written here."""
    from transformers import CLIPTokenizer

    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         pad_token="<|endoftext|>", model_max_length=77)


def _prior(tmp: Path):
    import torch
    from diffusers import KandinskyV22PriorPipeline, PriorTransformer, UnCLIPScheduler
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModelWithProjection,
                              CLIPVisionConfig, CLIPVisionModelWithProjection)

    torch.manual_seed(0)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=EMB,
                             num_layers=1)
    # clip_std starts at 0, which would zero every embedding
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))
    text = CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=EMB, projection_dim=EMB,
        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=256))
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=EMB, image_size=32, projection_dim=EMB, intermediate_size=37,
        num_attention_heads=4, num_channels=3, num_hidden_layers=2, patch_size=8))
    processor = CLIPImageProcessor(crop_size=32, size=32, do_center_crop=True, do_normalize=True,
                                   do_resize=True, resample=3,
                                   image_mean=[0.48145466, 0.4578275, 0.40821073],
                                   image_std=[0.26862954, 0.26130258, 0.27577711])
    scheduler = UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                num_train_timesteps=1000, clip_sample=True,
                                clip_sample_range=10.0)
    return KandinskyV22PriorPipeline(prior=prior, image_encoder=vision, text_encoder=text,
                                     tokenizer=_tokenizer(tmp / "tok"), scheduler=scheduler,
                                     image_processor=processor)


def _unet(in_channels: int, addition: str):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        in_channels=in_channels, out_channels=8, addition_embed_type=addition,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64),
        layers_per_block=1, encoder_hid_dim=EMB, encoder_hid_dim_type="image_proj",
        cross_attention_dim=64, attention_head_dim=4, resnet_time_scale_shift="scale_shift",
        class_embed_type=None)


def _movq():
    from diffusers import VQModel

    # four blocks = 8x downsampling, matching the UNet's image-hint encoder
    return VQModel(block_out_channels=[32, 32, 64, 64], in_channels=3, out_channels=3,
                   latent_channels=4,
                   down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
                   up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
                   layers_per_block=1, norm_num_groups=8, norm_type="spatial",
                   num_vq_embeddings=12, vq_embed_dim=4)


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085,
                         beta_end=0.012, clip_sample=False, set_alpha_to_one=False,
                         steps_offset=1, prediction_type="epsilon", thresholding=False)


def make_tiny_kandinsky(out: str | Path) -> dict[str, Path]:
    """Write tiny prior / controlnet / inpaint pipelines under ``out``; returns their folders."""
    import tempfile

    import torch
    from diffusers import KandinskyV22ControlnetPipeline, KandinskyV22InpaintPipeline

    out = Path(out)
    paths = {k: out / k for k in ("prior", "controlnet", "inpaint")}
    with tempfile.TemporaryDirectory() as tmp:
        _prior(Path(tmp)).save_pretrained(paths["prior"])
    torch.manual_seed(0)
    KandinskyV22ControlnetPipeline(unet=_unet(8, "image_hint"), scheduler=_scheduler(),
                                   movq=_movq()).save_pretrained(paths["controlnet"])
    torch.manual_seed(1)
    KandinskyV22InpaintPipeline(unet=_unet(9, "image"), scheduler=_scheduler(),
                                movq=_movq()).save_pretrained(paths["inpaint"])
    return paths
