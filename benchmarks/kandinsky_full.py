"""Kandinsky 2.2's three pipelines at their published sizes with random weights, saved as
diffusers folders (no download): the prior (PriorTransformer 1.0 B, CLIP ViT-bigG text tower
0.7 B and image tower 1.8 B), the depth-ControlNet decoder and the inpainting decoder
(UNet2DConditionModel 1.2 B each, MoVQ 67 M). Every architecture key is the published
config.json's (the hub's files at the revisions BENCHMARKS.md names, read through
hash-checked mirrors); weights are stored in fp16 to halve the disk (~12 GB) and load as any
dtype. The tokenizer is pain3d's character-level test tokenizer over the full 49,408-entry
vocabulary width (so its special-token ids, 0/1, differ from CLIP's 49406/49407).
"""
from __future__ import annotations

from pathlib import Path

PIPELINES = ("prior", "controlnet", "inpaint")


def _prior():
    import torch
    from diffusers import KandinskyV22PriorPipeline, PriorTransformer, UnCLIPScheduler
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModelWithProjection,
                              CLIPVisionConfig, CLIPVisionModelWithProjection)

    from actors.tiny_diffusion import _tokenizer

    text = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
        projection_dim=1280, vocab_size=49408, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        hidden_act="gelu"))
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1664, intermediate_size=8192, num_attention_heads=16, num_hidden_layers=48,
        image_size=224, patch_size=14, projection_dim=1280, hidden_act="gelu"))
    prior = PriorTransformer(num_attention_heads=32, attention_head_dim=64, num_layers=20,
                             embedding_dim=1280, num_embeddings=77, additional_embeddings=4)
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))  # 0 zeroes every embedding
    import tempfile

    tok = _tokenizer(Path(tempfile.mkdtemp()) / "tok")
    return KandinskyV22PriorPipeline(
        prior=prior, image_encoder=vision, text_encoder=text, tokenizer=tok,
        image_processor=CLIPImageProcessor(crop_size=224, size=224, do_center_crop=True,
                                           do_normalize=True, do_resize=True, resample=3),
        scheduler=UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                  num_train_timesteps=1000, clip_sample=True,
                                  clip_sample_range=10.0))


def _unet(in_channels: int, addition: str):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        in_channels=in_channels, out_channels=8, addition_embed_type=addition,
        addition_embed_type_num_heads=64, block_out_channels=(384, 768, 1152, 1536),
        layers_per_block=3, attention_head_dim=64, cross_attention_dim=768,
        encoder_hid_dim=1280, encoder_hid_dim_type="image_proj",
        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
        up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", resnet_time_scale_shift="scale_shift",
        class_embed_type=None)


def _movq():
    from diffusers import VQModel

    return VQModel(block_out_channels=[128, 256, 256, 512], in_channels=3, out_channels=3,
                   latent_channels=4, layers_per_block=2, norm_type="spatial",
                   down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
                   up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
                   num_vq_embeddings=16384, vq_embed_dim=4)


def _scheduler(clip_sample: bool):
    """The decoders' published DDPM settings (the depth ControlNet's clips its samples)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085,
                         beta_end=0.012, clip_sample=clip_sample, steps_offset=1,
                         prediction_type="epsilon", thresholding=False)


def build_full_kandinsky(out: str | Path, which=PIPELINES) -> dict[str, Path]:
    """Write the pipelines under ``out`` (each once: an existing folder is kept)."""
    import gc

    import torch
    from diffusers import KandinskyV22ControlnetPipeline, KandinskyV22InpaintPipeline

    out = Path(out)
    paths = {k: out / k for k in PIPELINES}
    makers = {"prior": _prior,
              "controlnet": lambda: KandinskyV22ControlnetPipeline(
                  unet=_unet(8, "image_hint"), scheduler=_scheduler(True), movq=_movq()),
              "inpaint": lambda: KandinskyV22InpaintPipeline(
                  unet=_unet(9, "image"), scheduler=_scheduler(False), movq=_movq())}
    for i, k in enumerate(which):
        if (paths[k] / "model_index.json").exists():
            continue
        torch.manual_seed(i)
        pipe = makers[k]()
        pipe.to(torch.float16).save_pretrained(paths[k])
        del pipe
        gc.collect()
    return paths
