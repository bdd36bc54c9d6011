"""The README's bad-input table, case by case: exit code 2, one line that names the problem,
and nothing half-written where the output was to go."""
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cluster.cli import main
from tests.conftest import TINY_TRAIN
from tests.raycluster import free_port

MOTO = str(Path(sys.executable).parent / "moto_server")


@pytest.fixture(scope="module")
def s3_with_auth():
    """A moto S3 server that checks credentials (every request authenticated): a made-up
    access key is refused as on AWS."""
    port = free_port()
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": "0", "PATH": str(Path(sys.executable).parent)}
    p = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    p.terminate()
    p.wait(timeout=10)


def _run(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("pain3d: error:")]
    return rc, err, lines


def _assert_one_line_error(rc, err, lines, *needles):
    assert rc == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]


def _untouched(path: Path):
    assert not path.exists() or not any(path.iterdir()), sorted(p.name for p in path.iterdir())


GENERATE_CASES = [  # (id, extra argv, what the message must name)
    ("unknown preset", ["--config", "no-such-preset"], ["unknown preset 'no-such-preset'"]),
    ("unknown backend", ["generate.stages.texturing.backend=magic"],
     ["unknown generate.stages.texturing.backend 'magic'"]),
    ("unknown codec", ["generate.codec=jpeg"], ["unknown generate.codec 'jpeg'", "webp"]),
    ("zero identities", ["--identities", "0"], ["'generate.identities' must be between 1 and 100,000"]),
    ("negative start", ["--start", "-3"], ["'generate.start' must be between 0 and"]),
    ("unknown config key", ["render.sise=64"], ["unknown config key 'render.sise'"]),
    ("wrong value type", ["render.size=big"], ["render.size' must be an integer"]),
    ("missing FLAME file", ["face.model=flame", "face.flame_path=/no/flame/generic_model.pkl",
                            "face.au_basis_path=/no/au_basis.json"],
     ["face.flame_path /no/flame/generic_model.pkl does not exist"]),
    ("missing model folder", ["generate.stages.neutral_face.backend=kandinsky",
                              "generate.stages.neutral_face.model=/no/such/controlnet"],
     ["/no/such/controlnet"]),
]


@pytest.mark.parametrize("case,extra,needles", GENERATE_CASES, ids=[c[0] for c in GENERATE_CASES])
def test_bad_generate_input(case, extra, needles, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err, lines = _run(["generate", "--identities", "2", "--out", str(out), *extra], capsys)
    _assert_one_line_error(rc, err, lines, *needles)
    _untouched(out)


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    rc, err, lines = _run(["generate", "--out", str(blocker / "ds")], capsys)
    _assert_one_line_error(rc, err, lines, "file/ds lies under a file", "choose a folder path")
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.parametrize("case", ["wrong credentials", "unreachable"])  # missing bucket: test_s3
def test_bad_s3_output(case, s3_with_auth, monkeypatch, capsys):
    endpoint = s3_with_auth if case != "unreachable" else f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "made-up-secret-for-the-test")
    rc, err, lines = _run(["generate", "--out", "s3://no-such-bucket-pain3d/ds"], capsys)
    want = {"wrong credentials": ("S3 refused access", "AWS_ACCESS_KEY_ID"),
            "unreachable": ("cannot reach S3", "AWS_ENDPOINT_URL")}[case]
    _assert_one_line_error(rc, err, lines, *want)
    assert "made-up-secret-for-the-test" not in err  # credentials never reach the output


# ---- training, evaluation, sweeps, export, submit ----

@pytest.fixture(scope="module")
def broken(data10, tmp_path_factory):
    """Copies of the tiny dataset: one with a truncated PNG, one without its image column,
    and a 'teacher' checkpoint whose weights are another network's."""
    import torch
    import torchvision

    from train.model import ModelConfig

    root = tmp_path_factory.mktemp("broken")
    nocol = root / "nocol"
    shutil.copytree(data10, nocol)
    for shard in (nocol / "frames").glob("*.parquet"):
        t = pq.read_table(shard)
        pq.write_table(t.drop_columns(["image"]), shard)
    other = root / "resnet-teacher"
    other.mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), other / "model.pt")
    (other / "model_config.json").write_text(json.dumps(ModelConfig().to_dict()))
    return {"nocol": str(nocol), "other_teacher": str(other)}


def test_dataset_missing_columns(broken, tmp_path, capsys):
    rc, err, lines = _run(["train", "teacher", "--data", broken["nocol"], "--name", "x",
                           f"train.storage={tmp_path / 'runs'}"] + TINY_TRAIN, capsys)
    _assert_one_line_error(rc, err, lines, "lacks the columns image")
    _untouched(tmp_path / "runs")


def test_teacher_of_another_architecture(data10, broken, tmp_path, capsys):
    rc, err, lines = _run(["train", "student", "--data", data10, "--teacher",
                           broken["other_teacher"], "--name", "s",
                           f"train.storage={tmp_path / 'runs'}"] + TINY_TRAIN, capsys)
    _assert_one_line_error(rc, err, lines, "does not match its model config")
    _untouched(tmp_path / "runs")


