"""Texturing stage: an albedo for each identity, used for every expression and view.

Backends: ``builtin`` (the procedural UV albedo), ``projection`` (bake the neutral-face
image onto the mesh through the frontal camera), ``hunyuan3d`` (Hunyuan3D 2.1 paint through
the model bridge, actors/hunyuan3d.py). Meshes without UVs (FLAME) get per-vertex colours.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from dataclasses import dataclass

from actors.base import StageConfig, options_of, register
from actors.options import rng
from actors.neutral_face import demographics_of, frontal_camera
from faces.identity import identity_appearance
from faces.geometry import smoothstep, vertex_normals
from faces.models import make_face_model
from faces.render import get_renderer


@register("texturing", "builtin")
class BuiltinTexture:
    """The procedural albedo (reused from the neutral-face stage when it made one)."""

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        self.model = make_face_model(context["face"])

    def __call__(self, batch: dict) -> dict:
        if "albedo" in batch or "albedo_vertex_colors" in batch:
            if "albedo" in batch:
                batch["texture"] = batch.pop("albedo")
            else:
                batch["vertex_colors"] = batch.pop("albedo_vertex_colors")
            return batch
        tex, vcol = [], []
        for i in range(len(batch["identity"])):
            app = identity_appearance(self.model, int(batch["seed"][i]), int(batch["identity"][i]),
                                      demographics_of(batch, i))
            (tex if app.texture is not None else vcol).append(
                app.texture if app.texture is not None else app.vertex_colors)
        if tex:
            batch["texture"] = np.stack(tex)
        if vcol:
            batch["vertex_colors"] = np.stack(vcol)
        return batch


def set_albedo(batch: dict, textures: list, vertex_colors: list) -> dict:
    """The identities' new albedo (UV textures or per-vertex colours) in ``batch``, in place
    of the one the neutral-face stage made."""
    if textures:
        batch["texture"] = np.stack(textures)
    if vertex_colors:
        batch["vertex_colors"] = np.stack(vertex_colors)
    batch.pop("albedo", None)
    batch.pop("albedo_vertex_colors", None)
    return batch


def _sample(image: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Bilinear sample of an (H, W, 3) image at pixel coordinates (N, 2) (x right, y down)."""
    h, w = image.shape[:2]
    coords = [np.clip(px[:, 1] - 0.5, 0, h - 1), np.clip(px[:, 0] - 0.5, 0, w - 1)]
    return np.stack([ndimage.map_coordinates(image[..., c].astype(np.float32), coords, order=1)
                     for c in range(3)], 1)


@dataclass(frozen=True)
class ProjectionOptions:
    texture_size: int | None = rng(64, 8192, None)  # default: face.texture_size
    depth_tolerance_m: float = rng(0.0, 0.1, 0.004)  # how far behind the seen surface counts


@register("texturing", "projection", options=ProjectionOptions)
class ProjectionTexture:
    """Bake the frontal neutral-face image onto the mesh.

    Each texel's surface point (on this identity's neutral mesh) is projected through the
    frontal camera; it takes the image's colour where the camera sees it (depth test against
    the frontal depth map, surface facing the camera). Unseen texels are filled from the
    nearest seen skin, fading to the median skin colour with distance; the boundary is
    feathered by the viewing angle so no seam shows. Works with any neutral-face backend.
    """

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        self.model = make_face_model(context["face"])
        self.camera = frontal_camera(context, self.model)
        o = options_of("texturing", cfg)
        self.size = o.texture_size or context["face"].texture_size
        self.depth_tol = o.depth_tolerance_m

    def _weights_and_colors(self, points, normals, image, depth):
        size = image.shape[0]
        px = self.camera.project(points, size)
        inside = (px[:, 0] >= 0) & (px[:, 0] < size) & (px[:, 1] >= 0) & (px[:, 1] < size)
        ix = np.clip(px[:, 0].astype(int), 0, size - 1)
        iy = np.clip(px[:, 1].astype(int), 0, size - 1)
        cam_pos = self.camera.position()
        view = cam_pos - points
        forward = np.asarray(self.camera.target) - cam_pos
        forward /= np.linalg.norm(forward)
        z = (points - cam_pos) @ forward  # depth along the view axis, as the renderer stores it
        d = depth[iy, ix]
        seen = inside & (d > 0) & (np.abs(z - d) < self.depth_tol)
        facing = np.sum(normals * view / np.linalg.norm(view, axis=1, keepdims=True), axis=1)
        w = smoothstep(0.15, 0.45, facing) * seen
        return w, _sample(image, px)

    def __call__(self, batch: dict) -> dict:
        mesh0 = self.model.template
        out_tex, out_vc = [], []
        for i in range(len(batch["identity"])):
            neutral = batch["vertices"][i, 0]
            image = batch["neutral_image"][i].astype(np.float32)
            depth = batch["frontal_depth"][i]
            mesh = self.model.mesh(neutral)
            normals = vertex_normals(neutral, mesh.faces)
            if mesh0.corner_uv is not None:
                renderer = get_renderer()  # this thread's context
                attrs, covered = renderer.bake_uv(mesh, neutral, self.size)
                nrm, _ = renderer.bake_uv(mesh, normals, self.size)
                pts, nm = attrs[..., :3].reshape(-1, 3), nrm[..., :3].reshape(-1, 3)
                nm /= np.maximum(np.linalg.norm(nm, axis=1, keepdims=True), 1e-9)
                w, col = self._weights_and_colors(pts, nm, image, depth)
                w = w.reshape(self.size, self.size) * covered
                col = col.reshape(self.size, self.size, 3)
                out_tex.append(self._fill_texture(col, w, covered))
            else:
                w, col = self._weights_and_colors(neutral, normals, image, depth)
                out_vc.append(self._fill_vertices(neutral, col, w))
        return set_albedo(batch, out_tex, out_vc)

    @staticmethod
    def _fill_texture(col, w, covered):
        seen = w > 0.5
        if not seen.any():
            raise ValueError("projection texturing saw no surface in the neutral image; check "
                             "render.camera and the neutral-face backend's image size")
        skin = np.median(col[seen], axis=0)
        dist, idx = ndimage.distance_transform_edt(~seen, return_indices=True)
        nearest = col[idx[0], idx[1]]
        fade = smoothstep(4.0, 40.0, dist)[..., None]
        fill = nearest * (1 - fade) + skin * fade
        out = col * w[..., None] + fill * (1 - w[..., None])
        return np.clip(out, 0, 255).astype(np.uint8)

    @staticmethod
    def _fill_vertices(points, col, w):
        seen = w > 0.5
        if not seen.any():
            raise ValueError("projection texturing saw no vertex in the neutral image")
        skin = np.median(col[seen], axis=0)
        d, j = cKDTree(points[seen]).query(points)
        nearest = col[seen][j]
        fade = smoothstep(0.005, 0.04, d)[:, None]
        fill = nearest * (1 - fade) + skin * fade
        out = col * w[:, None] + fill * (1 - w[:, None])
        return np.clip(out, 0, 255).astype(np.uint8)
