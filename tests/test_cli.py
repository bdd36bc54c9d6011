import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cluster.cli import main
from cluster.config import ConfigError, load_config


def test_local_preset_loads_typed():
    cfg = load_config("local")
    assert cfg.render.size == 256 and cfg.render.yaws == (-30.0, 0.0, 30.0)
    assert cfg.face.model == "builtin" and cfg.pspi.levels[0] == 1
    cfg2 = load_config("local", ["render.size=128", "seed=7", "render.camera.distance=0.7"])
    assert cfg2.render.size == 128 and cfg2.seed == 7 and cfg2.render.camera.distance == 0.7
    assert cfg2.render.yaws == cfg.render.yaws  # untouched keys keep the preset's values
    assert cfg.hash() != cfg2.hash() and cfg.hash() == load_config("local").hash()


@pytest.mark.parametrize("overrides,match", [
    (["render.sise=3"], "unknown config key 'render.sise'"),
    (["render.size=abc"], "render.size' must be an integer"),
    (["render.size=0"], "'render.size' must be between 16 and 4,096"),
    (["face.model=nerf"], "unknown face.model"),
    (["seed=-1"], "'seed' must be between 0 and"),
    (["pspi.levels=[0, 20]"], "'pspi.levels\\[\\]' must be between 1 and 16"),
    (["demographics.mode=whatever"], "demographics.mode"),
    (["heatmap.mode=rainbow"], "heatmap.mode"),
    (["nonsense"], "section.key=value"),
])
def test_bad_config_values_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("local", overrides)


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="presets"):
        load_config("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("render: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


def test_preview_writes_a_labelled_sheet(tmp_path, capsys):
    out = tmp_path / "sheet.png"
    rc = main(["preview", "--identities", "2", "--out", str(out), "render.size=96",
               "face.texture_size=256"])
    assert rc == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    # 8 tiles per identity row, 2 rows (tile 96 + header and label strips)
    assert img.shape[1] == 8 * 96 and img.shape[0] > 2 * 96
    assert "wrote" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("args,match", [
    (["--identities", "0"], "--identities must be between 1 and 64"),
    (["--config", "nope"], "unknown preset"),
    (["face.model=flame"], "flame_path is not set"),
    (["face.model=flame", "face.flame_path=/no/such/file.pkl", "face.au_basis_path=/x.json"],
     "does not exist"),
])
def test_preview_bad_input_exits_nonzero_and_writes_nothing(tmp_path, capsys, args, match):
    out = tmp_path / "p.png"
    rc = main(["preview", "--out", str(out)] + args)
    assert rc == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1  # one sentence
    assert not out.exists()


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "cluster.cli", "--help"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "preview" in r.stdout


@pytest.mark.parametrize("preset", ["local", "paper", "tiny-diffusion"])
def test_presets_load_and_validate(preset):
    cfg = load_config(preset)
    st = cfg.generate.stages
    for name in st.MODEL_STAGES:
        sc = getattr(st, name)
        assert 1 <= sc.concurrency[0] <= sc.concurrency[1]
        if sc.num_gpus > 0:
            assert sc.num_cpus is not None  # GPU actors name their CPUs (RAY_NOTES trap)


def test_paper_preset_matches_the_paper_scale():
    cfg = load_config("paper")
    assert cfg.generate.identities * 11 * len(cfg.render.yaws) == 82_500
    assert cfg.generate.identities * 10 == 25_000
    st = cfg.generate.stages
    assert (st.rigging.backend, st.neutral_face.backend, st.texturing.backend,
            st.inpainting.backend) == ("nfr", "kandinsky", "hunyuan3d", "kandinsky")
    assert all(getattr(st, n).num_gpus > 0 for n in st.MODEL_STAGES if n != "qa")
    assert (st.qa.backend, st.qa.num_gpus) == ("mediapipe", 0)  # the read-back is CPU work


def test_signal_during_an_import_still_exits_130(monkeypatch, capsys):
    """A SIGTERM landing while a library builds a class reaches us as RuntimeError
    ('Error calling __set_name__ ...') with the KeyboardInterrupt inside; seen in CI."""
    import cluster.cli as cli

    class Interrupts:
        def __set_name__(self, owner, name):
            raise KeyboardInterrupt

    def import_in_progress(args):
        type("Manifest", (), {"paths": Interrupts()})

    real_parse = cli.parse_args

    def parse(parser, argv):
        args = real_parse(parser, argv)
        args.func = import_in_progress
        return args

    monkeypatch.setattr(cli, "parse_args", parse)
    assert cli.main(["preview", "--out", "x.png"]) == 130
    assert "interrupted" in capsys.readouterr().err