@pytest.mark.parametrize("case,argv,needles", [
    ("missing dataset", ["train", "teacher", "--data", "/no/such/dataset", "--name", "x"],
     ["/no/such/dataset holds neither frames/"]),
    ("zero epochs", ["train", "teacher", "--data", "/no/such/dataset", "train.epochs=0"],
     ["'train.epochs' must be between 1 and"]),
    ("student without teacher", ["train", "student", "--data", "DATA", "--name", "x"],
     ["--teacher", "--no-distill"]),
    ("no-distill and a teacher", ["train", "student", "--data", "DATA", "--name", "x",
                                  "--no-distill", "--teacher", "/t"], ["contradict"]),
    ("unknown rig model", ["train", "rig", "--data", "DATA", "train.rig.model=vae"],
     ["unknown train.rig.model 'vae'"]),
    ("encoder with a teacher", ["train", "encoder", "--data", "DATA", "--teacher", "/t"],
     ["pain3d train encoder takes neither"]),
    ("late fusion of a regression head", ["train", "student", "--data", "DATA", "--no-distill",
                                          "train.model.fusion=late_max",
                                          "train.model.head=regression"],
     ["combines class probabilities"]),
    ("fusion encoder not given", ["train", "student", "--data", "DATA", "--no-distill",
                                  "train.model.fusion=intermediate",
                                  "train.model.fusion_params=encoder"],
     ["train.model.fusion_encoder is not set"]),
    ("fusion preset without its encoder", ["train", "student", "--layer", "fusion", "--data",
                                           "DATA", "--no-distill"],
     ["train.model.fusion_encoder is not set"]),
    ("teacher with fusion", ["train", "teacher", "--data", "DATA", "--name", "x",
                             "train.model.fusion=intermediate"], ["is for the RGB student"]),
    ("missing checkpoint", ["evaluate", "--checkpoint", "/no/ckpt", "--data", "DATA",
                            "--out", "STORE/eval"],
     ["/no/ckpt is not a pain3d checkpoint"]),
    ("resume of no sweep", ["tune", "--data", "DATA", "--teacher", "TEACHER", "--resume",
                            "--name", "never-ran"], ["no sweep 'never-ran'"]),
    ("ablation with zero seeds", ["ablate", "--data", "DATA", "--seeds", "0"],
     ["--seeds must be >= 1"]),
    ("evaluate with no neutral shots", ["evaluate", "--checkpoint", "/no/ckpt", "--data",
                                        "DATA", "--neutral-shots", "0"],
     ["--neutral-shots must be >= 1, got 0"]),
    ("unknown ablation row", ["ablate", "--data", "DATA", "--rows", "au_queries,nope"],
     ["unknown ablation row 'nope'", "neutral_reference"]),
    ("unknown head", ["train", "student", "--data", "DATA", "--no-distill",
                      "train.model.head=ordinal"], ["unknown train.model.head 'ordinal'"]),
    ("unknown sampling", ["train", "student", "--data", "DATA", "--no-distill",
                          "train.sampling=balanced"], ["unknown train.sampling 'balanced'"]),
    ("shared encoder, no reference", ["train", "student", "--data", "DATA", "--no-distill",
                                      "train.model.shared_encoder=true"],
     ["neutral_reference is off"]),
    ("teacher with a neutral reference", ["train", "teacher", "--data", "DATA",
                                          "train.model.neutral_reference=true"],
     ["neutral_reference is for the RGB student"]),
    ("LoRA targets not in the backbone", ["train", "student", "--data", "DATA", "--no-distill",
                                          "train.model.lora.rank=4",
                                          "train.model.lora.targets=[nope]"],
     ["train.model.lora.targets ['nope'] name no layer", "qkv"]),
])
def test_bad_training_input(case, argv, needles, data10, tmp_path, capsys):
    if "TEACHER" in argv:  # a real teacher checkpoint is needed to get as far as the sweep
        teacher = tmp_path / "t"
        from train.loop import save_model
        from train.model import ModelConfig, ViTPain

        save_model(ViTPain(ModelConfig(img_size=32, backbone_kwargs={"depth": 1}),
                           weights_follow=True), teacher)
        argv = [str(teacher) if a == "TEACHER" else a for a in argv]
    store = tmp_path / "store"
    argv = [data10 if a == "DATA" else a.replace("STORE", str(store)) for a in argv]
    if argv[0] != "evaluate":  # the commands that take a config
        argv += [f"train.storage={store}", f"tune.storage={store}"] + TINY_TRAIN
    rc, err, lines = _run(argv, capsys)
    _assert_one_line_error(rc, err, lines, *needles)
    _untouched(store)


def test_export_onto_existing_folder(data10, tmp_path, capsys):
    dest = tmp_path / "exported"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    rc, err, lines = _run(["export", data10, str(dest)], capsys)
    _assert_one_line_error(rc, err, lines, "exists and has no pain3d marker", "choose another folder")
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]


def test_submit_to_unreachable_cluster(capsys):
    rc, err, lines = _run(["submit", "--address", f"http://127.0.0.1:{free_port()}", "generate",
                           "--identities", "2"], capsys)
    _assert_one_line_error(rc, err, lines, "cannot reach the Ray cluster's job API",
                           "ray dashboard ray_config.yaml")
