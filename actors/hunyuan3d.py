"""Texturing with Hunyuan3D 2.1 paint through the model bridge.

Hunyuan3D runs in its own environment (bridge/hunyuan3d_server.py drives its
``textureGenPipeline``). Per identity this backend writes the neutral mesh (OBJ) and the
neutral image with its background masked out (RGBA PNG: Hunyuan3D pastes it on white), and
reads back the textured OBJ. Hunyuan3D always re-unwraps the mesh (xatlas), so its albedo
is in new UVs: every texel of the face model's own UV atlas (or every vertex of a mesh
without UVs) takes the colour at the same surface point of Hunyuan3D's mesh.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from actors.base import StageConfig, options_of, register
from actors.bridged import HoldsWorker, local, start_worker, worker_spec
from actors.options import BridgeOptions, rng
from actors.texturing import set_albedo
from bridge.hunyuan3d_server import hub_snapshot
from faces.models import make_face_model
from faces.objfile import ObjMesh, read_obj, write_obj
from faces.render import get_renderer


@dataclass(frozen=True)
class Hunyuan3DOptions(BridgeOptions):
    max_num_view: int = rng(6, 9, 6)  # Hunyuan3DPaintConfig(max_num_view, resolution)
    resolution: int = rng(512, 768, 512)  # 512 or 768
    paint_texture_size: int = rng(256, 8192, 4096)  # Hunyuan3D's own atlas (config.texture_size)
    texture_size: int | None = rng(64, 8192, None)  # the baked albedo; default face.texture_size
    timeout_s: float = rng(1.0, 86400.0, 1800.0)
    start_timeout_s: float = rng(1.0, 86400.0, 1800.0)

    def __post_init__(self):
        super().__post_init__()
        if self.resolution not in (512, 768):
            raise ValueError(f"resolution must be 512 or 768, got {self.resolution}")


def model_missing(model_dir: str) -> list[str]:
    out = [f"{model_dir}/hub/models--{r.replace('/', '--')}"
           for r in ("tencent/Hunyuan3D-2.1", "facebook/dinov2-giant")
           if hub_snapshot(model_dir, r) is None]
    ckpt = os.path.join(model_dir, "ckpt", "RealESRGAN_x4plus.pth")
    return out + ([] if os.path.isfile(ckpt) else [ckpt])


def masked_reference(image: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """The neutral image as RGBA, transparent where the frontal depth shows no head."""
    alpha = np.where(np.asarray(depth) > 0, 255, 0).astype(np.uint8)
    return np.dstack([np.asarray(image, np.uint8), alpha])


def _nearest_on(tri: np.ndarray, cand: np.ndarray, points: np.ndarray):
    """Of the candidate triangles ``cand`` (N, k) of each point: the best one, the point's
    barycentrics in it (clamped into the triangle) and its distance."""
    a, b, c = (tri[cand, i] for i in range(3))  # (N, k, 3)
    v0, v1, v2 = b - a, c - a, points[:, None] - a
    d00, d01, d11 = (v0 * v0).sum(-1), (v0 * v1).sum(-1), (v1 * v1).sum(-1)
    d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
    den = d00 * d11 - d01 ** 2
    den = np.where(np.abs(den) > 1e-30, den, 1e-30)
    w1, w2 = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
    bary = np.clip(np.stack([1 - w1 - w2, w1, w2], -1), 0, None)
    bary /= np.maximum(bary.sum(-1, keepdims=True), 1e-12)
    near = bary[..., :1] * a + bary[..., 1:2] * b + bary[..., 2:] * c
    dist = np.linalg.norm(near - points[:, None], axis=-1)
    best = dist.argmin(1)
    rows = np.arange(len(points))
    return cand[rows, best], bary[rows, best], dist[rows, best]


def surface_colors(obj: ObjMesh, texture: np.ndarray, points: np.ndarray):
    """Colour of ``texture`` (H, W, 3) through ``obj``'s UVs at the surface point of ``obj``
    nearest to each of ``points`` (N, 3); also each point's distance to that surface. Each
    point looks at the triangles of the 4 nearest centroids, and at 32 when none of those
    holds it (long thin triangles)."""
    tri = obj.vertices[obj.faces]  # (F, 3, 3)
    tree = cKDTree(tri.mean(1))
    k = min(4, len(tri))
    face, bary, dist = _nearest_on(tri, tree.query(points, k=k)[1].reshape(len(points), -1),
                                   points)
    scale = np.linalg.norm(tri.max((0, 1)) - tri.min((0, 1)))
    redo = np.flatnonzero(dist > 1e-6 * scale)
    if len(redo) and len(tri) > k:
        cand = tree.query(points[redo], k=min(32, len(tri)))[1]
        face[redo], bary[redo], dist[redo] = _nearest_on(tri, cand, points[redo])
    uv = (bary[:, :, None] * obj.corner_uv[face]).sum(1)
    h, w = texture.shape[:2]
    coords = [(1.0 - uv[:, 1]) * h - 0.5, uv[:, 0] * w - 0.5]  # OBJ: v = 1 is the top row
    cols = np.stack([ndimage.map_coordinates(texture[..., ch].astype(np.float32), coords,
                                             order=1, mode="nearest") for ch in range(3)], 1)
    return cols, dist


@register("texturing", "hunyuan3d", options=Hunyuan3DOptions)
class Hunyuan3DTexture(HoldsWorker):
    """Hunyuan3D 2.1 paint through the model bridge. ``texturing.model`` is the folder with
    its weights (``hub/``: the hub cache of tencent/Hunyuan3D-2.1 and facebook/dinov2-giant;
    ``ckpt/RealESRGAN_x4plus.pth``); ``options.python`` / ``options.repo`` its environment and
    clone. Nothing is downloaded at run time."""

    def __init__(self, cfg: StageConfig, context: dict, device: str):
        o = options_of("texturing", cfg)
        if not cfg.model:
            raise ValueError("texturing.backend 'hunyuan3d' needs texturing.model: the folder "
                             "with Hunyuan3D 2.1's weights (scripts/setup_model_env.sh hunyuan3d)")
        model_dir = local(cfg.model)
        missing = model_missing(model_dir)
        if missing:
            raise FileNotFoundError(f"texturing.model {cfg.model} lacks {', '.join(missing)}; "
                                    "fill it with scripts/setup_model_env.sh hunyuan3d")
        self.model = make_face_model(context["face"])
        self.size = o.texture_size or context["face"].texture_size
        self.server = start_worker(self.worker_spec(cfg, o))
        self._n = 0

    @staticmethod
    def missing(model_dir: str, o=None) -> list[str]:  # what `pain3d check` reports
        return model_missing(model_dir)

    @staticmethod
    def worker_spec(cfg: StageConfig, o: Hunyuan3DOptions):
        model_dir = local(cfg.model or "")
        env = {"HF_HOME": model_dir, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        return worker_spec("texturing", "hunyuan3d", "hunyuan3d_server", o, env=env,
                           model=model_dir, max_num_view=o.max_num_view,
                           resolution=o.resolution, paint_texture_size=o.paint_texture_size)

    def paint(self, neutral: np.ndarray, image: np.ndarray, depth: np.ndarray):
        """Hunyuan3D's textured mesh of one identity: (ObjMesh, albedo image). Its files
        stay until the next identity's (the last ones until the actor ends)."""
        shutil.rmtree(os.path.join(self.server.work_dir, f"identity-{self._n}"),
                      ignore_errors=True)
        self._n += 1
        d = os.path.join(self.server.work_dir, f"identity-{self._n}")
        os.makedirs(d, exist_ok=True)
        mesh = write_obj(os.path.join(d, "mesh.obj"), neutral, self.model.template.faces)
        ref = os.path.join(d, "image.png")
        Image.fromarray(masked_reference(image, depth)).save(ref)
        result, _ = self.server.call({"mesh": str(mesh), "image": ref,
                                      "output": os.path.join(d, "textured_mesh.obj")})
        try:
            obj = read_obj(result["path"])
            if obj.corner_uv is None or obj.texture is None:
                raise ValueError(f"{result['path']} has no UVs or no map_Kd texture")
            albedo = np.asarray(Image.open(obj.texture).convert("RGB"))
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"texturing.backend 'hunyuan3d' returned no usable textured mesh "
                             f"({e})") from None
        return obj, albedo

    def __call__(self, batch: dict) -> dict:
        t = self.model.template
        tex, vcol = [], []
        for i in range(len(batch["identity"])):
            neutral = np.asarray(batch["vertices"][i, 0], np.float64)
            obj, albedo = self.paint(neutral, batch["neutral_image"][i], batch["frontal_depth"][i])
            if t.corner_uv is not None:
                tex.append(self._bake_uv(neutral, obj, albedo))
            else:
                cols, _ = surface_colors(obj, albedo, neutral)
                vcol.append(np.clip(cols, 0, 255).astype(np.uint8))
        return set_albedo(batch, tex, vcol)


    def _bake_uv(self, neutral, obj, albedo):
        """Hunyuan3D's albedo in the face model's own UVs (texels off the atlas take the
        nearest texel's colour, so filtering shows no seam)."""
        attrs, covered = get_renderer().bake_uv(self.model.mesh(neutral), neutral, self.size)
        pts = attrs[..., :3][covered].astype(np.float64)
        cols, dist = surface_colors(obj, albedo, pts)
        diag = np.linalg.norm(neutral.max(0) - neutral.min(0))
        if np.median(dist) > 1e-3 * diag:
            raise ValueError("texturing.backend 'hunyuan3d' returned a mesh that is not the one "
                             f"it was given (median distance {np.median(dist):.2g} m): was it "
                             "remeshed?")
        out = np.zeros((self.size, self.size, 3), np.float32)
        out[covered] = cols
        idx = ndimage.distance_transform_edt(~covered, return_distances=False, return_indices=True)
        return np.clip(out[idx[0], idx[1]], 0, 255).astype(np.uint8)
