"""Start and stop a Ray head for tests on non-default ports, without `ray stop`."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil


RAY = str(Path(sys.executable).parent / "ray")  # the CLI of this environment, on PATH or not


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Head:
    """`ray start --head` with every port moved and a temp dir of its own; stop() kills
    exactly the processes that belong to it."""

    def __init__(self, num_cpus: int = 2, extra_env: dict | None = None, extra_args=(),
                 pin_address: bool = False, port: int | None = None):
        """``pin_address``: the head's processes (and so its workers) get RAY_ADDRESS set to
        this head. Ray's state API, which Ray Train's placement-group cleaner uses from a
        worker, otherwise refuses to pick between several Ray instances on one machine (as
        in the tests: the session's Ray and this head)."""
        self.temp = tempfile.mkdtemp(prefix="r3h", dir="/tmp")  # short: socket path limits
        self.port, self.dash = port or free_port(), free_port()
        self.env = dict(os.environ, RAY_AUTH_MODE="token", **(extra_env or {}))
        self.env.pop("RAY_ADDRESS", None)
        self.env["PATH"] = f"{Path(sys.executable).parent}:{self.env.get('PATH', '')}"
        start_env = dict(self.env, RAY_ADDRESS=self.address) if pin_address else self.env
        cmd = [RAY, "start", "--head", f"--port={self.port}",
               f"--dashboard-port={self.dash}", "--dashboard-host=127.0.0.1",
               f"--ray-client-server-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}",
               f"--temp-dir={self.temp}", f"--num-cpus={num_cpus}",
               "--object-store-memory=200000000", "--disable-usage-stats", *extra_args]
        r = subprocess.run(cmd, env=start_env, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed: {r.stderr[-2000:]}")

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dash}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def processes(self) -> list[psutil.Process]:
        """The head's processes (their command lines name its temp dir) and all their
        descendants (agents and workers retitle themselves as ray::...)."""
        mine: dict[int, psutil.Process] = {}
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(self.temp in part for part in (p.info["cmdline"] or [])):
                    mine[p.pid] = p
                    for c in p.children(recursive=True):
                        mine[c.pid] = c
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return list(mine.values())

    def stop(self) -> None:
        procs = self.processes()
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)
