"""pain3d's side of the bridge: start, watch, restart and stop one model worker process.

:class:`ModelServer` keeps one worker of another interpreter (``WorkerSpec.python``) alive
for the life of a stage actor. A worker that dies is restarted once and the request
retried; a second death, a timeout, a reply that is not the protocol, or a model error
stops the stage with one :class:`BridgeError` sentence carrying the worker's last log lines.
"""
from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from bridge.protocol import ProtocolError, decode, encode, load_arrays, save_arrays

log = logging.getLogger(__name__)
WORKER = str(Path(__file__).with_name("worker.py"))
# variables of pain3d's own interpreter that must not leak into the model's
_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONEXECUTABLE")


class BridgeError(RuntimeError):
    """The model worker failed; the message is one line."""


class _Died(Exception):
    def __init__(self, code):
        self.code = code


@dataclass
class WorkerSpec:
    name: str  # "rigging.backend 'nfr'", for messages
    python: str  # the model environment's interpreter
    handler: str  # handler module beside worker.py, or a path to one
    options: dict = field(default_factory=dict)  # JSON-able, given to the handler
    timeout_s: float = 600.0  # per call
    start_timeout_s: float = 900.0  # start + probe + load
    python_key: str = "options.python"  # the config key, for messages
    env: dict = field(default_factory=dict)  # extra environment for the worker


