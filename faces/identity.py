"""One identity end to end without Ray: demographics, shape, appearance, expressions, renders.

Everything about identity i is drawn from random streams keyed by (seed, i), so an
identity regenerates identically whether it is made alone or inside a large run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faces.au import PSPIConfig, identity_plan, pspi
from faces.demographics import Demographics, DemographicsConfig, identity_rng, make_prompt, \
    sample_demographics
from faces.heatmap import DEFAULT_SCALE_M, displacement, heat_colors
from faces.models import Appearance, FaceModel
from faces.render import Camera, RenderConfig, Renderer


@dataclass
class HeatmapConfig:
    mode: str = "magnitude"  # magnitude | direction
    scale_m: float = DEFAULT_SCALE_M
    cmap: str | None = None


@dataclass
class IdentitySpec:
    identity: int
    seed: int
    demographics: Demographics
    prompt: str
    shape: np.ndarray
    configs: list[dict[str, float]]  # [0] neutral, then the pain expressions

    @property
    def pspi(self) -> list[int]:
        return [int(round(pspi(c))) for c in self.configs]


def make_identity(identity: int, seed: int, model: FaceModel,
                  demo_cfg: DemographicsConfig | None = None,
                  pspi_cfg: PSPIConfig | None = None) -> IdentitySpec:
    if identity < 0:
        raise ValueError(f"identity index must be >= 0, got {identity}")
    demo = sample_demographics(identity, seed, demo_cfg)
    prompt = make_prompt(demo, identity_rng(seed, identity, "prompt"))
    shape = model.sample_shape(demo, identity_rng(seed, identity, "shape"))
    plan = identity_plan(identity, seed, pspi_cfg)
    return IdentitySpec(identity, seed, demo, prompt, shape, plan.configs)


def make_appearance(spec: IdentitySpec, model: FaceModel) -> Appearance:
    return model.appearance(spec.demographics, identity_rng(spec.seed, spec.identity, "texture"))


@dataclass
class ViewRender:
    yaw: float
    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    heatmap: np.ndarray | None = None


@dataclass
class ExpressionRender:
    expression: int
    aus: dict[str, float]
    pspi: int
    vertices: np.ndarray
    expression_params: np.ndarray
    views: list[ViewRender] = field(default_factory=list)


def render_expression(model: FaceModel, spec: IdentitySpec, expression: int,
                      appearance: Appearance, renderer: Renderer, rcfg: RenderConfig,
                      hcfg: HeatmapConfig | None = None, aus: dict[str, float] | None = None,
                      neutral: np.ndarray | None = None) -> ExpressionRender:
    """Rig, render every view, and for pain expressions render the displacement heatmap."""
    hcfg = hcfg or HeatmapConfig()
    aus = spec.configs[expression] if aus is None else aus
    neutral = model.neutral(spec.shape) if neutral is None else neutral
    verts = model.posed(spec.shape, aus)
    mesh = model.mesh(verts)
    heat_cols = None
    if expression != 0:
        disp = displacement(neutral, verts, mesh.faces)
        heat_cols = heat_colors(disp, hcfg.mode, hcfg.scale_m, hcfg.cmap)
    out = ExpressionRender(expression, dict(aus), int(round(pspi(aus))), verts,
                           model.expression_params(aus))
    for yaw in rcfg.yaws:
        cam = _camera(rcfg, model, yaw)
        r = renderer.render(mesh, cam, rcfg.size, texture=appearance.texture,
                            vertex_colors=appearance.vertex_colors, lighting=rcfg.lighting,
                            outputs=("rgb", "depth", "mask"), background=rcfg.background)
        heat = None
        if heat_cols is not None:
            heat = renderer.render(mesh, cam, rcfg.size, vertex_colors=heat_cols,
                                   outputs=("vcolor",))["vcolor"]
        out.views.append(ViewRender(float(yaw), r["rgb"], r["depth"], r["mask"], heat))
    return out


def _camera(rcfg: RenderConfig, model: FaceModel, yaw: float) -> Camera:
    c = rcfg.camera
    return Camera(yaw_deg=float(yaw), pitch_deg=c.pitch_deg, distance=c.distance, fov_deg=c.fov_deg,
                  target=tuple(model.camera_target), near=c.near, far=c.far)
