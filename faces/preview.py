"""Labelled contact sheet: for each identity, neutral and low/mid/high pain frontal, the
three views at high pain, and the high-pain heatmap, with AUs and PSPI written under each."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from faces.au import PSPI_AUS, PSPIConfig, sample_config
from faces.demographics import DemographicsConfig, identity_rng
from faces.identity import HeatmapConfig, make_appearance, make_identity, render_expression
from faces.models import FaceModel
from faces.render import RenderConfig, get_renderer

PREVIEW_LEVELS = {"low": 3, "mid": 8, "high": 14}
SOFTWARE = "pain3d preview"  # the PNG's Software text: how a later preview knows its own file


def is_preview(path: str | Path) -> bool:
    """True when ``path`` is a contact sheet this module wrote (so it may be replaced)."""
    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.text.get("Software") == SOFTWARE
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _au_text(aus: dict[str, float]) -> str:
    on = [f"{k[2:]}:{int(v)}" for k, v in aus.items() if k in PSPI_AUS and v > 0]
    return " ".join(on) if on else "no AUs"


def contact_sheet(model: FaceModel, identities: list[int], seed: int, out: str | Path,
                  rcfg: RenderConfig | None = None, hcfg: HeatmapConfig | None = None,
                  demo_cfg: DemographicsConfig | None = None, pspi_cfg: PSPIConfig | None = None,
                  progress=None) -> Path:
    rcfg = rcfg or RenderConfig()
    renderer = get_renderer()
    tile = rcfg.size
    label_h = max(30, tile // 7)
    head_h = max(22, tile // 10)
    cols = ["neutral", "low", "mid", "high", "view", "view", "view", "heatmap"]
    rows = []
    f_small, f_big = _font(max(11, tile // 18)), _font(max(13, tile // 14))
    for i in identities:
        spec = make_identity(i, seed, model, demo_cfg, pspi_cfg)
        app = make_appearance(spec, model)
        neutral = model.neutral(spec.shape)
        rng = identity_rng(seed, i, "preview")
        confs = {"neutral": {k: 0.0 for k in PSPI_AUS}}
        confs.update({name: sample_config(level, rng) for name, level in PREVIEW_LEVELS.items()})
        renders = {name: render_expression(model, spec, 0 if name == "neutral" else 1, app,
                                           renderer, rcfg, hcfg, aus=c, neutral=neutral)
                   for name, c in confs.items()}
        front = int(np.argmin(np.abs(np.asarray(rcfg.yaws, float))))
        tiles, labels = [], []
        for name in ("neutral", "low", "mid", "high"):
            r = renders[name]
            tiles.append(r.views[front].rgb)
            labels.append((f"{name}  PSPI {r.pspi}", _au_text(r.aus)))
        hi = renders["high"]
        for v in hi.views[:3]:
            tiles.append(v.rgb)
            labels.append((f"yaw {v.yaw:+.0f}", f"PSPI {hi.pspi}"))
        while len(tiles) < 7:
            tiles.append(np.zeros_like(tiles[0]))
            labels.append(("", ""))
        tiles.append(hi.views[front].heatmap)
        labels.append(("heatmap (high)", "|displacement|"))
        row = Image.new("RGB", (tile * len(cols), head_h + tile + label_h), (245, 245, 245))
        d = ImageDraw.Draw(row)
        demo = spec.demographics
        d.text((6, 3), f"identity {i}: {demo.age_group} {demo.ethnicity} {demo.gender}",
               fill=(20, 20, 20), font=f_big)
        for k, (img, (l1, l2)) in enumerate(zip(tiles, labels)):
            row.paste(Image.fromarray(img), (k * tile, head_h))
            d.text((k * tile + 4, head_h + tile + 2), l1, fill=(20, 20, 20), font=f_small)
            d.text((k * tile + 4, head_h + tile + 2 + label_h // 2), l2, fill=(60, 60, 60),
                   font=f_small)
        rows.append(row)
        if progress:
            progress(1)
    sheet = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", SOFTWARE)
    sheet.save(tmp, format="PNG", pnginfo=info)
    tmp.replace(out)  # never leave a half-written picture under the real name
    return out
