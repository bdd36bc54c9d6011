"""Config validation: every numeric key against its documented range, plus the checks that
span several keys. Errors are one sentence naming the key (``ConfigError``).

``RANGES`` is the documentation: the README's "Config ranges" table is this table. Keys use
``*`` for a stage name, ``[]`` for a list element and ``{}`` for a mapping's value.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing


class ConfigError(ValueError):
    """A config problem the user can fix; the message says which key and how."""


MAX_IDENTITIES = 100_000  # per run: 40x the paper's 2,500; larger runs go in several --start chunks
MAX_INDEX = 10 ** 9  # identity indices (seed streams are keyed by them)

RANGES: dict[str, tuple[float, float]] = {
    "seed": (0, 2 ** 32 - 1),
    "face.flame_n_shape": (1, 300),
    "face.texture_size": (64, 8192),
    "face.shape_std": (0, 3),
    "render.size": (16, 4096),
    "render.yaws[]": (-90, 90),
    "render.camera.yaw_deg": (-90, 90),
    "render.camera.pitch_deg": (-60, 60),
    "render.camera.distance": (0.2, 5),
    "render.camera.fov_deg": (5, 120),
    "render.camera.target[]": (-0.5, 0.5),
    "render.camera.near": (0.001, 1),
    "render.camera.far": (0.5, 100),
    "render.camera.roll_deg": (-45, 45),
    "render.lighting.key_dir[]": (-1, 1),
    "render.lighting.key_color[]": (0, 1),
    "render.lighting.fill_dir[]": (-1, 1),
    "render.lighting.key": (0, 2),
    "render.lighting.fill": (0, 2),
    "render.lighting.ambient": (0, 2),
    "render.background[]": (0, 255),
    "render.vary.light_azimuth_deg[]": (-90, 90),
    "render.vary.light_elevation_deg[]": (-30, 80),
    "render.vary.light_intensity[]": (0.1, 3),
    "render.vary.light_temperature_k[]": (1500, 15000),
    "render.vary.camera_distance[]": (0.5, 2),
    "render.vary.camera_pitch_deg[]": (-30, 30),
    "render.vary.camera_roll_deg[]": (-30, 30),
    "heatmap.scale_m": (1e-4, 0.1),
    "pspi.levels[]": (1, 16),
    "pspi.weights{}": (0, 1e6),
    "pspi.extra_probability": (0, 1),
    "demographics.table{}{}": (0, 10 ** 7),
    "generate.identities": (1, MAX_IDENTITIES),
    "generate.start": (0, MAX_INDEX),
    "generate.stages.*.num_gpus": (0, 64),
    "generate.stages.*.num_cpus": (0, 256),
    "generate.stages.*.batch_size": (1, 1024),
    "generate.stages.*.concurrency[]": (1, 10_000),
    "generate.stages.*.max_concurrency": (1, 10_000),
    "generate.qa.check_from": (0, 5),
    "generate.png_level": (0, 9),
    "generate.qa.min_measure{}": (0, 1),
    "generate.ray.num_cpus": (1, 4096),
    "generate.ray.num_gpus": (0, 1024),
    "generate.ray.object_store_memory": (80_000_000, 10 ** 13),
    "generate.ray.connect_timeout_s": (1, 3600),
    "train.model.img_size": (16, 1024),
    "train.model.head_hidden": (1, 16384),
    "train.model.dropout": (0, 0.99),
    "train.model.fusion_hidden": (1, 16384),
    "train.model.params_dim": (0, 100_000),
    "train.model.lora.rank": (0, 1024),
    "train.model.lora.alpha": (0.001, 10_000),
    "train.model.lora.dropout": (0, 0.99),
    "train.model.lora.base_seed": (0, 2 ** 32 - 1),
    "train.weights.pspi": (0, 1000),
    "train.weights.au": (0, 1000),
    "train.weights.pspi_distill": (0, 1000),
    "train.weights.au_distill": (0, 1000),
    "train.weights.feature_distill": (0, 1000),
    "train.weights.temperature": (0.05, 100),
    "train.weights.pspi_reg": (0, 1000),
    "train.weights.binary": (0, 1000),
    "train.weights.heatmap_distill": (0, 1000),
    "train.weights.au_attention_distill": (0, 1000),
    "train.eval.neutral_shots": (1, 1000),
    "train.rig.hidden": (1, 16384),
    "train.rig.noise_dim": (1, 4096),
    "train.rig.latent_dim": (1, 4096),
    "train.rig.range_weight": (0, 10_000),
    "train.rig.recon_weight": (0, 10_000),
    "train.rig.soft_label_mean": (-5, 5),
    "train.rig.soft_label_std": (0, 5),
    "train.rig.iterations": (1, 10_000_000),
    "train.rig.eval_every": (1, 1_000_000),
    "train.rig.batch_size": (1, 65_536),
    "train.rig.lr": (1e-9, 1),
    "train.rig.diversity_samples": (2, 10_000),
    "train.encoder.head_hidden": (1, 16384),
    "train.encoder.expression": (0, 1000),
    "train.encoder.shape_weight": (0, 1000),
    "train.encoder.pspi_ce": (0, 1000),
    "train.encoder.intensity_mse": (0, 1000),
    "train.epochs": (1, 10_000),
    "train.freeze_backbone_epochs": (0, 10_000),
    "train.batch_size": (1, 65_536),
    "train.lr_backbone": (0, 1),
    "train.lr_heads": (1e-9, 1),
    "train.weight_decay": (0, 10),
    "train.min_lr_ratio": (1e-6, 1),
    "train.grad_clip": (1e-6, 1e6),
    "train.num_workers": (1, 1024),
    "train.cpus_per_worker": (0.01, 256),
    "train.decode_cpus": (0.01, 256),
    "train.split[]": (0, 1),
    "train.max_failures": (-1, 100),
    "train.num_to_keep": (1, 1000),
    "train.max_frames": (1, MAX_INDEX),
    "train.shuffle_buffer": (0, 1_000_000),
    "tune.space{}.low": (0, 1000),
    "tune.space{}.high": (0, 1000),
    "tune.samples": (1, 10_000),
    "tune.concurrent": (1, 1000),
    "tune.grace_epochs": (1, 10_000),
    "tune.reduction_factor": (2, 100),
    "tune.cpus_per_trial": (0.01, 64),
    "tune.final_seeds": (0, 100),
    "crossval.folds": (2, 1000),
    "crossval.val_fraction": (0, 0.9),
    "crossval.concurrent": (0, 1000),
    "crossval.cpus_per_trial": (0.01, 64),
}
# task stages (render, write) need some CPU; a model stage may run with none (GPU only)
RANGES["generate.stages.render.num_cpus"] = RANGES["generate.stages.write.num_cpus"] = (0.01, 256)


def range_key(key: str) -> str:
    """``generate.stages.texturing.batch_size`` -> ``generate.stages.*.batch_size`` unless
    the key has a range of its own."""
    parts = key.split(".")
    if key not in RANGES and len(parts) > 3 and parts[:2] == ["generate", "stages"]:
        return ".".join(parts[:2] + ["*"] + parts[3:])
    return key


def _check_number(key: str, value) -> None:
    lo, hi = RANGES[range_key(key)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value}")
    if not lo <= value <= hi:
        raise ConfigError(f"config key '{key}' must be between {_fmt(lo)} and {_fmt(hi)}, "
                          f"got {value!r}")


def _fmt(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _walk(value, key: str):
    """(key, number) for every numeric leaf of a config value."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _walk(getattr(value, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk(v, key + "{}")
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk(v, key + "[]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield key, value


def numeric_keys(cls, key: str = "") -> list[str]:
    """Every numeric key the config type declares (for the test that each has a range)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        k = f"{key}.{f.name}" if key else f.name
        tp = hints[f.name]
        inner = tp
        if typing.get_origin(tp) in (typing.Union, types.UnionType):  # Optional[X] -> X
            inner = next(a for a in typing.get_args(tp) if a is not type(None))
        if dataclasses.is_dataclass(inner):
            out += numeric_keys(inner, k)
        elif inner in (int, float):
            out.append(k)
        elif typing.get_origin(inner) in (tuple, list) and typing.get_args(inner)[0] in (int,
                                                                                       float):
            out.append(k + "[]")
    return out


def check_numbers(cfg) -> None:
    """Each numeric value finite and inside its documented range (skipping backend options,
    which each backend's typed options check (actors/options.py), and backbone arguments,
    which timm checks)."""
    for key, value in _walk(cfg, ""):
        if ".options" in key or "backbone_kwargs" in key:
            continue
        _check_number(key, value)


def validate(cfg) -> None:
    check_numbers(cfg)
    if cfg.face.model not in ("builtin", "flame"):
        raise ConfigError(f"unknown face.model {cfg.face.model!r}; use 'builtin' or 'flame'")
    if cfg.heatmap.mode not in ("magnitude", "direction"):
        raise ConfigError(f"unknown heatmap.mode {cfg.heatmap.mode!r}; "
                          "use 'magnitude' or 'direction'")
    _validate_render(cfg.render)
    _validate_pspi(cfg.pspi)
    _validate_demographics(cfg.demographics)
    _validate_generate(cfg)
    _validate_train(cfg)
    _validate_tune(cfg)


def _validate_render(r) -> None:
    if not r.yaws:
        raise ConfigError("render.yaws must list at least one view angle")
    c = r.camera
    if not c.near < c.distance < c.far:
        raise ConfigError(f"render.camera needs near < distance < far, got near {c.near}, "
                          f"distance {c.distance}, far {c.far}")
    for f in dataclasses.fields(r.vary):
        v = getattr(r.vary, f.name)
        if isinstance(v, tuple) and (len(v) != 2 or v[0] > v[1]):
            raise ConfigError(f"render.vary.{f.name} must be [low, high] with low <= high, "
                              f"got {list(v)}")
    for key in ("key_dir", "fill_dir"):
        if math.hypot(*getattr(r.lighting, key)) < 1e-3:
            raise ConfigError(f"render.lighting.{key} must be a non-zero direction, "
                              f"got {list(getattr(r.lighting, key))}")


def _validate_pspi(p) -> None:
    try:
        p.distribution()
    except ValueError as e:
        raise ConfigError(f"pspi: {e}") from e
    if p.weights is not None:
        bad = [k for k in p.weights if not 1 <= int(k) <= 16]
        if bad:
            raise ConfigError(f"pspi.weights has level {bad[0]}; levels are 1 to 16")
        if sum(p.weights.values()) <= 0:
            raise ConfigError("pspi.weights must give at least one level a positive weight")
    elif not p.levels:
        raise ConfigError("pspi.levels must list at least one PSPI level (1 to 16)")


def _validate_demographics(d) -> None:
    from faces.demographics import _CHOICES

    if d.mode not in ("balanced", "table"):
        raise ConfigError(f"unknown demographics.mode {d.mode!r}; use 'balanced' or 'table'")
    totals = {}
    for attr, counts in d.table.items():
        if attr not in _CHOICES:
            raise ConfigError(f"unknown demographics.table.{attr}; the table has "
                              f"{', '.join(_CHOICES)}")
        for label in counts:
            if label not in _CHOICES[attr]:
                raise ConfigError(f"unknown demographics.table.{attr}.{label}; choose from "
                                  f"{', '.join(_CHOICES[attr])}")
        totals[attr] = sum(counts.values())
    if set(totals) != set(_CHOICES) or len(set(totals.values())) != 1 or not max(totals.values()):
        shown = ", ".join(f"{a} {totals.get(a, 0)}" for a in _CHOICES)
        raise ConfigError(f"demographics.table totals must agree and be positive, got {shown}; "
                          "give every attribute the same number of identities")


def _validate_generate(cfg) -> None:
    from actors.base import backend_names

    g = cfg.generate
    if g.start + g.identities > MAX_INDEX:
        raise ConfigError(f"generate.start + generate.identities must be <= {MAX_INDEX}, got "
                          f"{g.start + g.identities}")
    from pipelines.tasks import CODECS

    if g.codec not in CODECS:
        raise ConfigError(f"unknown generate.codec {g.codec!r}; use one of {', '.join(CODECS)}")
    for name in g.stages.MODEL_STAGES:
        sc = getattr(g.stages, name)
        key = f"generate.stages.{name}"
        if sc.backend not in backend_names(name):
            raise ConfigError(f"unknown {key}.backend {sc.backend!r}; choose from "
                              f"{backend_names(name)}")
        from actors.base import options_of
        from actors.options import OptionsError

        try:
            options_of(name, sc)
        except OptionsError as e:
            raise ConfigError(str(e)) from None
        if len(sc.concurrency) != 2 or not sc.concurrency[0] <= sc.concurrency[1]:
            raise ConfigError(f"{key}.concurrency must be [min, max] with 1 <= min <= max, "
                              f"got {list(sc.concurrency)}")


def _validate_train(cfg) -> None:
    t = cfg.train
    if len(t.split) != 3 or abs(sum(t.split) - 1) > 1e-6:
        raise ConfigError(f"train.split must be three fractions summing to 1, got {list(t.split)}")
    if t.freeze_backbone_epochs > t.epochs:
        raise ConfigError(f"train.freeze_backbone_epochs ({t.freeze_backbone_epochs}) must be "
                          f"<= train.epochs ({t.epochs})")
    from train.config import CLASS_WEIGHTS

    if t.class_weights not in CLASS_WEIGHTS:
        raise ConfigError(f"unknown train.class_weights {t.class_weights!r}; use one of "
                          f"{', '.join(CLASS_WEIGHTS)}")
    from train.config import AUGMENT_STYLES, DISTILL_PROJECTIONS, SAMPLING, STUDENT_INITS
    from train.heads import HEADS

    if t.sampling not in SAMPLING:
        raise ConfigError(f"unknown train.sampling {t.sampling!r}; use one of "
                          f"{', '.join(SAMPLING)}")
    if t.augment_style not in AUGMENT_STYLES:
        raise ConfigError(f"unknown train.augment_style {t.augment_style!r}; use one of "
                          f"{', '.join(AUGMENT_STYLES)}")
    _one_of("train.student_init", t.student_init, STUDENT_INITS)
    _one_of("train.distill_projection", t.distill_projection, DISTILL_PROJECTIONS)
    if t.model.local_tokens and "vit" in t.model.backbone:
        raise ConfigError("train.model.local_tokens reads a convolutional backbone's stride-8 "
                          f"map; {t.model.backbone} is a ViT (its patches are the tokens "
                          "already): turn local_tokens off or use a ResNet backbone")
    if t.model.head not in HEADS:
        raise ConfigError(f"unknown train.model.head {t.model.head!r}; use one of "
                          f"{', '.join(HEADS)}")
    _validate_fusion(t.model)
    from train.config import RIG_MODELS

    if t.rig.model not in RIG_MODELS:
        raise ConfigError(f"unknown train.rig.model {t.rig.model!r}; use one of "
                          f"{', '.join(RIG_MODELS)}")
    if t.model.shared_encoder and not t.model.neutral_reference:
        raise ConfigError("train.model.shared_encoder is set but train.model.neutral_reference "
                          "is off; turn the neutral reference on or leave shared_encoder false")


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {key} {value!r}; use one of {', '.join(allowed)}")


def _validate_fusion(m) -> None:
    from train.config import FUSION_PARAMS, FUSIONS

    if m.fusion not in FUSIONS:
        raise ConfigError(f"unknown train.model.fusion {m.fusion!r}; use one of "
                          f"{', '.join(FUSIONS)}")
    if m.fusion_params not in FUSION_PARAMS:
        raise ConfigError(f"unknown train.model.fusion_params {m.fusion_params!r}; use one of "
                          f"{', '.join(FUSION_PARAMS)}")
    if m.late_fusion and not m.classifies:
        raise ConfigError(f"train.model.fusion {m.fusion} combines class probabilities but "
                          f"train.model.head is {m.head}; use head classification or both, or "
                          "fusion intermediate")
    if m.fusion != "none" and m.fusion_params == "encoder" and not m.fusion_encoder:
        raise ConfigError("train.model.fusion_params is encoder but train.model.fusion_encoder "
                          "is not set; set it to a pain3d train encoder checkpoint")


def _validate_tune(cfg) -> None:
    from tune.config import DISTRIBUTIONS

    known = [f.name for f in dataclasses.fields(type(cfg.train.weights))]
    for name, r in cfg.tune.space.items():
        key = f"tune.space.{name}"
        if name not in known:
            raise ConfigError(f"unknown {key}; the space is over train.weights: "
                              f"{', '.join(known)}")
        if r.dist not in DISTRIBUTIONS:
            raise ConfigError(f"{key}.dist must be one of {', '.join(DISTRIBUTIONS)}, "
                              f"got {r.dist!r}")
        if not (r.low < r.high) or (r.dist == "loguniform" and r.low <= 0):
            raise ConfigError(f"{key} needs low < high (and low > 0 for loguniform), "
                              f"got [{r.low}, {r.high}]")
