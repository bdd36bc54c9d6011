"""Commands about models and the files they need: `check`, `make-tiny-diffusion`,
`make-test-flame`."""
from __future__ import annotations

import argparse

from cluster.options import add_config_args, config_of


def cmd_check(args) -> int:
    from pipelines.check import check_config, format_items

    items = check_config(config_of(args))
    print(format_items(items))
    return 1 if any(i.bad for i in items) else 0


def cmd_make_tiny_diffusion(args) -> int:
    from actors.tiny_diffusion import make_tiny_kandinsky

    paths = make_tiny_kandinsky(args.out)
    print("wrote tiny random-initialised Kandinsky 2.2 pipelines: "
          + ", ".join(f"{k}={v}" for k, v in paths.items()))
    return 0


def cmd_make_test_flame(args) -> int:
    from faces import flame_testmodel

    paths = flame_testmodel.write(args.out)
    print("wrote the FLAME-format test model (built from the built-in head): "
          + ", ".join(str(p) for p in paths))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("check", help="list every file, weight folder, module and GPU the config "
                       "needs (found / missing / wrong-format) before any GPU time is spent")
    add_config_args(c)
    c.set_defaults(func=cmd_check)
    t = sub.add_parser("make-tiny-diffusion",
                       help="write tiny random Kandinsky 2.2 pipelines (for tiny-diffusion.yaml)")
    t.add_argument("out", nargs="?", default="models/tiny-kandinsky")
    t.set_defaults(func=cmd_make_tiny_diffusion)
    f = sub.add_parser("make-test-flame", help="write the FLAME-format test model (real FLAME "
                       "dimensions, the built-in head's shape) with its texture space and "
                       "landmark embedding")
    f.add_argument("out", nargs="?", default="models/test-flame")
    f.set_defaults(func=cmd_make_test_flame)
