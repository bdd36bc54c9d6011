"""Loss-weight sweeps (`pain3d tune`): a sweep of 3 tiny trials interrupted, restored and
finished end to end. The sweeps run as `pain3d tune` processes on a Ray head of their own
with the dashboard on: Ray Train's placement-group cleaner needs the state API, without which
trials stopped by Tune leak their workers' CPUs and later trials hang."""
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cluster.config import load_config
from tests.conftest import TINY_TRAIN
from tests.raycluster import Head
from train.losses import LossWeights

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("ray_local")
# one training worker per trial and one trial at a time: 0.1 + 0.5 CPUs reserved, the rest
# free for Ray Data's decoding on a 2-CPU machine
SWEEP = TINY_TRAIN + ["train.num_workers=1", "train.epochs=2", "tune.grace_epochs=1",
                      "tune.cpus_per_trial=0.1"]


def _cmd(data, teacher, storage, name, *extra):
    return [sys.executable, "-m", "cluster.cli", "tune", "--data", data, "--teacher", teacher,
            "--samples", "3", "--concurrent", "1", "--storage", str(storage), "--name", name,
            *extra, *SWEEP]


@pytest.fixture(scope="module")
def head():
    h = Head(num_cpus=2, pin_address=True)
    yield h
    h.stop()


def _env(head):
    return dict(head.env, PYTHONUNBUFFERED="1", RAY_ADDRESS=head.address)


def _rows(folder: Path) -> list[dict]:
    with open(folder / "results.csv") as f:
        return list(csv.DictReader(f))


def _check_history(folder: Path, row: dict) -> None:
    """Tune recorded each of the trial's epochs exactly once (a finished trial re-run, or an
    epoch trained twice, would repeat), and ASHA stopped nobody before the grace epoch."""
    (trial_dir,) = (folder / "tune").glob(f"run_trial_{row['trial']}_*")
    results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    done = [r["epochs_done"] for r in results]
    assert done == list(range(1, len(done) + 1)) and done[-1] == int(row["epochs"])
    assert int(row["epochs"]) == 2 if row["status"] == "completed" else int(row["epochs"]) == 1


def _assert_quiet(r) -> None:
    """Without -v: pain3d's own lines on stdout, tqdm's bars on stderr, none of Tune's tables
    (its experiment box prints even at verbose=0 under the new output engine) nor Optuna's."""
    for noise in ("Configuration for experiment", "View detailed results", "tensorboard",
                  "Trial status", "ExperimentalWarning", "A new study created"):
        assert noise not in r.stdout + r.stderr, noise
    assert all(line.startswith(("best trial", "final ", "sweep ", "restoring sweep "))
               for line in r.stdout.splitlines()), r.stdout
    bars = [x for x in r.stderr.replace("\r", "\n").splitlines() if x.strip()]
    assert all("|" in x and "/" in x for x in bars), r.stderr[-3000:]


