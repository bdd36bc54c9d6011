"""The one typed config object: YAML presets + ``key=value`` overrides -> dataclasses.

Each section is the dataclass of the package that consumes it, so every stage receives its
own typed slice of the same object. Unknown keys and wrong types fail with one sentence
naming the key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cluster.validate import ConfigError, validate  # noqa: F401 - ConfigError re-exported
from faces.au import PSPIConfig
from faces.demographics import DemographicsConfig
from faces.identity import HeatmapConfig
from faces.models import FaceConfig
from faces.render import RenderConfig
from pipelines.config import GenerateConfig
from train.config import CrossvalConfig, TrainConfig
from tune.config import TuneConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
PRESET_DIR = REPO_ROOT / "configs"


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
    crossval: CrossvalConfig = field(default_factory=CrossvalConfig)

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
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string; a person means the number
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, float) and not math.isfinite(value) and tp in (int, float):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value}")
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
    for f in dataclasses.fields(cls):
        dflt = getattr(default, f.name)
        if isinstance(kwargs.get(f.name), dict) and isinstance(dflt, dict) and dflt:
            # a partial mapping (one row of demographics.table) keeps the other rows
            kwargs[f.name] = {**dflt, **kwargs[f.name]}
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
    """A bare preset name is the preset, whatever lies in the working folder (the demo's
    default output is a folder called demo); anything else is a path."""
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if "/" not in name_or_path and Path(name_or_path).suffix == "" and preset.is_file():
        return preset
    p = Path(name_or_path)
    if p.is_dir():
        raise ConfigError(f"--config {p} is a folder; give a YAML file or a preset name "
                          f"({', '.join(preset_names())})")
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; presets: {preset_names()}")
        return p
    raise ConfigError(f"unknown preset {name_or_path!r}; presets: {preset_names()}")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of settings, not data
MAX_CONFIG_VALUES = 100_000  # values after YAML anchors/aliases are expanded


def check_expansion(data, where: str) -> None:
    """Refuses a YAML document whose aliases expand it past MAX_CONFIG_VALUES values (a
    "billion laughs"), anywhere in it; walks at most that many values (no recursion)."""
    todo, n = [data], 0
    while todo:
        x = todo.pop()
        n += 1
        if n > MAX_CONFIG_VALUES:
            raise ConfigError(f"{where} expands to more than {MAX_CONFIG_VALUES:,} values "
                              "(YAML anchors and aliases nested in each other?); write the "
                              "settings out plainly")
        if isinstance(x, dict):
            todo.extend(x.keys())
            todo.extend(x.values())
        elif isinstance(x, (list, tuple)):
            todo.extend(x)


def _read_yaml(name_or_path: str) -> dict:
    p = resolve_preset(name_or_path)
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {p} is {p.stat().st_size:,} bytes, over the "
                          f"{MAX_CONFIG_BYTES:,} a config may have; is it the right file?")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {p} is not valid YAML ({where}{what})") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not a text file ({e.reason})") from e
    if data is None:
        raise ConfigError(f"config file {p} is empty; give at least one section (see "
                          "configs/local.yaml) or use a preset")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections")
    check_expansion(data, f"config file {p}")
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
        try:
            value = yaml.safe_load(v)
        except yaml.YAMLError as e:
            what = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({what})") from e
        check_expansion(value, f"override {k.strip()}")
        _set_dotted(data, k.strip(), value)
    cfg = _build(Pain3DConfig, data)
    validate(cfg)
    _absolute_paths(cfg)
    return cfg


def config_from_dict(data: dict) -> Pain3DConfig:
    """A config saved with ``to_dict()`` (e.g. in a run or sweep folder), validated."""
    cfg = _build(Pain3DConfig, data)
    validate(cfg)
    return cfg


def absolute_path(p: str | None) -> str | None:
    """An existing local path made absolute (Ray workers and Tune trials run in other
    working directories); anything else (None, s3://, not there) as it is."""
    return str(Path(p).expanduser().resolve()) if p and Path(p).expanduser().exists() else p


def _absolute_paths(cfg: Pain3DConfig) -> None:
    """Relative local paths are resolved here, in the driver: Ray workers run elsewhere."""
    fix = absolute_path
    for sec in (cfg.train, cfg.tune):  # run and sweep folders: Ray workers' cwd is not ours
        if "://" not in sec.storage:
            sec.storage = str(Path(sec.storage).expanduser().resolve())
    from faces.models import FLAME_FILES

    for key in FLAME_FILES:
        setattr(cfg.face, key, fix(getattr(cfg.face, key)))
    m = cfg.train.model  # recorded in run folders, read from other working directories
    m.pretrained_file, m.fusion_encoder = fix(m.pretrained_file), fix(m.fusion_encoder)
    for name in cfg.generate.stages.MODEL_STAGES:
        sc = getattr(cfg.generate.stages, name)
        sc.model = fix(sc.model)
        if isinstance(sc.options.get("prior"), str):
            sc.options["prior"] = fix(sc.options["prior"])
