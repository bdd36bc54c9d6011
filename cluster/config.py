"""The one typed config object: YAML presets + ``key=value`` overrides -> dataclasses.

Each section is the dataclass of the package that consumes it, so every stage receives its
own typed slice of the same object. Unknown keys and wrong types fail with one sentence
naming the key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from faces.au import PSPIConfig
from faces.demographics import DemographicsConfig
from faces.identity import HeatmapConfig
from faces.models import FaceConfig
from faces.render import RenderConfig
from pipelines.config import GenerateConfig
from train.config import TrainConfig
from tune.config import DISTRIBUTIONS, TuneConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
PRESET_DIR = REPO_ROOT / "configs"


class ConfigError(ValueError):
    """A config problem the user can fix; the message says which key and how."""


@dataclass
class Pain3DConfig:
    seed: int = 0
    face: FaceConfig = field(default_factory=FaceConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    heatmap: HeatmapConfig = field(default_factory=HeatmapConfig)
    pspi: PSPIConfig = field(default_factory=PSPIConfig)
    demographics: DemographicsConfig = field(default_factory=DemographicsConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _coerce(value, tp, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key '{key}' has a bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        inner = args[0] if args else typing.Any
        return tuple(_coerce(v, inner, f"{key}[]") for v in value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return [_coerce(v, args[0] if args else typing.Any, f"{key}[]") for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        kt, vt = args if args else (typing.Any, typing.Any)
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is typing.Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    return value


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"'{prefix}.{unknown[0]}'" if prefix else f"'{unknown[0]}'"
        raise ConfigError(f"unknown config key {where}; "
                          f"known keys{' under ' + repr(prefix) if prefix else ''}: "
                          f"{', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            key = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], key)
    default = cls()
    for f in dataclasses.fields(cls):  # merge nested sections over their defaults
        if f.name in kwargs and dataclasses.is_dataclass(kwargs[f.name]):
            base = dataclasses.asdict(getattr(default, f.name))
            base.update(_nonempty(data[f.name]))
            key = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _build(hints[f.name], base, key)
    return cls(**kwargs)


def _nonempty(d):
    return d if isinstance(d, dict) else {}


def _set_dotted(d: dict, dotted: str, value):
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        if not isinstance(cur.get(p, {}), dict):
            raise ConfigError(f"config override '{dotted}': '{p}' is not a section")
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def resolve_preset(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; presets: {preset_names()}")
        return p
    cand = PRESET_DIR / f"{name_or_path}.yaml"
    if not cand.is_file():
        raise ConfigError(f"unknown preset {name_or_path!r}; presets: {preset_names()}")
    return cand


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_yaml(name_or_path: str) -> dict:
    p = resolve_preset(name_or_path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections")
    return data


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                layers: list[str] | tuple[str, ...] = ()) -> Pain3DConfig:
    """``path`` (a preset or YAML), then each of ``layers`` merged over it (e.g. a sweep
    file), then the ``key=value`` overrides."""
    data: dict = _read_yaml(path) if path else {}
    for layer in layers:
        data = _merge(data, _read_yaml(layer))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        k, v = item.split("=", 1)
        _set_dotted(data, k.strip(), yaml.safe_load(v))
    cfg = _build(Pain3DConfig, data)
    validate(cfg)
    _absolute_paths(cfg)
    return cfg


def config_from_dict(data: dict) -> Pain3DConfig:
    """A config saved with ``to_dict()`` (e.g. in a run or sweep folder), validated."""
    cfg = _build(Pain3DConfig, data)
    validate(cfg)
    return cfg


def _absolute_paths(cfg: Pain3DConfig) -> None:
    """Relative local paths are resolved here, in the driver: Ray workers run elsewhere."""
    def fix(p):
        return str(Path(p).expanduser().resolve()) if p and Path(p).expanduser().exists() else p

    for sec in (cfg.train, cfg.tune):  # run and sweep folders: Ray workers' cwd is not ours
        if "://" not in sec.storage:
            sec.storage = str(Path(sec.storage).expanduser().resolve())
    cfg.face.flame_path = fix(cfg.face.flame_path)
    cfg.face.au_basis_path = fix(cfg.face.au_basis_path)
    for name in cfg.generate.stages.MODEL_STAGES:
        sc = getattr(cfg.generate.stages, name)
        sc.model = fix(sc.model)
        if isinstance(sc.options.get("prior"), str):
            sc.options["prior"] = fix(sc.options["prior"])


def validate(cfg: Pain3DConfig) -> None:
    if cfg.seed < 0:
        raise ConfigError(f"seed must be >= 0, got {cfg.seed}")
    if not 16 <= cfg.render.size <= 4096:
        raise ConfigError(f"render.size must be between 16 and 4096, got {cfg.render.size}")
    if not cfg.render.yaws:
        raise ConfigError("render.yaws must list at least one view angle")
    if cfg.face.texture_size < 64:
        raise ConfigError(f"face.texture_size must be >= 64, got {cfg.face.texture_size}")
    if cfg.face.model not in ("builtin", "flame"):
        raise ConfigError(f"unknown face.model {cfg.face.model!r}; use 'builtin' or 'flame'")
    if cfg.heatmap.mode not in ("magnitude", "direction"):
        raise ConfigError(f"unknown heatmap.mode {cfg.heatmap.mode!r}; "
                          "use 'magnitude' or 'direction'")
    if cfg.demographics.mode not in ("balanced", "table"):
        raise ConfigError(f"unknown demographics.mode {cfg.demographics.mode!r}; "
                          "use 'balanced' or 'table'")
    try:
        cfg.pspi.distribution()
    except ValueError as e:
        raise ConfigError(f"pspi: {e}") from e
    _validate_generate(cfg)
    _validate_train(cfg)
    _validate_tune(cfg)


def _validate_tune(cfg: Pain3DConfig) -> None:
    t = cfg.tune
    known = [f.name for f in dataclasses.fields(type(cfg.train.weights))]
    for name, r in t.space.items():
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
    for key, ok in (("samples", t.samples >= 1), ("concurrent", t.concurrent >= 1),
                    ("grace_epochs", t.grace_epochs >= 1),
                    ("reduction_factor", t.reduction_factor >= 2),
                    ("final_seeds", t.final_seeds >= 0), ("cpus_per_trial", t.cpus_per_trial > 0)):
        if not ok:
            raise ConfigError(f"tune.{key} is out of range ({getattr(t, key)!r}); "
                              "see configs/sweep.yaml")


def _validate_train(cfg: Pain3DConfig) -> None:
    t = cfg.train
    checks = [(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
              (t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}"),
              (t.num_workers >= 1, f"train.num_workers must be >= 1, got {t.num_workers}"),
              (t.lr_backbone >= 0 and t.lr_heads > 0, "train learning rates must be positive"),
              (0 < t.min_lr_ratio <= 1, "train.min_lr_ratio must be in (0, 1]"),
              (t.model.img_size >= 16, f"train.model.img_size must be >= 16, got {t.model.img_size}"),
              (t.weights.temperature > 0, "train.weights.temperature must be > 0"),
              (t.cpus_per_worker > 0 and t.decode_cpus > 0,
               "train.cpus_per_worker and train.decode_cpus must be > 0"),
              (len(t.split) == 3 and abs(sum(t.split) - 1) < 1e-6 and min(t.split) >= 0,
               f"train.split must be three fractions summing to 1, got {list(t.split)}")]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)

def _validate_generate(cfg: Pain3DConfig) -> None:
    from actors.base import backend_names

    g = cfg.generate
    if g.identities < 1:
        raise ConfigError(f"generate.identities must be >= 1, got {g.identities}")
    if g.start < 0:
        raise ConfigError(f"generate.start must be >= 0, got {g.start}")
    for name in g.stages.MODEL_STAGES:
        sc = getattr(g.stages, name)
        key = f"generate.stages.{name}"
        if sc.backend not in backend_names(name):
            raise ConfigError(f"unknown {key}.backend {sc.backend!r}; choose from "
                              f"{backend_names(name)}")
        if sc.num_gpus < 0 or sc.num_cpus < 0:
            raise ConfigError(f"{key}: num_gpus and num_cpus must be >= 0")
        if sc.batch_size < 1:
            raise ConfigError(f"{key}.batch_size must be >= 1, got {sc.batch_size}")
        if len(sc.concurrency) != 2 or not 1 <= sc.concurrency[0] <= sc.concurrency[1]:
            raise ConfigError(f"{key}.concurrency must be [min, max] with 1 <= min <= max, "
                              f"got {list(sc.concurrency)}")
    for name in ("render", "write"):
        tc = getattr(g.stages, name)
        if tc.num_cpus <= 0 or tc.batch_size < 1:
            raise ConfigError(f"generate.stages.{name}: num_cpus must be > 0 and batch_size >= 1")
