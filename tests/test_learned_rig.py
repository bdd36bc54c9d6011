"""Paper 001's learned rig: the range regulariser and soft labels, bounds, that a rig trained
on one AU moves that AU's region, checkpoints, the rigging backend, the Ray Train job."""
import json

import numpy as np
import pytest
import torch

from actors.learned_rig import LearnedRig, RigSpec, make_rig_net, save_rig
from faces.au import PSPI_AUS
from train.config import RigConfig
from train.rig import Pairs, fit_pairs, range_penalty, soft_labels


def _pairs(model, levels: dict[str, list[float]], repeat: int = 1) -> Pairs:
    """Pairs of the built-in model for AU vectors given per AU (the others 0)."""
    rows = []
    for au, values in levels.items():
        rows += [{au: v} for v in values]
    rows = rows * repeat
    aus = np.array([[r.get(a, 0.0) for a in PSPI_AUS] for r in rows], np.float32)
    params = np.stack([model.expression_params(r) for r in rows]).astype(np.float32)
    return Pairs(aus, params, np.arange(len(rows)) % 5, "builtin")


def test_range_penalty_is_the_l1_excess_outside_the_bounds():
    lower, upper = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 2.0])
    inside = torch.tensor([[0.5, 1.0], [-1.0, 2.0]])
    assert float(range_penalty(inside, lower, upper)) == 0.0
    x = torch.tensor([[1.5, -0.25], [0.0, 3.0]], requires_grad=True)
    # row 1: 0.5 above + 0.25 below; row 2: 1.0 above -> mean of the rows' L1 norms
    assert float(range_penalty(x, lower, upper).detach()) == pytest.approx((0.75 + 1.0) / 2)
    range_penalty(x, lower, upper).backward()
    assert x.grad.tolist() == [[0.5, -0.5], [0.0, 0.5]]  # pushes each excess back inside


def test_soft_labels_shift_and_spread_in_facs_levels():
    rc = RigConfig(soft_label_mean=-0.5, soft_label_std=0.5)
    scale = torch.tensor([5.0, 5, 5, 5, 5, 1])
    levels = torch.tensor([[2.0, 0, 5, 1, 3, 1]]).repeat(20000, 1)
    y = soft_labels(levels, rc, scale, torch.Generator().manual_seed(0))
    back = (y + 1) / 2 * scale  # to levels
    shift = (back - levels).mean(0)
    spread = (back - levels).std(0)
    assert torch.allclose(shift[:5], torch.full((5,), -0.5), atol=0.02)
    assert torch.allclose(spread[:5], torch.full((5,), 0.5), atol=0.02)
    # the binary AU43 (0-1) gets a fifth of the noise: one level of 0-5 is its whole range
    assert float(shift[5]) == pytest.approx(-0.1, abs=0.01)
    off = soft_labels(levels[:2], RigConfig(soft_label_std=0.0), scale, None)
    assert torch.allclose(off, 2 * levels[:2] / scale - 1)


@pytest.mark.parametrize("model", ["cgan", "caae"])
def test_generated_parameters_stay_inside_the_observed_bounds(builtin_model, model):
    pairs = _pairs(builtin_model, {"AU4": [0, 1, 2, 3], "AU9": [1, 2]}, repeat=4)
    rig = fit_pairs(pairs, RigConfig(model=model, eval_every=20, hidden=32, noise_dim=8,
                                     latent_dim=4), rounds=1)
    lo, hi = pairs.params.min(0), pairs.params.max(0)
    assert rig.lower.tolist() == lo.tolist() and rig.upper.tolist() == hi.tolist()
    rng = np.random.default_rng(0)
    aus = np.concatenate([rng.uniform(0, 5, (200, 6)), np.full((5, 6), 5.0),
                          np.full((5, 6), 20.0)]).astype(np.float32)  # far outside training
    src = pairs.params[rng.integers(0, len(pairs.params), len(aus))]
    raw = rig.generate(aus, source=src, seed=1, clip=False)
    out = rig.generate(aus, source=src, seed=1)
    assert np.all(out >= lo) and np.all(out <= hi)
    assert np.any((raw < lo) | (raw > hi))  # an untrained-looking rig does stray: the clip holds
    inside = (raw >= lo) & (raw <= hi)
    assert np.array_equal(out[inside], raw[inside])  # in bounds: untouched


