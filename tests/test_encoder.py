"""Paper 002's image -> 3D encoder: its head, loss, checkpoint, and the Ray Train job (2 DDP
workers) learning parameters that correlate with the truth on held-out identities."""
import json

import numpy as np
import pytest
import torch

from tests.conftest import TINY_CONV
from train.config import EncoderConfig, ModelConfig
from train.encoder import (ExpressionEncoder, IntensityHead, encoder_loss, load_encoder,
                           save_encoder)


def _tiny(n_shape=3) -> ExpressionEncoder:
    cfg = ModelConfig(backbone="resnet18", img_size=32,
                      backbone_kwargs={"channels": [8, 8, 16, 16]})
    torch.manual_seed(0)
    return ExpressionEncoder(cfg, 4, n_shape, 16, weights_follow=True)


def test_intensity_head_is_a_four_layer_mlp_with_bounded_intensities():
    head = IntensityHead(7, 32)
    linears = [m for m in head.net if isinstance(m, torch.nn.Linear)]
    norms = [m for m in head.net if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(linears) == 4 and len(norms) == 3
    out = head(torch.randn(5, 7) * 100)
    assert out["pspi_logits"].shape == (5, 17)
    assert torch.all((out["pspi_reg"] >= 0) & (out["pspi_reg"] <= 1))
    assert torch.all(out["au"] >= 0) and torch.all(out["au"][:, :5] <= 5)
    assert torch.all(out["au"][:, 5] <= 1)  # AU43 is binary


def test_loss_is_the_weighted_sum_of_its_terms_on_standardised_targets():
    m = _tiny()
    m.set_stats({"expression_mean": np.ones(4), "expression_std": np.full(4, 2.0),
                 "shape_mean": np.zeros(3), "shape_std": np.ones(3)})
    b = {"expression_params": torch.full((2, 4), 3.0), "shape_params": torch.zeros(2, 3),
         "pspi": torch.tensor([0, 16]), "aus": torch.zeros(2, 6)}
    out = {"expression": torch.ones(2, 4), "shape": torch.zeros(2, 3),
           **m.intensity.eval()(torch.zeros(2, 7))}
    ec = EncoderConfig(expression=2.0, shape_weight=5.0, pspi_ce=0.0, intensity_mse=0.0)
    loss, parts = encoder_loss(m, out, b, ec)
    assert parts["loss_expression"] == pytest.approx(0.0)  # (3 - 1) / 2 = 1 = the prediction
    assert parts["loss_shape"] == pytest.approx(0.0)
    b["expression_params"] = torch.full((2, 4), 5.0)  # standardised 2: error 1 per value
    loss, parts = encoder_loss(m, out, b, ec)
    assert parts["loss_expression"] == pytest.approx(1.0)
    assert float(loss.detach()) == pytest.approx(2.0)
    assert parts["loss_pspi_ce"] > 0 and parts["loss_intensity"] > 0  # computed, weighted 0


def test_checkpoint_round_trip_keeps_the_standardisation(tmp_path):
    m = _tiny()
    m.set_stats({"expression_mean": np.arange(4.0), "expression_std": np.full(4, 3.0),
                 "shape_mean": np.zeros(3), "shape_std": np.ones(3)})
    save_encoder(m, tmp_path / "ck" / "model", "builtin")
    back, face = load_encoder(tmp_path / "ck")
    x = torch.randn(2, 3, 32, 32)
    m.eval()
    assert face == "builtin"
    assert torch.allclose(back.raw(back(x)), m.raw(m(x)))
    assert torch.equal(back.expression_mean, torch.arange(4.0))
    with pytest.raises(FileNotFoundError, match="is not an encoder checkpoint"):
        load_encoder(tmp_path)


def test_encoder_learns_parameters_of_held_out_identities(data10):
    """The model and its loss, trained in one process (600 steps, 20 s): predictions for two
    identities it never saw correlate with their true expression parameters."""
    import pyarrow.dataset as pads

    from train.data import decode_batch
    from train.encoder_job import param_metrics

    t = pads.dataset(f"{data10}/frames").to_table().to_pydict()
    b = {k: torch.as_tensor(v) for k, v in decode_batch(t, 48).items() if k != "heatmap"}
    for k in ("expression_params", "shape_params"):
        b[k] = torch.as_tensor(np.stack([np.asarray(v, np.float32) for v in t[k]]))
    held = b["identity"] >= 8
    cfg = ModelConfig(backbone="resnet18", img_size=48,
                      backbone_kwargs={"channels": [16, 16, 32, 32]})
    torch.manual_seed(0)
    m = ExpressionEncoder(cfg, 9, 26, 64, weights_follow=True)
    m.set_stats({f"{k}_{s}": getattr(b[f"{k}_params"][~held], s)(0).clamp_min(1e-6)
                 if s == "std" else b[f"{k}_params"][~held].mean(0)
                 for k in ("expression", "shape") for s in ("mean", "std")})
    opt = torch.optim.AdamW(m.parameters(), 1e-3, weight_decay=0.05)
    rng, train_rows = np.random.default_rng(0), np.flatnonzero(~held.numpy())
    first = None
    for step in range(600):
        i = torch.as_tensor(rng.choice(train_rows, 32))
        batch = {k: v[i] for k, v in b.items()}
        loss, parts = encoder_loss(m, m(batch["image"]), batch, EncoderConfig())
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or parts
    assert parts["loss_expression"] < 0.8 * first["loss_expression"]
    assert parts["loss_shape"] < 0.5 * first["loss_shape"]
    m.eval()
    with torch.no_grad():
        pred = m.raw(m(b["image"][held])).numpy()
    true = b["expression_params"][held].numpy()
    r = param_metrics(pred, true, m.expression_std.numpy())
    assert r["varying"] == 6 and r["r"] > 0.2, r  # the six PSPI AUs vary; the extras do not
    shuffled = param_metrics(pred[np.random.default_rng(1).permutation(len(pred))], true,
                             m.expression_std.numpy())
    assert shuffled["r"] < r["r"] - 0.15  # it is the frame's own face that is read


@pytest.mark.slow  # a Ray Train job / a generation run
def test_train_encoder_on_two_ddp_workers(data10, ray_local, tmp_path):
    from cluster.config import load_config
    from train.encoder_job import train_encoder

    cfg = load_config("local", [*TINY_CONV, "train.num_workers=2", f"train.storage={tmp_path}",
                                "train.model.img_size=48", "train.epochs=4",
                                "train.batch_size=8"], layers=["encoder"])
    res, r = train_encoder(cfg, data10, "enc", show_progress=False)
    h = res.history
    assert [e["epochs_done"] for e in h] == [1, 2, 3, 4]
    assert h[-1]["loss_shape"] < h[0]["loss_shape"] and h[-1]["train_loss"] < h[0]["train_loss"]
    assert {"val_expression_rmse", "val_expression_r", "val_pspi_macro_auroc"} <= set(h[-1])
    saved = json.loads((tmp_path / "enc" / "encoder_eval.json").read_text())
    assert saved["expression_rmse"] == pytest.approx(r["expression_rmse"])
    assert saved["frames"] == 33 and r["vertex_mean_baseline_mm"] > 0  # one test identity
    assert (tmp_path / "enc" / "encoder_scatter.png").stat().st_size > 1000
    assert "| true parameters |" in (tmp_path / "enc" / "encoder_eval.md").read_text()
    model, face = load_encoder(res.best_checkpoint)
    assert face == "builtin" and model.expression.out_features == 9 and model.n_shape == 26
    cfg.train.epochs = 5  # --resume: one more epoch from the last checkpoint
    again, _ = train_encoder(cfg, data10, "enc", resume=True, show_progress=False)
    assert [e["epochs_done"] for e in again.history] == [1, 2, 3, 4, 5]
    assert again.history[:4] == h


def test_param_metrics_skip_a_constant_answer_without_warnings():
    import warnings

    from train.encoder_job import param_metrics

    rng = np.random.default_rng(0)
    true = rng.normal(size=(50, 3))
    pred = np.stack([true[:, 0], -true[:, 1], np.full(50, 0.3)], 1).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = param_metrics(pred, true, np.ones(3))
    assert m["r"] == pytest.approx(0.0, abs=1e-6)  # (+1 - 1) / 2: the constant column skipped
    assert m["varying"] == 3
