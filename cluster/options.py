"""Config arguments shared by the commands: --config, --seed and key=value overrides."""
from __future__ import annotations

import argparse

from cluster.config import load_config


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="local",
                   help="preset name (configs/<name>.yaml) or a YAML file (default: local)")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. render.size=512 face.texture_size=512")


def config_of(args, flags: list[str] = (), layers: list[str] = ()):
    """The command's typed config: preset, layers, flag overrides, then key=value ones."""
    overrides = list(flags) + list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return load_config(args.config, overrides, layers=layers)
