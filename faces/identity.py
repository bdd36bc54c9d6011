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
from faces.render import RenderConfig, Renderer


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
    return identity_appearance(model, spec.seed, spec.identity, spec.demographics)


def identity_appearance(model: FaceModel, seed: int, identity: int,
                        demo: Demographics) -> Appearance:
    """The identity's albedo (the built-in head's with its dressing's brows and scalp hair)."""
    from faces.dressing import sample_dressing

    dressing = sample_dressing(seed, identity, demo) if model.name == "builtin" else None
    return model.appearance(demo, identity_rng(seed, identity, "texture"), dressing)


@dataclass
class ViewRender:
    yaw: float
    rgb: np.ndarray  # with the scene's backdrop (as the built-in inpainting stage composes it)
    mask: np.ndarray
    head_box: tuple[int, int, int, int]
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
    """Rig, render every view in the identity's scene (faces/photo.py, as the pipeline does),
    and for pain expressions render the displacement heatmap."""
    from faces.backdrop import backdrop, view_window
    from faces.photo import identity_setup, render_views

    hcfg = hcfg or HeatmapConfig()
    aus = spec.configs[expression] if aus is None else aus
    neutral = model.neutral(spec.shape) if neutral is None else neutral
    verts = model.posed(spec.shape, aus)
    heat_cols = None
    if expression != 0:
        disp = displacement(neutral, verts, model.template.faces)
        heat_cols = heat_colors(disp, hcfg.mode, hcfg.scale_m, hcfg.cmap)
    out = ExpressionRender(expression, dict(aus), int(round(pspi(aus))), verts,
                           model.expression_params(aus))
    setup = identity_setup(model, spec.seed, spec.identity, spec.demographics, neutral,
                           appearance.texture, rcfg)
    wide = backdrop(setup.scene, rcfg.size)
    for o in render_views(renderer, model, setup, verts, appearance.texture,
                          appearance.vertex_colors, rcfg, heat_cols):
        back = view_window(wide, o["yaw"])
        rgb = np.where(o["mask"][..., None], o["rgb"], (back * 255).astype(np.uint8))
        out.views.append(ViewRender(o["yaw"], rgb, o["mask"], o["head_box"], o.get("heatmap")))
    return out
