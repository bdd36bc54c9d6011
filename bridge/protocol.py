"""The bridge protocol, version 1 (both sides; standard library + numpy, Python >= 3.9).

Messages are JSON objects, one per line (UTF-8), over the worker's stdin (requests) and a
private copy of its stdout (replies); the worker sends everything the model prints to its
stderr, which the client keeps in a log file. Arrays travel as ``.npz`` files in the
actor's work directory, named in the message; bigger inputs a model reads itself (an OBJ
mesh, a PNG) are written there as files and named in ``args``.

Worker -> client, once at start::

    {"protocol": 1, "event": "started", "pid": 123, "python": "3.9.18", "numpy": "1.23.5"}

Client -> worker::

    {"protocol": 1, "id": 7, "op": "probe" | "load" | "health" | "call" | "exit",
     "args": {...}, "inputs": "/work/dir/in-7.npz" | null}

Worker -> client, one reply per request, with the same id::

    {"protocol": 1, "id": 7, "ok": true, "result": {...}, "outputs": "/work/dir/out-7.npz"}
    {"protocol": 1, "id": 7, "ok": false, "error": "ValueError: ...", "traceback": "..."}

``probe`` imports the model's code and checks its files without loading weights (``pain3d
check``), ``load`` loads the weights once, ``health`` reports what is loaded, ``call``
runs the model on one request, ``exit`` ends the worker. A worker also exits when its stdin
closes or its parent process goes away, so none outlives the actor.
"""
from __future__ import annotations

import json
import os

import numpy as np

PROTOCOL = 1
OPS = ("probe", "load", "health", "call", "exit")


class ProtocolError(ValueError):
    """A line that is not a version-1 bridge message."""


def encode(msg: dict) -> bytes:
    return (json.dumps(dict(msg, protocol=PROTOCOL), separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> dict:
    """One message, or ProtocolError quoting (the start of) what arrived instead."""
    text = line.decode("utf-8", "replace").strip()
    try:
        msg = json.loads(text)
    except ValueError:
        raise ProtocolError(f"not a JSON message: {text[:120]!r}") from None
    if not isinstance(msg, dict) or msg.get("protocol") != PROTOCOL:
        raise ProtocolError(f"not a protocol-{PROTOCOL} message: {text[:120]!r}")
    return msg


def save_arrays(path: str, arrays: dict) -> str:
    """Write ``arrays`` as an npz atomically (a reader never sees half a file)."""
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(tmp, path)
    return path


def load_arrays(path: str | None) -> dict:
    if not path:
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