@pytest.mark.parametrize("model,extra", [("cgan", {}), ("caae", {"retarget": True})])
def test_a_rig_trained_on_one_au_moves_that_aus_region_most(builtin_model, model, extra):
    from train.rig_eval import region_matrices

    pairs = _pairs(builtin_model, {"AU9": [0, 1, 2, 3, 4, 5]}, repeat=8)
    rig = fit_pairs(pairs, RigConfig(model=model, eval_every=300, hidden=64, **extra), rounds=1)
    m = np.asarray(region_matrices(rig, builtin_model, seed=0, draws=4)["learned"])
    row = m[PSPI_AUS.index("AU9")]
    assert row.argmax() == PSPI_AUS.index("AU9"), row
    assert row[PSPI_AUS.index("AU9")] > 3 * np.delete(row, PSPI_AUS.index("AU9")).max(), row


def test_checkpoint_round_trip_and_clear_errors(tmp_path):
    spec = RigSpec("cgan", 3, 16, 4, 2, [0, 0, 0], [1, 1, 1], [-1, -1, -1], [1, 1, 1], "builtin")
    torch.manual_seed(0)
    net = make_rig_net(spec)
    save_rig(net, spec, tmp_path / "ckpt" / "model")
    rig = LearnedRig.load(tmp_path / "ckpt")  # the checkpoint folder or its model/
    again = LearnedRig(net, spec)
    aus = np.ones((4, 6), np.float32)
    assert np.array_equal(rig.generate(aus, seed=3), again.generate(aus, seed=3))
    assert not np.array_equal(rig.generate(aus, seed=3), rig.generate(aus, seed=4))
    with pytest.raises(FileNotFoundError, match="is not a learned-rig checkpoint"):
        LearnedRig.load(tmp_path)
    (tmp_path / "ckpt" / "model" / "rig.json").write_text("{")
    with pytest.raises(ValueError, match="is not a learned-rig spec"):
        LearnedRig.load(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="unknown train.rig.model"):
        make_rig_net(RigSpec(**{**spec.__dict__, "model": "vae"}))


def test_the_rigging_backend_refuses_a_rig_of_another_face_model(tmp_path):
    from actors.base import StageConfig
    from actors.rigging import LearnedRigBackend
    from faces.models import FaceConfig

    with pytest.raises(ValueError, match="needs rigging.model"):
        LearnedRigBackend(StageConfig(backend="learned"), {"face": FaceConfig()}, "cpu")
    spec = RigSpec("cgan", 103, 16, 4, 2, [0.0] * 103, [1.0] * 103, [-1.0] * 103, [1.0] * 103,
                   "flame")
    save_rig(make_rig_net(spec), spec, tmp_path)
    with pytest.raises(ValueError, match="parameters of the flame face model"):
        LearnedRigBackend(StageConfig(backend="learned", model=str(tmp_path)),
                          {"face": FaceConfig()}, "cpu")


def test_the_rigging_backend_poses_generated_parameters(builtin_model, tmp_path):
    from actors.base import StageConfig
    from actors.rigging import LearnedRigBackend
    from faces.models import FaceConfig
    from faces.rig import RIG_AUS

    pairs = _pairs(builtin_model, {"AU4": [0, 2, 4], "AU10": [1, 3, 5]}, repeat=3)
    pairs.params[:, :] = np.stack([builtin_model.expression_params(
        dict(zip(PSPI_AUS, a))) for a in pairs.aus])
    rig = fit_pairs(pairs, RigConfig(model="cgan", eval_every=50, hidden=32), rounds=1)
    save_rig(rig.net, rig.spec, tmp_path)
    backend = LearnedRigBackend(StageConfig(backend="learned", model=str(tmp_path)),
                                {"face": FaceConfig()}, "cpu")
    aus = np.zeros((2, 3, len(RIG_AUS)), np.float32)
    aus[:, 1, RIG_AUS.index("AU4")] = 4.0
    aus[:, 2, RIG_AUS.index("AU10")] = 5.0
    shape = np.zeros((2, builtin_model.n_shape), np.float32)
    out = backend({"shape": shape, "aus": aus, "seed": np.array([7, 7]),
                   "identity": np.array([0, 1])})
    v, p = out["vertices"], out["expression_params"]
    assert v.shape == (2, 3, builtin_model.template.n_vertices, 3) and p.shape == (2, 3, 9)
    assert np.array_equal(v[:, 0], np.stack([builtin_model.neutral(s) for s in shape]))
    assert not np.allclose(v[:, 1], v[:, 0])
    assert np.allclose(v[0, 1], builtin_model.posed_params(shape[0], p[0, 1]), atol=1e-6)
    assert not np.array_equal(p[0, 1:], p[1, 1:])  # identities draw their own z
    assert np.all(p >= rig.lower) and np.all(p <= rig.upper)


