"""The worker process of the bridge (standard library + numpy; runs in the model's env).

    <model-env>/bin/python worker.py --handler nfr_server --work-dir DIR --options FILE

``--handler`` names a handler module beside this file or a path to one. A handler module
defines ``Server(options: dict, work_dir: str)`` with ``probe()``, ``load()`` and
``health()`` (each returning a JSON-able dict) and ``call(args, arrays) -> (dict, arrays)``.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import signal
import sys
import threading
import time
import traceback

import numpy as np

from protocol import decode, encode, load_arrays, save_arrays

PROTOCOL_OUT = None  # the private protocol channel (main sets it)


def _private_stdout():
    """A private copy of stdout for the protocol; fd 1 itself then points at stderr, so
    whatever the model prints (Python or C) lands in the log, never in the protocol."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    return out


def _watch_parent(ppid: int) -> None:
    # the actor was killed without closing our stdin (SIGKILL): we were re-parented
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os.killpg(0, signal.SIGKILL)  # the worker's group: the model's children too


def _handler(name: str):
    if name.endswith(".py"):
        spec = importlib.util.spec_from_file_location("bridge_handler", name)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return importlib.import_module(name)


def _serve(server, req: dict, work_dir: str) -> dict:
    op = req.get("op")
    if op == "probe":
        return {"result": server.probe()}
    if op == "load":
        return {"result": server.load()}
    if op == "health":
        return {"result": server.health()}
    if op == "call":
        result, arrays = server.call(req.get("args") or {}, load_arrays(req.get("inputs")))
        path = None
        if arrays:
            path = save_arrays(os.path.join(work_dir, "out-%s.npz" % req.get("id")), arrays)
        return {"result": result, "outputs": path}
    raise ValueError("unknown op %r" % op)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--handler", required=True)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--options", required=True)
    a = p.parse_args(argv)
    global PROTOCOL_OUT
    out = PROTOCOL_OUT = _private_stdout()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    out.write(encode({"event": "started", "pid": os.getpid(),
                      "python": platform.python_version(), "numpy": np.__version__}))
    with open(a.options) as f:
        options = json.load(f)
    server = None
    for line in sys.stdin.buffer:
        req = decode(line)
        if req.get("op") == "exit":
            out.write(encode({"id": req.get("id"), "ok": True, "result": {}}))
            break
        try:
            if server is None:
                server = _handler(a.handler).Server(options, a.work_dir)
            line = encode(dict(_serve(server, req, a.work_dir), id=req.get("id"), ok=True))
        except Exception as e:  # the model's error goes back to the stage, and into the log
            traceback.print_exc()
            line = encode({"id": req.get("id"), "ok": False,
                           "error": "%s: %s" % (type(e).__name__, e),
                           "traceback": traceback.format_exc()})
        sys.stderr.flush()
        out.write(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
