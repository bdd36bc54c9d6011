"""The paper's path with only the user's files: `pain3d generate --config paper-cpu` on the
FLAME-format test model (derived AU rig) and tiny Kandinsky 2.2 pipelines; the dataset trains
and exports; bad FLAME files are refused in one sentence before anything is written; `pain3d
check` lists what a config needs; a model stage checks its files on its own node."""
import json
import pickle

import numpy as np
import pytest

from actors.base import StageConfig
from tests.conftest import TINY_CONV
from tests.sandbox import one_error_line, run_cli


def _paper_cpu(flame_dir, tiny):
    return ["--config", "paper-cpu", f"face.flame_path={flame_dir / 'flame2023.pkl'}",
            f"face.flame_landmarks_path={flame_dir / 'mediapipe_landmark_embedding.npz'}",
            f"face.flame_uv_path={flame_dir / 'FLAME_texture.npz'}",
            f"generate.stages.neutral_face.model={tiny['controlnet']}",
            f"generate.stages.neutral_face.options.prior={tiny['prior']}",
            f"generate.stages.inpainting.model={tiny['inpaint']}",
            f"generate.stages.inpainting.options.prior={tiny['prior']}"]


@pytest.fixture(scope="module")
def tiny_kandinsky(tmp_path_factory):
    from actors.tiny_diffusion import make_tiny_kandinsky

    return make_tiny_kandinsky(tmp_path_factory.mktemp("tk"))


@pytest.fixture(scope="module")
def flame_data(ray_local, test_flame, tiny_kandinsky, tmp_path_factory):
    from cluster.cli import main

    out = tmp_path_factory.mktemp("fd") / "ds"
    assert main(["generate", "--out", str(out), "--identities", "3"]
                + _paper_cpu(test_flame[0], tiny_kandinsky)) == 0
    return out


def test_paper_cpu_generates_faces_the_qa_finds(flame_data):
    m = json.loads((flame_data / "manifest.json").read_text())
    assert m["counts"]["frames"] == 99
    assert m["qa"]["face_found"] >= 0.98, m["qa"]
    run = json.loads((flame_data / "run.json").read_text())
    rig = run["flame_rig"]
    assert rig["derived"]["rig_version"] >= 1 and min(rig["fit_r2"].values()) > 0.95
    import pyarrow.parquet as pq

    t = pq.read_table(flame_data / "frames" / "identity=000000.parquet").to_pydict()
    assert set(t["face_model"]) == {"flame"}
    params = np.asarray(t["expression_params"][0])
    assert params.shape == (103,)  # FLAME's 100 expression coefficients + the jaw
    # the 3-D ground truth remakes the mesh: a pain frame's parameters are not the neutral's
    pain = [i for i, e in enumerate(t["expression"]) if e > 0][0]
    assert np.abs(np.asarray(t["expression_params"][pain])[:100]).max() > 0.1


@pytest.mark.slow  # ~24 s: training on the FLAME dataset
def test_flame_dataset_trains_and_exports(flame_data, tmp_path, capsys):
    from cluster.config import load_config
    from train.run import train

    cfg = load_config("local", [f"train.storage={tmp_path}", "train.epochs=1",
                                "train.split=[0.34, 0.33, 0.33]"] + TINY_CONV)
    train(cfg, "student", str(flame_data), "f", distill=False)
    hist = json.loads((tmp_path / "f" / "history.json").read_text())
    assert np.isfinite(hist[0]["train_loss"])
    rc, err, _ = run_cli(["export", flame_data, tmp_path / "exp"], capsys)
    assert rc == 0, err[-1500:]
    assert any((tmp_path / "exp").rglob("*.png"))


@pytest.fixture(scope="module")
def raw_flame(test_flame):
    with open(test_flame[0] / "flame2023.pkl", "rb") as fh:
        return pickle.load(fh)


@pytest.mark.parametrize("case,needle", [
    ("shape", "shapedirs has shape (5000, 3, 400)"),
    ("format", "is not a FLAME model: it has no"),
    ("corrupt", "is not a readable FLAME pickle"),
    ("texture", "face.flame_uv_path"),
])
def test_bad_flame_files_exit_2_with_nothing_written(test_flame, tiny_kandinsky, raw_flame,
                                                     tmp_path, capsys, case, needle):
    args = _paper_cpu(test_flame[0], tiny_kandinsky)
    bad = tmp_path / "flame_bad.pkl"
    if case == "shape":
        bad.write_bytes(pickle.dumps(dict(raw_flame, shapedirs=np.zeros((5000, 3, 400)))))
    elif case == "format":
        bad.write_bytes(pickle.dumps({"v_template": raw_flame["v_template"]}))
    elif case == "corrupt":
        bad.write_bytes((test_flame[0] / "flame2023.pkl").read_bytes()[:50_000])
    if case == "texture":
        args.append(f"face.flame_uv_path={tmp_path / 'missing' / 'FLAME_texture.npz'}")
    else:
        args.append(f"face.flame_path={bad}")
    out = tmp_path / "never"
    rc, err, lines = run_cli(["generate", "--out", out, "--identities", "1"] + args, capsys)
    one_error_line(rc, err, lines, needle)
    assert not out.exists()


def test_check_lists_what_the_config_needs(test_flame, tiny_kandinsky, tmp_path, capsys):
    from cluster.cli import main

    args = _paper_cpu(test_flame[0], tiny_kandinsky)
    assert main(["check"] + args) == 0
    out = capsys.readouterr().out
    assert "everything the config needs is in place" in out
    assert "AU rig" in out and "derived" in out and "KandinskyV22InpaintPipeline" in out
    broken = tmp_path / "prior"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyV22Pipeline"}))
    assert main(["check"] + args + [f"face.flame_landmarks_path={tmp_path / 'none.npz'}",
                                    f"generate.stages.inpainting.options.prior={broken}"]) == 1
    out = capsys.readouterr().out
    assert "[   missing   ] FLAME MediaPipe landmark embedding" in out
    assert "[wrong-format ] prior" in out and "not a KandinskyV22PriorPipeline" in out
    assert "2 missing or wrong" in out


def test_model_stage_checks_its_files_on_its_node(tmp_path):
    import socket

    from actors.base import stage_actor

    cfg = StageConfig(backend="kandinsky", model=str(tmp_path / "no-such-decoder"),
                      options={"prior": str(tmp_path / "no-such-prior")})
    with pytest.raises(FileNotFoundError) as e:
        stage_actor("inpainting")(cfg, {"face": None})
    msg = str(e.value)
    assert f"inpainting on node {socket.gethostname()}" in msg
    assert "no-such-decoder" in msg and "copy it to each worker node" in msg
