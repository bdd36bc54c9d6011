"""Issue 10's cases, through the command line: exit 2, one line naming the key or path, and
no file outside pain3d's own outputs changed (snapshot of a sandbox with a user's files)."""
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cluster.cli import main
from tests.conftest import TINY_TRAIN, tiny_args
from tests.sandbox import (assert_kept, make_user_files, one_error_line as _one_line,
                           run_cli as _run, snapshot)

DATA10_ARGS = tiny_args(10, 48, 128)  # as conftest's data10 was made


@pytest.fixture
def sandbox(tmp_path):
    return make_user_files(tmp_path / "sb")


@pytest.fixture(scope="module")
def d3(data10, tmp_path_factory):
    """A private copy of the tiny dataset that tests may try (and fail) to damage."""
    dest = tmp_path_factory.mktemp("d3") / "d3"
    shutil.copytree(data10, dest)
    return dest


# ---- deletes of data pain3d did not make ----

@pytest.mark.parametrize("name", ["../victim", ".", "..", "a/b"])
def test_train_name_is_a_plain_name(name, d3, sandbox, capsys):
    before = snapshot(sandbox)
    rc, err, lines = _run(["train", "teacher", "--data", d3, "--name", name,
                           f"train.storage={sandbox / 'runs'}", "train.split=[1,0,0]",
                           "train.epochs=1"], capsys)
    _one_line(rc, err, lines, f"run name {name!r} is not a plain name")
    assert_kept(before, sandbox)


@pytest.mark.parametrize("argv", [["tune", "--name", "../victim"], ["ablate", "--name", "."]])
def test_sweep_and_ablation_names_are_plain(argv, d3, sandbox, capsys):
    before = snapshot(sandbox)
    rc, err, lines = _run(argv + ["--data", d3, f"train.storage={sandbox}",
                                  f"tune.storage={sandbox}"], capsys)
    _one_line(rc, err, lines, "is not a plain name")
    assert_kept(before, sandbox)


@pytest.mark.parametrize("where", ["itself", "parent", "inside"])
def test_export_never_touches_its_input(where, d3, capsys):
    out = {"itself": d3, "parent": d3.parent, "inside": d3 / "frames" / "release"}[where]
    before = snapshot(d3.parent)
    rc, err, lines = _run(["export", d3, out, "--overwrite"], capsys)
    _one_line(rc, err, lines, "the input", "choose a folder outside it")
    assert_kept(before, d3.parent)


def test_export_overwrites_only_its_own_export(d3, sandbox, tmp_path, capsys):
    before = snapshot(sandbox)
    rc, err, lines = _run(["export", d3, sandbox, "--overwrite"], capsys)
    _one_line(rc, err, lines, "no pain3d marker")
    assert_kept(before, sandbox)
    out = tmp_path / "release"
    assert _run(["export", d3, out], capsys)[0] == 0
    assert _run(["export", d3, out, "--overwrite"], capsys)[0] == 0  # its own: replaced
    assert len(list(out.glob("images/*"))) == 330
    (out / "images" / "extra.png").write_bytes(b"a user's file")  # issue 27 D1: never deleted
    before = snapshot(out)
    rc, err, lines = _run(["export", d3, out, "--overwrite"], capsys)
    _one_line(rc, err, lines, "images/extra.png was added after pain3d wrote")
    assert snapshot(out) == before


def test_report_never_replaces_a_user_folder_or_the_dataset(d3, sandbox, capsys):
    before = snapshot(sandbox)
    rc, err, lines = _run(["report", d3, "--out", sandbox], capsys)
    _one_line(rc, err, lines, "no pain3d marker")
    assert_kept(before, sandbox)
    rc, err, lines = _run(["report", d3, "--out", d3], capsys)
    _one_line(rc, err, lines, "holds the input")
    for _ in range(2):  # the default report folder is rebuilt in place
        assert _run(["report", d3], capsys)[0] == 0
    assert (d3 / "report" / "index.html").is_file() and (d3 / "frames").is_dir()


def test_first_generate_refuses_a_folder_with_the_users_frames(sandbox, capsys):
    before = snapshot(sandbox)
    rc, err, lines = _run(["generate", "--identities", "1", "--out", sandbox], capsys)
    _one_line(rc, err, lines, "already holds frames/, textured_meshes/ that pain3d did not write")
    assert_kept(before, sandbox)


def test_failed_first_generate_removes_only_its_own_files(ray_local, tmp_path, capsys,
                                                          standin_python, standin_models):
    """A first run that fails inside Ray (Hunyuan3D's worker finds no code in options.repo)
    leaves the user's files beside it as they were and nothing of its own."""
    sb = tmp_path / "sb"
    sb.mkdir()
    (sb / "thesis.tex").write_text("chapter 1")
    before = snapshot(sb)
    rc, err, lines = _run(["generate", "--identities", "1", "--out", sb, "render.size=32",
                           "face.texture_size=64", "generate.stages.texturing.backend=hunyuan3d",
                           f"generate.stages.texturing.model={standin_models[1]}",
                           f"generate.stages.texturing.options={{python: {standin_python}, "
                           f"repo: {tmp_path}}}"],
                          capsys)
    assert rc == 2 and len(lines) == 1, err[-2000:]
    assert_kept(before, sb)


# ---- numbers, files and messages ----

def test_truncated_shard_is_named_with_its_fix_and_regenerated(d3, ray_local, capsys):
    shard = sorted((d3 / "frames").glob("*.parquet"))[3]
    good = pq.read_table(shard)
    shard.write_bytes(shard.read_bytes()[:200])
    rc, err, lines = _run(["report", d3], capsys)
    _one_line(rc, err, lines, shard.name, "re-run pain3d generate")
    rc = main(["generate", "--out", str(d3), *DATA10_ARGS])
    assert rc == 0
    again = pq.read_table(shard)
    assert again.num_rows == good.num_rows == 33
    assert again.column("sample_id").to_pylist() == good.column("sample_id").to_pylist()


