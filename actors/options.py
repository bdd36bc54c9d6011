"""Typed ``options`` for every stage backend: a dataclass per backend, checked in one place.

A backend declares its options with ``@register(stage, name, options=SomeOptions)``; the
config's ``generate.stages.<stage>.options`` mapping is read into that dataclass by
:func:`parse_options`, which refuses an unknown key (naming the accepted ones), a value of
the wrong type and a value outside the field's ``range`` metadata, in one sentence each.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field


class OptionsError(ValueError):
    """A backend option the user can fix; the message names the key."""


def rng(lo: float, hi: float, default, **kw):
    """A dataclass field with an accepted range (inclusive)."""
    return field(default=default, metadata={"range": (lo, hi)}, **kw)


@dataclass(frozen=True)
class NoOptions:
    """Backends without options."""


def _type_ok(value, tp) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if isinstance(value, bool):
        return tp is bool
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


def _type_name(tp) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return " or ".join(names.get(a, getattr(a, "__name__", str(a))) for a in args)


def parse_options(cls, raw: dict | None, key: str, backend: str):
    """``raw`` (the config's mapping) as a ``cls`` instance, or one sentence naming the key."""
    raw = dict(raw or {})
    if dataclasses.is_dataclass(raw):  # already typed
        return raw
    fields = {f.name: f for f in dataclasses.fields(cls)}
    accepted = ", ".join(fields) or "none"
    for k in raw:
        if k not in fields:
            raise OptionsError(f"unknown {key}.{k} for backend '{backend}'; its options are: "
                               f"{accepted}")
    hints = typing.get_type_hints(cls)
    for k, v in raw.items():
        tp = hints[k]
        if not _type_ok(v, tp):
            raise OptionsError(f"{key}.{k} must be {_type_name(tp)}, got {v!r}")
        lo_hi = fields[k].metadata.get("range")
        if lo_hi and v is not None:
            lo, hi = lo_hi
            if (isinstance(v, float) and not math.isfinite(v)) or not lo <= v <= hi:
                raise OptionsError(f"{key}.{k} must be between {lo:g} and {hi:g}, got {v!r}")
    try:
        return cls(**raw)
    except ValueError as e:  # the dataclass's own cross-field checks
        raise OptionsError(f"{key}.{e}") from None


def describe(cls) -> list[tuple[str, str, object]]:
    """(name, type, default) of each option, for the README and `pain3d check`."""
    hints = typing.get_type_hints(cls)
    return [(f.name, _type_name(hints[f.name]), f.default) for f in dataclasses.fields(cls)]


@dataclass(frozen=True)
class BridgeOptions:
    """Options every backend behind the model bridge shares (bridge/client.py)."""

    python: str = ""  # the model environment's interpreter on each node (its bin/python)
    repo: str = ""  # the user's clone of the model's repository on each node
    timeout_s: float = rng(1.0, 86400.0, 600.0)  # per call
    start_timeout_s: float = rng(1.0, 86400.0, 900.0)  # start, import, weights, health

    def __post_init__(self):
        for k, what in (("python", "the model environment's bin/python"),
                        ("repo", "the folder of your clone of the model's repository")):
            if not getattr(self, k):
                raise ValueError(f"{k} is required: {what} (scripts/setup_model_env.sh "
                                 "builds both)")
