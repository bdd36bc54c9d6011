"""pain3d demo: its checks (fast) and the whole loop on tiny settings with resume (slow)."""
import json

import pytest

from cluster.cli import main
from tests.conftest import TINY_CONV

TINY = ["render.size=48", "face.texture_size=128", "generate.write_meshes=false",
        "generate.stages.qa.backend=none", *TINY_CONV, "train.epochs=1"]


@pytest.mark.parametrize("args, says", [
    (["--identities", "3"], "--identities must be between 10 and 500"),
    (["--out", "s3://bucket/demo"], "the demo writes a local folder"),
])
def test_bad_demo_arguments(args, says, tmp_path, capsys):
    assert main(["demo", *args] if "--out" in args else
                ["demo", "--out", str(tmp_path / "d"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]
    assert not (tmp_path / "d").exists()


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("a user's file")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a pain3d demo folder" in err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_demo_settings_are_part_of_its_identity(tmp_path):
    """Another --identities or training config than the folder's demo: refused."""
    import argparse

    from cluster.config import ConfigError
    from cluster.demo import _state, demo_config

    def args(n, *over):
        return argparse.Namespace(out=str(tmp_path), identities=n, config="local", seed=None,
                                  overrides=list(over))

    d, cfg = demo_config(args(12))
    state = _state(d, cfg)
    (tmp_path / "demo.json").write_text(json.dumps(state))
    assert _state(*demo_config(args(12, "generate.ray.num_cpus=1"))) == state  # not content
    for other in (args(13), args(12, "train.epochs=3"), args(12, "render.size=64")):
        with pytest.raises(ConfigError, match="holds a demo made with other settings"):
            _state(*demo_config(other))


@pytest.mark.slow
def test_demo_runs_the_loop_and_resumes(tmp_path, ray_local, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--identities", "10", *TINY]) == 0
    cap = capsys.readouterr()
    state = json.loads((out / "demo.json").read_text())
    assert sorted(state["done"]) == sorted(["generate", "teacher", "student", "evaluate", "report"])
    page = out / "report" / "index.html"
    assert f"report: {page}" in cap.out and page.is_file()
    html = page.read_text()
    assert "<h3>teacher (teacher)</h3>" in html and "<h3>student (student)</h3>" in html
    for mode in ("teacher", "student"):
        m = json.loads((out / "runs" / mode / "eval-test" / "metrics.json").read_text())
        assert m["split"] == "test" and m["frames"] == 2 * 33  # 20% of 10 identities
        assert state["done"]["evaluate"][mode]["macro_auroc"] == m["metrics"]["macro_auroc"]
    # the student was distilled from this demo's teacher
    cfg = json.loads((out / "runs" / "student" / "config.json").read_text())
    assert cfg["teacher"] == state["done"]["teacher"]["checkpoint"]

    assert main(["demo", "--out", str(out), "--identities", "10", *TINY]) == 0  # all done
    assert capsys.readouterr().err.count("done before, skipped") == 5
    assert json.loads((out / "demo.json").read_text()) == state

    # an interrupted demo (the report not reached): only what is missing runs again
    del state["done"]["report"]
    (out / "demo.json").write_text(json.dumps(state))
    mtime = (out / "runs" / "student" / "eval-test" / "metrics.json").stat().st_mtime
    assert main(["demo", "--out", str(out), "--identities", "10", *TINY]) == 0
    err = capsys.readouterr().err
    assert err.count("done before, skipped") == 4 and "[5/5] report: done" in err
    assert (out / "runs" / "student" / "eval-test" / "metrics.json").stat().st_mtime == mtime


def test_a_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    """The demo's default output is ./demo: a re-run from the same folder must still find
    configs/demo.yaml (it once read the output folder as the config)."""
    from cluster.config import PRESET_DIR, resolve_preset

    monkeypatch.chdir(tmp_path)
    for name in ("demo", "local"):
        (tmp_path / name).mkdir()
        assert resolve_preset(name) == PRESET_DIR / f"{name}.yaml"
    (tmp_path / "mine.yaml").write_text("seed: 3\n")
    assert resolve_preset("mine.yaml").resolve() == tmp_path / "mine.yaml"