@pytest.mark.slow  # a Ray Train job / a generation run
def test_train_rig_on_two_ddp_workers_and_evaluate(data10, ray_local, tmp_path):
    from cluster.config import load_config
    from train.rig import train_rig

    cfg = load_config("local", ["train.num_workers=2", "train.cpus_per_worker=0.5",
                                "train.use_gpu=false", f"train.storage={tmp_path}",
                                "train.rig.iterations=60", "train.rig.eval_every=30",
                                "train.rig.hidden=32", "train.rig.diversity_samples=8"],
                      layers=["rig"])
    res, report = train_rig(cfg, data10, "rig", show_progress=False)
    assert [h["epochs_done"] for h in res.history] == [1, 2]
    assert [h["epoch"] for h in res.history] == [1, 2]  # rounds, numbered from 1
    assert [h["iterations"] for h in res.history] == [30, 60]
    assert all(h["replicas_in_sync"] for h in res.history)  # both replicas stepped alike
    run = tmp_path / "rig"
    saved = json.loads((run / "rig_eval.json").read_text())
    assert saved["generated"]["mae_mean"] == pytest.approx(report["generated"]["mae_mean"])
    assert set(saved["real"]["mae"]) == set(PSPI_AUS) and saved["model"] == "cgan"
    assert saved["real"]["mae_mean"] < saved["generated"]["mae_mean"]  # 60 steps: not yet good
    assert (run / "rig_regions.png").stat().st_size > 1000
    assert "| generated |" in (run / "rig_eval.md").read_text()
    rig = LearnedRig.load(res.best_checkpoint)
    assert rig.spec.face_model == "builtin" and rig.spec.n_params == 9
    cfg.train.rig.iterations = 90  # --resume: one more round from the last checkpoint
    again, _ = train_rig(cfg, data10, "rig", resume=True, show_progress=False)
    assert [h["epochs_done"] for h in again.history] == [1, 2, 3]
    assert again.history[:2] == res.history


@pytest.mark.slow  # a Ray Train job / a generation run
def test_generate_with_the_learned_rig_writes_a_complete_dataset(builtin_model, ray_local,
                                                                   tmp_path):
    import pyarrow.dataset as pads

    from cluster.cli import main
    from faces.au import pspi
    from tests.conftest import tiny_args

    pairs = _pairs(builtin_model, {a: [0, 1, 2, 3, 4, 5] for a in PSPI_AUS[:5]}, repeat=2)
    rig = fit_pairs(pairs, RigConfig(model="cgan", eval_every=100, hidden=32), rounds=1)
    save_rig(rig.net, rig.spec, tmp_path / "rig" / "model")
    out = tmp_path / "ds"
    assert main(["generate", "--out", str(out), *tiny_args(2, 48, 128),
                 "generate.stages.rigging.backend=learned",
                 f"generate.stages.rigging.model={tmp_path / 'rig'}"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["frames"] == 2 * 11 * 3 and m["counts"]["heatmaps"] == 2 * 10 * 3
    rows = pads.dataset(str(out / "frames")).to_table(
        columns=["expression", "view", "pspi", "expression_params", *PSPI_AUS]).to_pylist()
    assert all(r["pspi"] == int(pspi(r)) for r in rows)  # labels: the requested AUs
    gen = np.array([r["expression_params"] for r in rows if r["expression"] > 0])
    req = np.array([[r[a] for a in PSPI_AUS] for r in rows if r["expression"] > 0])
    assert not np.allclose(gen[:, :6], req)  # the rig's own parameters, not the request
    assert np.all(gen >= rig.lower) and np.all(gen <= rig.upper)
    assert all(not any(r["expression_params"]) for r in rows if r["expression"] == 0)


def test_generate_refuses_a_missing_rig_checkpoint_before_ray(tmp_path, capsys):
    from cluster.cli import main

    rc = main(["generate", "--out", str(tmp_path / "ds"), "--identities", "1",
               "generate.stages.rigging.backend=learned",
               f"generate.stages.rigging.model={tmp_path / 'nope'}"])
    assert rc != 0 and "is not a learned-rig checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()