def _kill(proc: subprocess.Popen) -> None:
    """Kill the worker's whole process group (the model's own children too), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # before reaping: the group id is still ours
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # stuck in the driver (uninterruptible): leave it
        log.warning("model worker %s did not exit 30 s after SIGKILL", proc.pid)
    for pipe in (proc.stdin, proc.stdout):
        try:
            if pipe:
                pipe.close()
        except OSError:
            pass


def gpu_env() -> dict:
    """CUDA_VISIBLE_DEVICES for the worker: the GPUs Ray assigned to this actor."""
    try:
        import ray

        if ray.is_initialized():
            ids = ray.get_gpu_ids()
            if ids:
                return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in ids)}
    except ImportError:
        pass
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    return {} if cvd is None else {"CUDA_VISIBLE_DEVICES": cvd}


class ModelServer:
    def __init__(self, spec: WorkerSpec, work_dir: str | None = None):
        self.spec = spec
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="pain3d-bridge-")
        self.log_path = os.path.join(self.work_dir, "worker.log")
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self._buf = b""
        self._id = 0

    # ---- life cycle ---------------------------------------------------------------------
    def start(self, load: bool = True) -> dict:
        """Start the worker, probe the model's code and files, load it, check its health."""
        deadline = time.monotonic() + self.spec.start_timeout_s
        try:
            self._spawn()
            try:
                self.info = dict(self._read(deadline, what="start"))
            except _Died as d:  # it could not even run the bridge (no numpy, wrong Python)
                raise self._died(True, "start", d) from None
            self.info["probe"] = self._request("probe", {}, None, deadline, start=True)[0]
            if load:
                self.info["load"] = self._request("load", {}, None, deadline, start=True)[0]
                self.info["health"] = self._request("health", {}, None, deadline, start=True)[0]
        except BaseException:
            self.close()
            raise
        return self.info

    def _spawn(self) -> None:
        py = shutil.which(self.spec.python) if self.spec.python else None
        py = os.path.abspath(py) if py else None
        if not py:
            raise BridgeError(
                f"{self.spec.name}: {self.spec.python_key} {self.spec.python!r} is not an "
                "interpreter on this node; build the model's environment (scripts/"
                "setup_model_env.sh) and set it to that environment's bin/python")
        env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
        env.update(gpu_env(), **self.spec.env)
        opts = os.path.join(self.work_dir, "options.json")
        with open(opts, "w") as f:
            json.dump(self.spec.options, f)
        self._buf = b""
        with open(self.log_path, "ab") as logf:  # the child keeps its own descriptor
            self._log_from = logf.tell()  # this worker's lines start here
            try:
                self.proc = subprocess.Popen(
                    [py, "-u", WORKER, "--handler", self.spec.handler, "--work-dir",
                     self.work_dir, "--options", opts], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=logf, cwd=self.work_dir, env=env,
                    start_new_session=True)
            except OSError as e:
                raise BridgeError(f"{self.spec.name}: {self.spec.python_key} {py} cannot be "
                                  f"run ({e.strerror or e}); set it to the model "
                                  "environment's bin/python") from None
        self._finalizer = weakref.finalize(self, _kill, self.proc)

    def close(self, polite: bool = True) -> None:
        """Stop the worker (asked to exit, then its whole process group killed); idempotent.
        A hung or garbled worker is killed at once (``polite=False``)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if polite and proc.poll() is None:
            try:
                proc.stdin.write(encode({"id": 0, "op": "exit"}))
                proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self._finalizer.detach()
        _kill(proc)

    def shutdown(self) -> None:
        """Stop the worker for good and remove its files, all but its log."""
        self.close()
        for p in Path(self.work_dir).iterdir() if os.path.isdir(self.work_dir) else []:
            if p.name != "worker.log":
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()

    # ---- requests -----------------------------------------------------------------------
    def call(self, args: dict, arrays: dict | None = None) -> tuple[dict, dict]:
        """One model call; a worker that dies is restarted once and the call retried."""
        for attempt in (1, 2):
            if self.proc is None:
                self.start()
            try:
                return self._request("call", args, arrays,
                                     time.monotonic() + self.spec.timeout_s)
            except _Died as d:
                if attempt == 2:
                    self.close()
                    raise BridgeError(
                        f"{self.spec.name}: the model worker died again on the retried batch "
                        f"(exit code {d.code}); {self._tail()}") from None
                log.warning("%s: the model worker died (exit code %s); restarting it once "
                            "and retrying the batch", self.spec.name, d.code)
                self.close()
        raise AssertionError("unreachable")

    def _request(self, op: str, args: dict, arrays, deadline: float, start: bool = False):
        self._id += 1
        rid = self._id
        inputs = None
        if arrays:
            inputs = save_arrays(os.path.join(self.work_dir, f"in-{rid}.npz"), arrays)
        try:
            try:
                self.proc.stdin.write(encode({"id": rid, "op": op, "args": args,
                                              "inputs": inputs}))
                self.proc.stdin.flush()
                reply = self._read(deadline, what=op)
            except BrokenPipeError:
                raise self._died(start, op) from None
            except _Died as d:
                raise self._died(start, op, d) from None
        finally:
            if inputs and os.path.exists(inputs):
                os.unlink(inputs)
        if reply.get("id") != rid:
            self.close()
            raise BridgeError(f"{self.spec.name}: the model worker answered request "
                              f"{reply.get('id')!r} to request {rid}; {self._tail()}")
        if not reply.get("ok"):
            what = "could not start" if start else "failed"
            raise BridgeError(f"{self.spec.name}: the model {what} ({op}): "
                              f"{_first_line(reply.get('error'))}; full log: {self.log_path}")
        out = reply.get("outputs")
        try:
            arrays_out = load_arrays(out)
        except Exception as e:  # noqa: BLE001 - a bad file is the worker's garbage
            self.close()
            raise BridgeError(f"{self.spec.name}: the model worker's output {out} is not a "
                              f"readable npz ({type(e).__name__}: {e})") from None
        if out:
            os.unlink(out)
        return reply.get("result") or {}, arrays_out

    def _died(self, start: bool, op: str, d: _Died | None = None):
        code = d.code if d else _exit_code(self.proc)
        if start:  # a worker that cannot even start is not retried
            self.close()
            return BridgeError(f"{self.spec.name}: the model worker exited during {op} "
                               f"(exit code {code}); {self._tail()}")
        return d or _Died(code)

    def _read(self, deadline: float, what: str) -> dict:
        """The next message line, waiting until ``deadline``; a worker that exits is seen
        within a second even when a child of the model still holds its stdout open."""
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:  # not select(): fds past 1024 in long actors
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    key = "timeout_s" if what == "call" else "start_timeout_s"
                    timeout = getattr(self.spec, key)
                    self.close(polite=False)
                    raise BridgeError(f"{self.spec.name}: the model worker gave no answer to "
                                      f"'{what}' within {timeout:g} s (options.{key}) and was "
                                      f"stopped; {self._tail()}")
                if not sel.select(min(left, 1.0)):
                    if self.proc.poll() is not None:
                        raise _Died(self.proc.returncode)
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise _Died(self.proc.wait(timeout=30))
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return decode(line)
        except ProtocolError as e:
            self.close(polite=False)
            raise BridgeError(f"{self.spec.name}: the model worker sent something that is not "
                              f"the bridge protocol ({e}); {self._tail()}") from None

    def _tail(self, n: int = 3) -> str:
        try:
            with open(self.log_path, "rb") as f:
                end = f.seek(0, os.SEEK_END)
                f.seek(max(getattr(self, "_log_from", 0), end - (1 << 16)))
                text = f.read().decode(errors="replace")
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        except OSError:
            lines = []
        last = " | ".join(lines[-n:]) if lines else "(nothing)"
        return f"its last log lines: {last}; full log: {self.log_path}"


def _exit_code(proc):
    try:
        return proc.wait(timeout=5) if proc else None
    except subprocess.TimeoutExpired:
        return None


def _first_line(text) -> str:
    lines = str(text or "unknown error").strip().splitlines()
    return lines[0] if lines else "unknown error"