@pytest.mark.parametrize("text,needle", [("", "is empty"),
                                         ("render:\n  size: [1\n", "line 3, column 1"),
                                         ("render:\n\tsize: 64\n", "line 2, column 1")])
def test_config_file_problems_are_one_line(text, needle, tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    rc, err, lines = _run(["preview", "--config", f, "--out", tmp_path / "p.png"], capsys)
    _one_line(rc, err, lines, str(f), needle)


def test_config_folder_is_named_as_a_folder(tmp_path, capsys):
    rc, err, lines = _run(["preview", "--config", tmp_path, "--out", tmp_path / "p.png"], capsys)
    _one_line(rc, err, lines, f"--config {tmp_path} is a folder")


def test_preview_out_folder_leaves_nothing(tmp_path, capsys):
    before = snapshot(tmp_path)
    rc, err, lines = _run(["preview", "--identities", "1", "--out", tmp_path], capsys)
    _one_line(rc, err, lines, "is a folder; give the PNG file")
    assert snapshot(tmp_path) == before


def test_demographics_row_merges_and_totals_must_agree(tmp_path, capsys):
    from cluster.config import ConfigError, load_config

    cfg = load_config("local", ["demographics.table.age_group={young: 2000, elderly: 500}"])
    assert cfg.demographics.table["gender"] == {"man": 1723, "woman": 777}  # kept
    assert cfg.demographics.table["age_group"] == {"young": 2000, "elderly": 500}
    with pytest.raises(ConfigError, match="totals must agree.*age_group 15, gender 2,?500"):
        load_config("local", ["demographics.table.age_group={young: 10, elderly: 5}"])
    rc, err, lines = _run(["preview", "--out", tmp_path / "p.png",
                           "demographics.table.gender={man: 2400, robot: 100}"], capsys)
    _one_line(rc, err, lines, "demographics.table.gender.robot")


def test_invalid_model_config_is_named(d3, tmp_path, capsys):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "model.pt").write_bytes(b"")
    (ck / "model_config.json").write_text("{not json")
    rc, err, lines = _run(["evaluate", "--checkpoint", ck, "--data", d3, "--split", "all",
                           "--mode", "teacher"], capsys)
    _one_line(rc, err, lines, str(ck / "model_config.json"), "not valid JSON")


# ---- late failures, evaluate, resume, submit ----

def test_empty_split_is_refused_before_ray(d3, sandbox, monkeypatch, capsys):
    import cluster.runtime

    def no_ray(*a, **k):
        raise AssertionError("Ray was started before the split was checked")

    monkeypatch.setattr(cluster.runtime, "init_ray", no_ray)
    before = snapshot(sandbox)
    rc, err, lines = _run(["train", "teacher", "--data", d3, "--name", "t",
                           f"train.storage={sandbox / 'runs'}", "train.split=[1,0,0]"], capsys)
    _one_line(rc, err, lines, "leaves the val split empty for the 10 identities")
    assert_kept(before, sandbox)


def test_resume_of_a_run_that_never_ran_is_refused(d3, sandbox, capsys):
    before = snapshot(sandbox)
    rc, err, lines = _run(["train", "teacher", "--data", d3, "--resume", "--name", "never-ran",
                           f"train.storage={sandbox / 'runs'}"], capsys)
    _one_line(rc, err, lines, "no run 'never-ran'", "without --resume")
    assert_kept(before, sandbox, ["runs"])


def test_evaluate_without_a_split_needs_split_all(d3, tmp_path, capsys):
    from train.loop import save_model
    from train.model import ModelConfig, ViTPain

    ck = tmp_path / "bare"
    save_model(ViTPain(ModelConfig(img_size=32, backbone_kwargs={"depth": 1, "patch_size": 8},
                                   head_hidden=16), weights_follow=True), ck)
    rc, err, lines = _run(["evaluate", "--checkpoint", ck, "--data", d3, "--split", "val",
                           "--mode", "teacher"], capsys)
    _one_line(rc, err, lines, "records no split", "--split all")
    assert not (tmp_path / "eval-val").exists()
    rc, err, _ = _run(["evaluate", "--checkpoint", ck, "--data", d3, "--split", "all",
                       "--mode", "teacher", "--out", tmp_path / "ev"], capsys)
    assert rc == 0, err[-2000:]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["frames"] == 330


@pytest.mark.parametrize("argv,needle", [
    (["generate", "--identities", "0"], "'generate.identities' must be between 1"),
    (["train", "teacher", "--data", "x", "--name", "../v"], "is not a plain name"),
    (["train", "teacher", "--data", "x", "render.size=.nan"], "'render.size' must be a finite"),
])
def test_submit_checks_the_whole_command_line_first(argv, needle, capsys):
    from tests.raycluster import free_port

    rc, err, lines = _run(["submit", "--address", f"http://127.0.0.1:{free_port()}", *argv],
                          capsys)
    _one_line(rc, err, lines, needle)  # not "cannot reach the Ray cluster"


def test_tiny_training_flags_still_pass(d3, tmp_path, capsys):
    """The checks refuse only what is wrong: a sane tiny run's config passes them."""
    from cluster.cli import build_parser, parse_args
    from cluster.train_commands import train_config

    args = parse_args(build_parser(), ["train", "teacher", "--data", str(d3), "--name", "ok",
                                       f"train.storage={tmp_path}"] + TINY_TRAIN)
    assert train_config(args).train.model.img_size == 32 and args.name == "ok"
    assert not Path(tmp_path / "ok").exists()
