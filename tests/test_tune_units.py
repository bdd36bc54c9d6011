"""The sweep's config, search space and outputs, without Ray."""
import numpy as np
import pytest
from PIL import Image

from cluster.config import ConfigError, load_config
from pipelines import storage
from train.losses import LossWeights
from tune.sweep import config_weights, search_space, study_from_rows, with_weights, write_plots


def test_sweep_file_layers_over_the_preset():
    cfg = load_config("local", ["tune.samples=5"], layers=["sweep"])
    assert set(cfg.tune.space) == {"pspi", "au", "pspi_distill", "au_distill", "feature_distill",
                                   "temperature"}
    preset = load_config("local").train.model
    assert cfg.tune.samples == 5 and cfg.train.model == preset  # the preset's model kept
    assert config_weights(cfg) == pytest.approx(
        {k: getattr(LossWeights(), k) for k in cfg.tune.space})  # the warm start = paper
    for k, r in cfg.tune.space.items():  # the paper's values lie inside the space
        assert r.low < getattr(LossWeights(), k) < r.high
    space = search_space(cfg)
    assert space["pspi_distill"].lower == 0.01 and space["pspi_distill"].upper == 1.0
    rng = np.random.default_rng(0)
    draws = [space["temperature"].sample(random_state=rng) for _ in range(200)]
    assert 1.0 <= min(draws) and max(draws) <= 8.0 and np.std(draws) > 1.0
    c = with_weights(cfg, {"temperature": 2.5})
    assert c.train.weights.temperature == 2.5 and cfg.train.weights.temperature == 4.0


@pytest.mark.parametrize("override,match", [
    ("tune.space.lr={dist: uniform, low: 0, high: 1}", "unknown tune.space.lr"),
    ("tune.space.au={dist: normal, low: 0.1, high: 1}", "tune.space.au.dist"),
    ("tune.space.au={dist: loguniform, low: 0, high: 1}", "low > 0"),
    ("tune.space.au={dist: uniform, low: 2, high: 1}", "low < high"),
    ("tune.samples=0", "tune.samples"),
    ("tune.reduction_factor=1", "tune.reduction_factor"),
])
def test_bad_sweep_settings_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("local", [override], layers=["sweep"])


def test_plots_from_trials(tmp_path):
    cfg = load_config("local", layers=["sweep"])
    rng = np.random.default_rng(1)
    rows = []
    for i in range(6):
        row = {k: float(rng.uniform(r.low, r.high)) for k, r in cfg.tune.space.items()}
        row["val_macro_auroc"] = 0.5 + 0.4 * row["feature_distill"] / 5  # depends on one knob
        rows.append(row)
    study = study_from_rows(rows, cfg)
    assert len(study.trials) == 6 and study.best_value == max(r["val_macro_auroc"] for r in rows)
    loc = storage.resolve(str(tmp_path))
    write_plots(loc, "s", rows, cfg)
    for png in ("history.png", "importance.png"):
        im = np.asarray(Image.open(tmp_path / "s" / png).convert("L"), float)
        assert im.shape[1] >= 600 and im.std() > 5
    # one trial: no importances to compute, a picture that says so instead of a crash
    write_plots(loc, "one", rows[:1], cfg)
    assert (tmp_path / "one" / "importance.png").stat().st_size > 1000


@pytest.mark.parametrize("epochs,freeze,grace,want", [
    (10, 5, 2, 6),  # the paper preset: first rung after one unfrozen epoch, not at 2
    (10, 0, 2, 2), (10, 1, 3, 3), (6, 5, 2, 6)])
def test_asha_never_judges_a_frozen_trial(epochs, freeze, grace, want):
    from tune.sweep import asha_grace

    cfg = load_config("local", [f"train.epochs={epochs}", f"train.freeze_backbone_epochs={freeze}",
                                f"tune.grace_epochs={grace}"], layers=["sweep"])
    assert asha_grace(cfg) == want and want > freeze


def test_a_sweep_of_only_frozen_epochs_is_refused(tmp_path, capsys):
    from cluster.cli import main

    rc = main(["tune", "--data", str(tmp_path), "--teacher", str(tmp_path), "train.epochs=3",
               "train.freeze_backbone_epochs=3", f"tune.storage={tmp_path}"])
    err = capsys.readouterr().err
    assert rc == 2 and "ASHA would judge trials whose backbone never trained" in err, err
