"""Neutral-face stage: a frontal 2-D face image of each identity's neutral mesh.

Backends: ``builtin`` renders the neutral mesh with its procedural albedo; ``kandinsky``
(in actors/diffusion.py) conditions Kandinsky 2.2 with a depth ControlNet on the frontal
depth map and a demographic prompt. Both also emit the frontal depth map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actors.base import StageConfig, egl_device_index, options_of, register
from actors.options import rng
from faces.demographics import Demographics
from faces.identity import identity_appearance
from faces.models import make_face_model
from faces.render import Camera, get_renderer


def frontal_camera(context: dict, model) -> Camera:
    c = context["render"].camera
    return Camera(yaw_deg=0.0, pitch_deg=c.pitch_deg, distance=c.distance, fov_deg=c.fov_deg,
                  target=tuple(model.camera_target), near=c.near, far=c.far)


def demographics_of(batch: dict, i: int) -> Demographics:
    return Demographics(str(batch["age_group"][i]), str(batch["gender"][i]),
                        str(batch["ethnicity"][i]))


class FrontalRenderer:
    """Renders an identity's neutral mesh from the front (depth, mask, optional albedo)."""

    def __init__(self, context: dict, size: int, gpu_ids=()):
        self.context = context
        self.model = make_face_model(context["face"])
        self.size = size
        self.device_index = egl_device_index(list(gpu_ids))
        self.camera = frontal_camera(context, self.model)

    def __call__(self, neutral_vertices: np.ndarray, texture=None, vertex_colors=None) -> dict:
        # looked up per call: the renderer belongs to the calling thread
        return get_renderer(self.device_index).render(self.model.mesh(neutral_vertices), self.camera, self.size,
                                    texture=texture, vertex_colors=vertex_colors,
                                    lighting=self.context["render"].lighting,
                                    outputs=("rgb", "depth", "mask"))


@dataclass(frozen=True)
class BuiltinFaceOptions:
    size: int | None = rng(16, 4096, None)  # frontal render size (default: render.size)


@register("neutral_face", "builtin", options=BuiltinFaceOptions)
class BuiltinNeutralFace:
    """Procedural albedo rendered frontally; the albedo is passed on for texturing."""

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        size = options_of("neutral_face", cfg).size or context["render"].size
        self.frontal = FrontalRenderer(context, size)

    def __call__(self, batch: dict) -> dict:
        images, depths, albedos, vcols = [], [], [], []
        model = self.frontal.model
        for i in range(len(batch["identity"])):
            app = identity_appearance(model, int(batch["seed"][i]), int(batch["identity"][i]),
                                      demographics_of(batch, i))
            r = self.frontal(batch["vertices"][i, 0], app.texture, app.vertex_colors)
            images.append(r["rgb"])
            depths.append(r["depth"])
            if app.texture is not None:
                albedos.append(app.texture)
            else:
                vcols.append(app.vertex_colors)
        batch["neutral_image"] = np.stack(images)
        batch["frontal_depth"] = np.stack(depths)
        if albedos:
            batch["albedo"] = np.stack(albedos)
        if vcols:
            batch["albedo_vertex_colors"] = np.stack(vcols)
        return batch
