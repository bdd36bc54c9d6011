"""Ctrl-C (SIGINT) and SIGTERM end generate and train with one line and exit 130, leave
nothing half-written, and the same command (with --resume for training) continues. Also:
a normal training run's output holds pain3d's lines, not Ray's internal warnings."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN

REPO = Path(__file__).resolve().parent.parent
PAIN3D = [sys.executable, "-m", "cluster.cli"]
RAY = ["generate.ray.num_cpus=2", "generate.ray.object_store_memory=200000000"]
GEN = ["--identities", "3", "render.size=32", "face.texture_size=64",
       "generate.write_meshes=false"] + RAY

pytestmark = pytest.mark.slow


def _env(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1", PAIN3D_LOG_DIR=str(tmp_path / "logs"))
    env.pop("RAY_ADDRESS", None)
    return env


def _start(argv, tmp_path, name):
    log = open(tmp_path / f"{name}.log", "w+")
    p = subprocess.Popen(PAIN3D + [str(a) for a in argv], cwd=REPO, env=_env(tmp_path),
                         stdout=log, stderr=subprocess.STDOUT, text=True)
    return p, log


def _wait_for(cond, p, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        assert p.poll() is None, "the command ended before the moment to interrupt it"
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _finish(p, log, timeout=180):
    p.wait(timeout=timeout)
    log.seek(0)
    return log.read()


def _interrupted(out: str, again: str):
    lines = [x for x in out.splitlines() if x.startswith("pain3d:")]
    assert lines == [f"pain3d: interrupted; {again}"], out[-3000:]
    assert "Traceback" not in out, out[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_generate_interrupted_before_any_shard_leaves_nothing(sig, tmp_path):
    out = tmp_path / "d"
    p, log = _start(["generate", "--out", out, *GEN], tmp_path, "gen")
    _wait_for(lambda: (out / "run.json").exists(), p)
    assert not list(out.glob("frames/identity=*.parquet")), "a shard came before the signal"
    p.send_signal(sig)
    text = _finish(p, log)
    assert p.returncode == 130, text[-3000:]
    _interrupted(text, "nothing was kept, so run the command again to start over")
    assert not out.exists(), sorted(str(x) for x in out.rglob("*"))


def test_generate_interrupted_after_a_shard_resumes(tmp_path):
    out = tmp_path / "d"
    p, log = _start(["generate", "--out", out, *GEN], tmp_path, "gen")
    _wait_for(lambda: len(list(out.glob("frames/identity=*.parquet"))) >= 1, p)
    p.send_signal(signal.SIGTERM)
    text = _finish(p, log)
    assert p.returncode == 130, text[-3000:]
    _interrupted(text, "re-run the same command to resume")
    kept = sorted(x.name for x in out.glob("frames/identity=*.parquet"))
    assert kept and (out / "run.json").is_file() and not list(out.rglob(".tmp-*"))
    r = subprocess.run(PAIN3D + ["generate", "--out", str(out), *GEN], cwd=REPO,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{len(kept)} already done" in r.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["frames"] == 99 and manifest["counts"]["duplicate_sample_ids"] == 0


def _train(data, storage, name, *extra):
    return ["train", "teacher", "--data", data, "--name", name, f"train.storage={storage}",
            "train.freeze_backbone_epochs=0", *RAY, *TINY_TRAIN, *extra]


def test_train_interrupted_then_resumed_and_quiet(data10, tmp_path):
    runs = tmp_path / "runs"
    # before its first checkpoint: the new run's folder is removed
    p, log = _start(_train(data10, runs, "early", "train.epochs=3"), tmp_path, "early")
    _wait_for(lambda: (runs / "early" / "split.json").exists(), p)
    p.send_signal(signal.SIGINT)
    text = _finish(p, log)
    assert p.returncode == 130, text[-3000:]
    _interrupted(text, "nothing was kept, so run the command again to start over")
    assert not (runs / "early").exists()
    # after an epoch: kept, and --resume finishes it
    p, log = _start(_train(data10, runs, "t", "train.epochs=3"), tmp_path, "t")
    _wait_for(lambda: (runs / "t" / "progress.json").exists(), p, timeout=300)
    p.send_signal(signal.SIGTERM)
    text = _finish(p, log)
    assert p.returncode == 130, text[-3000:]
    _interrupted(text, "re-run the same command with --resume to resume")
    r = subprocess.run(PAIN3D + [str(a) for a in _train(data10, runs, "t", "train.epochs=3",
                                                       "--resume")],
                       cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    history = json.loads((runs / "t" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # quiet: pain3d's own lines (a progress bar and the summary), none of Ray's chatter
    err = r.stderr.replace("\r", "\n")
    for noise in ("PlacementGroupCleaner", "Failed to query", "(raylet)", "INFO", "WARNING"):
        assert noise not in err, noise
    assert len([x for x in r.stderr.splitlines() if x.strip()]) <= 10, r.stderr[-3000:]
    assert "best val macro AUROC" in r.stdout
    assert list((tmp_path / "logs").glob("train-*.log"))  # Ray's messages went here
