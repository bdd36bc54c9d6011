"""The one render loop: an identity's scene and dressing, then every (expression, view).

The pipeline's render stage and the preview both call :func:`render_views`, so a frame and its
heatmap are made the same way everywhere. Dressing (hair, lashes, body) is for the built-in
head, whose topology it knows; other face models are rendered bare, as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faces.dressing import Dressing, Static, build_static, extras, sample_dressing, skin_color
from faces.hair import lash_mesh
from faces.scene import Scene, camera_for, lighting_for, sample_scene


@dataclass
class Setup:
    """Everything about an identity's photos that is not the face's expression."""

    scene: Scene
    dressing: Dressing | None
    static: Static | None

    def columns(self) -> dict:
        d = self.dressing
        return {**self.scene.columns(), "hair_style": d.hair_style if d else "",
                "garment": d.garment if d else ""}


def identity_setup(model, seed: int, identity: int, demo, neutral: np.ndarray,
                   texture: np.ndarray | None, rcfg) -> Setup:
    scene = sample_scene(seed, identity, rcfg)
    if model.name != "builtin" or not rcfg.dress:
        return Setup(scene, None, None)
    dressing = sample_dressing(seed, identity, demo)
    skin = skin_color(texture) if texture is not None else np.array([0.8, 0.65, 0.55])
    return Setup(scene, dressing, build_static(neutral, dressing, skin))


def head_box(model, vertices: np.ndarray, camera, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixels of the head (skin and ears, no hair or body): what
    the training crop measures the face by."""
    idx = model.head_vertices()
    px = camera.project(np.asarray(vertices, np.float64)[idx], size)
    lo, hi = np.floor(px.min(0)), np.ceil(px.max(0))
    return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


def render_views(renderer, model, setup: Setup, vertices: np.ndarray, texture, vertex_colors,
                 rcfg, heat_colors: np.ndarray | None = None) -> list[dict]:
    """Every view of one expression: rgb, mask (all foreground), head_box, and the heatmap
    (occluded by hair and body like the face) when ``heat_colors`` are given."""
    mesh = model.mesh(vertices)
    mats = model.materials()
    parts = []
    if setup.static:
        parts = extras(setup.static, lash_mesh(vertices), setup.dressing,
                       heat=heat_colors is not None)
    outputs = ("rgb", "mask") if heat_colors is None else ("rgb", "vcolor", "mask")
    out = []
    for yaw in rcfg.yaws:
        cam = camera_for(rcfg, model.camera_target, yaw, setup.scene)
        # one pass: the photo, and the heatmap in the vcolor output (extras black there)
        o = renderer.render(mesh, cam, rcfg.size, texture=texture, vertex_colors=vertex_colors,
                            lighting=lighting_for(rcfg, cam, setup.scene), outputs=outputs,
                            materials=mats, extras=parts, vcolor=heat_colors)
        if heat_colors is not None:
            o["heatmap"] = o.pop("vcolor")
        o["head_box"] = head_box(model, vertices, cam, rcfg.size)
        o["yaw"] = float(yaw)
        out.append(o)
    return out
