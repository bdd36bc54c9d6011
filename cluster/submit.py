"""`pain3d submit`: a pain3d command as a Ray job on a cluster (Ray's job submission API).

The project folder travels as the job's working_dir, without data, outputs, weights or
virtual environments; S3 and model-cache settings travel as environment variables whose
values are never printed.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("generate", "train", "tune", "evaluate", "ablate", "export", "report")
# never uploaded: datasets, runs, sweeps, weights, environments, caches
EXCLUDES = [".venv", "venv", ".git", "data", "runs", "sweeps", "models", "out", "docs",
            "**/__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info", "*.parquet",
            "*.safetensors", "*.ckpt", "*.pth", "*.pt", "*.bin", "*.pkl", "*.npz", "*.png"]
# passed through when set on the submitting machine (values stay out of every printout)
PASS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
            "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "HF_TOKEN",
            "HF_HOME", "HF_ENDPOINT", "PAIN3D_MODEL_CACHE", "TORCH_HOME")


def job_env(environ=os.environ) -> dict[str, str]:
    return {k: environ[k] for k in PASS_ENV if environ.get(k)}


def entrypoint(command: str, args: list[str]) -> str:
    """The job's shell command: the project's CLI from the uploaded working_dir."""
    return shlex.join(["python", "-m", "cluster.cli", command, *args])


def dashboard_address(address: str | None) -> str:
    addr = address or os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265"
    if "://" not in addr:
        addr = f"http://{addr}"
    if addr.startswith("ray://"):  # the job API lives on the dashboard's HTTP port
        raise ValueError(f"--address {addr} is a Ray Client address; give the dashboard's "
                         "http://<head>:8265 (e.g. through `ray dashboard ray_config.yaml`)")
    return addr


def submit(command: str, args: list[str], address: str | None = None,
           submission_id: str | None = None) -> tuple[str, str, list[str]]:
    """Submits; returns (job id, dashboard address, names of the variables passed)."""
    from ray.job_submission import JobSubmissionClient

    if command not in COMMANDS:
        raise ValueError(f"pain3d submit runs one of {', '.join(COMMANDS)}; got {command!r}")
    addr = dashboard_address(address)
    try:
        client = JobSubmissionClient(addr)
    except Exception as e:  # noqa: BLE001 - unreachable head, auth: one sentence
        raise ConnectionError(
            f"cannot reach the Ray cluster's job API at {addr} ({str(e).splitlines()[0]}); "
            "open a tunnel with `ray dashboard ray_config.yaml` or pass --address "
            "http://<head>:8265 (RAY_AUTH_MODE=token for token-authenticated clusters)") from None
    env = job_env()
    job_id = client.submit_job(
        entrypoint=entrypoint(command, args), submission_id=submission_id,
        runtime_env={"working_dir": str(REPO), "excludes": EXCLUDES, "env_vars": env},
        metadata={"pain3d_command": command})
    return job_id, addr, sorted(env)


def follow(job_id: str, address: str) -> str:
    """Streams the job's logs until it ends; returns its final status."""
    import asyncio

    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)

    async def tail():
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(tail())
    return str(client.get_job_status(job_id))