def _check_every_output(folder: Path) -> None:
    """A finished sweep of 3 trials with the authors' options (issue 14): ranked results,
    the warm start, leaderboard, best.yaml, plots, and the final runs with their CIs."""
    rows = _rows(folder)
    assert len(rows) == 3 and len({x["trial"] for x in rows}) == 3
    space = load_config("local", layers=["sweep"]).tune.space
    paper = LossWeights()
    warm = [x for x in rows if x["paper_weights"] == "True"]
    assert len(warm) == 1  # the warm start: the paper's weights, exactly
    for k in space:
        assert float(warm[0][k]) == pytest.approx(getattr(paper, k))
    for x in rows:  # every sampled point lies in the space
        for k, rng in space.items():
            assert rng.low <= float(x[k]) <= rng.high
        assert 0.0 <= float(x["val_macro_auroc"]) <= 1.0
        assert x["status"] in ("completed", "stopped early (ASHA)")
        _check_history(folder, x)
    aucs = [float(x["val_macro_auroc"]) for x in rows]
    assert aucs == sorted(aucs, reverse=True)  # the CSV is ranked
    board = (folder / "leaderboard.md").read_text()
    assert sum(line.startswith("| ") and x["trial"] in line for x in rows
               for line in board.splitlines()) == 3 and "(paper's weights)" in board
    # best.yaml is a config that train accepts, with the best trial's weights
    best_cfg = load_config(str(folder / "best.yaml"))
    for k in space:
        assert getattr(best_cfg.train.weights, k) == pytest.approx(float(rows[0][k]))
    assert best_cfg.train.model.img_size == 32  # the rest of the swept config came along
    assert best_cfg.train.model.neutral_reference and best_cfg.train.model.head == "both"
    trial = json.loads(next(folder.rglob("config.json")).read_text())["config"]["train"]
    assert trial["model"]["neutral_reference"] and trial["eval"]["neutral_shots"] == 2
    for png in ("history.png", "importance.png"):
        im = np.asarray(Image.open(folder / png).convert("L"), float)
        assert im.shape[1] >= 600 and im.std() > 5
    final = json.loads((folder / "final.json").read_text())
    assert final["seeds"] == 1 and set(final["rows"]) in ({"best", "paper"}, {"best (= paper)"})
    for row in final["rows"].values():
        assert 0.0 <= row["macro_auroc"][0] <= 1.0
    assert "| best" in (folder / "final.md").read_text()
    ci = final["bootstrap"]["rows"]  # an interval over test identities per variant
    assert set(ci) == set(final["rows"])
    assert all(r["lo"] <= r["mean"] <= r["hi"] for r in ci.values())
    assert "95% CIs of the macro AUROC" in (folder / "final.md").read_text()


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_rerunning_trials_and_writes_every_output(
        data10, tiny_teacher, head, tmp_path):
    # with the authors' options on (issue 14): they travel into every trial and final run
    options = ["train.model.neutral_reference=true", "train.model.head=both",
               "train.eval.neutral_shots=2"]
    folder = tmp_path / "r"
    log = open(tmp_path / "first.log", "w+")  # a file, not a pipe: Tune prints a lot
    p = subprocess.Popen(_cmd(data10, tiny_teacher, tmp_path, "r", "tune.final_seeds=1", *options),
                         cwd=REPO, env=_env(head), stdout=log, stderr=subprocess.STDOUT,
                         text=True)
    deadline = time.time() + 600
    first = None  # the result log of the first trial to finish both epochs
    while time.time() < deadline and first is None:
        for f in sorted((folder / "tune").glob("run_trial_*/result.json")) if folder.exists() \
                else []:
            if any(json.loads(line)["epochs_done"] == 2 for line in f.read_text().splitlines()):
                first = f
        time.sleep(0.5)
    assert first is not None, "no trial finished"
    p.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves the experiment and stops
    p.wait(timeout=300)
    log.seek(0)
    out = log.read()
    assert p.returncode == 130, out[-3000:]
    assert "pain3d: interrupted; re-run the same command with --resume" in out
    assert "Traceback" not in out
    first_id = first.parent.name.split("_")[2]  # run_trial_<id>_<n>_<params>...
    run = folder / "trials" / first_id

    def snapshot():  # the finished trial's training run, file by file
        return {str(f.relative_to(run)): f.stat().st_mtime_ns for f in run.rglob("*")}

    stamp = snapshot()
    assert any(k.startswith("checkpoint_") for k in stamp)
    r = subprocess.run(_cmd(data10, tiny_teacher, tmp_path, "r", "--resume"), cwd=REPO,
                       env=_env(head), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert snapshot() == stamp  # the finished trial's run was not started again
    _assert_quiet(r)
    _check_every_output(folder)  # 3 trials, each epoch of each trained once
    assert first_id in {x["trial"] for x in _rows(folder)}
    # the same name again is refused instead of mixed
    again = subprocess.run(_cmd(data10, tiny_teacher, tmp_path, "r"), cwd=REPO, env=_env(head),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--resume" in again.stderr
