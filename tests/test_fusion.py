"""Paper 003's fusion of 3D expression parameters with ViTPain: late fusion is exactly the max,
mean or learned weighted average of the two classifiers' probabilities, intermediate fusion
answers to the 3D input, each classifier trains on its own loss, an encoder's parameters come
from the frozen encoder inside the model, and a fusion student trains under 2 DDP workers."""
import json

import numpy as np
import pytest
import torch

from cluster.config import load_config
from tests.conftest import TINY_CONV
from train import steps
from train.config import ModelConfig
from train.loop import load_model, save_model
from train.model import ViTPain

P = 9  # the built-in face model's expression parameters


def _model(fusion: str, **kw) -> ViTPain:
    cfg = ModelConfig(backbone="resnet18", img_size=32, head_hidden=32, fusion=fusion,
                      params_dim=P, backbone_kwargs={"channels": [8, 8, 16, 16]}, **kw)
    torch.manual_seed(0)
    return ViTPain(cfg, weights_follow=True).eval()


def _inputs(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.rand(n, P, generator=g) * 5


@pytest.mark.parametrize("how", ["max", "mean", "weighted"])
def test_late_fusion_combines_the_two_classifiers_probabilities(how):
    m = _model(f"late_{how}")
    if how == "weighted":  # w = 0.2, 003's weight for the 3D classifier
        m.late.weight_logit.data.fill_(float(torch.logit(torch.tensor(0.2))))
    m.params_in.set_stats(np.full(P, 2.0), np.full(P, 3.0))
    x, params = _inputs()
    with torch.no_grad():
        out = m(x, params=params)
        p2 = m.pspi_head(out["cls"]).softmax(-1)  # the 2D head, recomputed from CLS
        p3 = m.late.classifier((params - 2.0) / 3.0).softmax(-1)  # the 3D classifier
    want = {"max": torch.maximum(p2, p3), "mean": (p2 + p3) / 2,
            "weighted": 0.8 * p2 + 0.2 * p3}[how]
    assert torch.allclose(out["pspi_fused"], want, atol=1e-6)
    assert not torch.allclose(p2, p3, atol=1e-3)  # two different classifiers
    # the reported logits are its log: softmax renormalises, the argmax stays the fused one's
    assert torch.allclose(out["pspi_logits"].softmax(-1), want / want.sum(-1, keepdim=True),
                          atol=1e-6)
    assert torch.equal(out["pspi_logits"].argmax(-1), want.argmax(-1))


def test_intermediate_fusion_answers_to_the_3d_input_alone():
    m = _model("intermediate")
    x, params = _inputs()
    with torch.no_grad():
        a, again = m(x, params=params), m(x, params=params)
        b = m(x, params=params.flip(0))  # same images, other frames' parameters
    assert torch.equal(a["pspi_logits"], again["pspi_logits"])
    assert (a["pspi_logits"] - b["pspi_logits"]).abs().amax(-1).min() > 1e-4  # every row
    assert torch.equal(a["au"], b["au"]) and torch.equal(a["cls"], b["cls"])  # 2D parts
    assert m.pspi_head.net[0].normalized_shape == (m.feature_dim + 64,)  # CLS + 3D feature
    with pytest.raises(ValueError, match="pass params="):
        m(x)


def test_each_late_classifier_learns_from_its_own_loss_only():
    """The 2D head's gradient is that of its own cross-entropy: the 3D classifier's loss
    and the fusion weight's (classifiers held fixed) leave it alone; w trains."""
    from train.losses import supervised
    from train.config import LossWeights

    m = _model("late_weighted").train()
    x, params = _inputs(8)
    y, aus = torch.randint(0, 17, (8,)), torch.rand(8, 6)
    out = m(x, params=params)
    total, parts = supervised(out, y, aus, LossWeights(au=0.0))
    assert {"ce", "ce_3d", "ce_weight", "fusion_weight"} <= set(parts)
    assert float(parts["fusion_weight"]) == pytest.approx(0.5)
    grads = torch.autograd.grad(total, [m.pspi_head.net[-1].weight, m.late.weight_logit],
                                retain_graph=True)
    alone = torch.autograd.grad(torch.nn.functional.cross_entropy(out["pspi_logits_2d"], y),
                                m.pspi_head.net[-1].weight, retain_graph=True)[0]
    assert torch.allclose(grads[0], alone, atol=1e-6)
    assert grads[1].abs() > 0
    three = torch.autograd.grad(total, m.late.classifier[-1].weight, retain_graph=True)[0]
    own = torch.autograd.grad(torch.nn.functional.cross_entropy(out["pspi_logits_3d"], y),
                              m.late.classifier[-1].weight)[0]
    assert torch.allclose(three, own, atol=1e-6)


def _tiny_encoder(tmp_path):
    from train.encoder import ExpressionEncoder, save_encoder

    cfg = ModelConfig(backbone="resnet18", img_size=24, backbone_kwargs={"channels": [8] * 4})
    torch.manual_seed(1)
    enc = ExpressionEncoder(cfg, P, 0, 16, weights_follow=True)
    enc.set_stats({"expression_mean": np.arange(P, dtype=float), "expression_std": np.ones(P)})
    save_encoder(enc, tmp_path / "enc" / "model", "builtin")
    return enc.eval()


def test_encoder_parameters_come_from_the_frozen_encoder_inside_the_model(tmp_path):
    from train.fusion import prepare

    enc = _tiny_encoder(tmp_path)
    cfg = load_config("local", [*TINY_CONV, "train.model.fusion=late_mean",
                                "train.model.fusion_params=encoder",
                                f"train.model.fusion_encoder={tmp_path / 'enc'}"]).train
    cfg.model, init = prepare(cfg.model, "unused: no data is read", [])
    assert cfg.model.params_dim == P and init["mean"] == list(range(P))
    w = steps.build(cfg, "student", None, "cpu", 0, 10, fusion=init)
    steps.set_frozen(w, False)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():  # ViTPain's 32 px input, resized to the encoder's 24 px
        want = enc.raw(enc(torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear")))
    assert torch.allclose(w.model.params_of(x, {}), want, atol=1e-5)
    before = {k: v.clone() for k, v in w.model.param_encoder.state_dict().items()}
    parts = steps.train_step(w, {"image": x, "pspi": torch.tensor([0, 2, 4, 8]),
                                 "aus": torch.rand(4, 6)})
    assert parts["loss_pspi_3d"] > 0 and not w.model.param_encoder.training
    assert all(torch.equal(v, w.model.param_encoder.state_dict()[k]) for k, v in before.items())
    # the checkpoint holds the encoder: it evaluates with no other file
    save_model(w.model, tmp_path / "ck")
    back = load_model(tmp_path / "ck").eval()
    w.model.eval()
    with torch.no_grad():
        assert torch.allclose(back(x, params=back.params_of(x, {}))["pspi_logits"],
                              w.model(x, params=w.model.params_of(x, {}))["pspi_logits"])


def test_fusion_preset_is_a_layer_over_the_preset(tmp_path):
    cfg = load_config("local", [f"train.model.fusion_encoder={tmp_path}"], layers=["fusion"])
    m = cfg.train.model
    assert (m.fusion, m.fusion_params, m.fusion_encoder) == ("late_weighted", "encoder",
                                                              str(tmp_path))
    assert m.backbone == load_config("local").train.model.backbone  # the rest: the preset's


def test_truth_fusion_refuses_data_without_parameters():
    from train.fusion import truth_params

    with pytest.raises(ValueError, match="fusion_params encoder"):
        truth_params({"image": torch.zeros(1, 3, 8, 8)}, "cpu")


@pytest.mark.slow  # a Ray Train job, then the evaluation
def test_fusion_student_trains_on_two_ddp_workers(data10, ray_local, tmp_path):
    from train.evaluate import evaluate
    from train.run import train
    from train.run_folder import fetch_checkpoint

    cfg = load_config("local", [*TINY_CONV, "train.num_workers=2", f"train.storage={tmp_path}",
                                "train.epochs=2", "train.freeze_backbone_epochs=0",
                                "train.model.fusion=late_weighted"])
    res = train(cfg, "student", data10, "fuse", distill=False, show_progress=False)
    h = res.history
    assert [e["epochs_done"] for e in h] == [1, 2]
    assert {"loss_pspi_3d", "loss_fusion_weight", "fusion_weight_3d", "val_macro_auroc_3d",
            "val_macro_auroc_2d"} <= set(h[-1])
    assert h[-1]["fusion_weight_3d"] != pytest.approx(0.5, abs=1e-4)  # w learned
    saved = json.loads((tmp_path / "fuse" / "config.json").read_text())
    assert saved["config"]["train"]["model"]["params_dim"] == P
    r = evaluate(fetch_checkpoint(res.best_checkpoint), data10, "student", res.split, "test")
    assert set(r["fusion_parts"]) == {"2d", "3d"}
    # benchmarks/fusion.py recombines the parts' test predictions: its learned-w combination
    # is the model's own answer
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_fusion", "benchmarks/fusion.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    parts = bench.late_parts(tmp_path / "fuse", data10)
    for k in ("macro_auroc", "acc", "acc_pm1"):
        assert parts["parts"]["weighted"]["all"][k] == pytest.approx(r["metrics"][k], abs=1e-3)
    assert parts["parts"]["2d"]["all"]["acc"] == pytest.approx(r["fusion_parts"]["2d"]["acc"])
