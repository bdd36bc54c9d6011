"""Inpainting stage: background and hair around the rendered head, for every frame.

Backends: ``builtin`` (the scene's procedural backdrop; a hair region grown from the scalp
for heads without hair geometry), and
``kandinsky`` (in actors/diffusion.py: Kandinsky 2.2 inpainting guided by the same
background/hair mask). The face pixels themselves are never changed.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from dataclasses import dataclass

from actors.base import StageConfig, options_of, register
from actors.options import rng
from actors.neutral_face import demographics_of
from faces.backdrop import backdrop, view_window
from faces.demographics import identity_rng
from faces.scene import Scene
from faces.texture import _hair_color


def hair_region(scalp: np.ndarray, head: np.ndarray, volume: float) -> np.ndarray:
    """Where hair goes in one view: the visible scalp plus a layer of the given thickness
    (fraction of the image) grown outwards from it, above the ears."""
    h = scalp.shape[0]
    k = max(1, int(round(volume * h)))
    grown = cv2.dilate(scalp.astype(np.uint8), cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))) > 0
    rows = np.flatnonzero(scalp.any(axis=1))
    if len(rows) == 0:
        return np.zeros_like(scalp)
    # hair falls no lower than a little below where the scalp ends in this view
    limit = rows.max() + k // 2
    grown[limit:] = False
    return (grown & ~head) | scalp


def inpaint_mask(scalp: np.ndarray, head: np.ndarray, volume: float) -> np.ndarray:
    """What an inpainting model may change: background and hair (face skin stays)."""
    return ~head | hair_region(scalp, head, volume)


def _scene(batch: dict, i: int) -> Scene:
    return Scene(**{f.name: batch[f"scene_{f.name}"][i] for f in dataclasses.fields(Scene)})


@dataclass(frozen=True)
class BuiltinInpaintOptions:
    bald_probability: float = rng(0.0, 1.0, 0.1)  # men only; elderly men three times as often


@register("inpainting", "builtin", options=BuiltinInpaintOptions)
class BuiltinInpaint:
    """The scene's procedural indoor backdrop behind the foreground. Heads without hair of
    their own (FLAME) also get hair painted in 2-D (demographic colour, strands) around the
    scalp; the built-in head wears its hair as geometry (faces/hair.py)."""

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        # baldness: men only, elderly men three times as often
        self.bald_probability = options_of("inpainting", cfg).bald_probability
        self.paint_hair = context["face"].model != "builtin"

    def __call__(self, batch: dict) -> dict:
        rgb = batch["rgb"].copy()  # (B, E, V, H, W, 3)
        size = rgb.shape[3]
        for i in range(len(batch["identity"])):
            wide = backdrop(_scene(batch, i), size)
            hair = self._hair(batch, i, size) if self.paint_hair else None
            for v in range(rgb.shape[2]):
                back = view_window(wide, float(batch["yaws"][i][v]))
                for e in range(rgb.shape[1]):
                    img = rgb[i, e, v].astype(np.float32) / 255.0
                    img = np.where(batch["mask"][i, e, v][..., None], img, back)
                    if hair is not None:
                        a, hair_img = hair[v]
                        img = img * (1 - a) + hair_img * a
                    rgb[i, e, v] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        batch["rgb"] = rgb
        return batch

    def _hair(self, batch: dict, i: int, size: int) -> list:
        """Per view: (alpha, hair image) of hair grown from the scalp (FLAME heads)."""
        seed, ident = int(batch["seed"][i]), int(batch["identity"][i])
        rng = identity_rng(seed, ident, "inpaint")
        demo = demographics_of(batch, i)
        hair = _hair_color(demo, rng)
        p_bald = 0.0 if demo.gender == "woman" else self.bald_probability * (
            3 if demo.age_group == "elderly" else 1)
        bald = rng.random() < p_bald
        volume = 0.0 if bald else rng.uniform(0.015, 0.06)
        strands = cv2.resize(rng.standard_normal((size // 16, size)).astype(np.float32),
                             (size, size), interpolation=cv2.INTER_CUBIC)
        hair_img = np.clip(hair[None, None] * (1 + 0.25 * strands[..., None]), 0, 1)
        out = []
        for v in range(batch["scalp"].shape[1]):
            scalp = batch["scalp"][i, v]
            region = np.zeros_like(scalp) if bald else hair_region(scalp, batch["mask"][i, 0, v],
                                                                   volume)
            a = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 1.2)[..., None]
            out.append((a, hair_img))
        return out
