"""ViTPain model, losses and metrics against values computed by hand."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.losses import LossWeights, kl_distill, vitpain_loss
from train.metrics import compute_metrics, group_metrics, macro_auroc
from train.model import ModelConfig, ViTPain

TINY = ModelConfig(backbone="vit_tiny_patch16_224", img_size=32,
                   backbone_kwargs={"depth": 2, "patch_size": 8}, head_hidden=32)


def test_forward_shapes_and_switch():
    torch.manual_seed(0)
    m = ViTPain(TINY)
    x = torch.randn(3, 3, 32, 32)
    out = m(x)
    assert out["pspi_logits"].shape == (3, 17) and out["au"].shape == (3, 6)
    assert out["cls"].shape == (3, m.feature_dim)
    assert out["au_attention"].shape == (3, 6, 16)  # 6 queries over 4x4 patches
    assert torch.allclose(out["au_attention"].sum(-1), torch.ones(3, 6), atol=1e-5)
    assert (out["au"] >= 0).all()  # ReLU output: intensities are non-negative
    base = ViTPain(ModelConfig(**{**TINY.__dict__, "au_queries": False}))
    ob = base(x)
    assert ob["au"].shape == (3, 6) and "au_attention" not in ob


def test_au_queries_attend_by_hand():
    from train.model import AUQueryHead

    head = AUQueryHead(dim=4, n_aus=2, hidden=3)
    with torch.no_grad():
        head.queries.copy_(torch.tensor([[10.0, 0, 0, 0], [0, 10.0, 0, 0]]))
    patches = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]])
    _, alpha = head(patches)
    a = torch.tensor([10 / 2, 0, 0]).softmax(0)  # query 0 scores: Q P^T / sqrt(4)
    assert torch.allclose(alpha[0, 0], a, atol=1e-6)


def test_pretrained_file_loading(tmp_path):
    import timm
    from safetensors.torch import save_file

    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32,
                            depth=2, patch_size=8)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    m = ViTPain(ModelConfig(**{**TINY.__dict__, "pretrained_file": str(path)}))
    for k, v in ref.state_dict().items():
        assert torch.equal(m.backbone.state_dict()[k], v), k
    with pytest.raises(FileNotFoundError, match="pretrained_file"):
        ViTPain(ModelConfig(**{**TINY.__dict__, "pretrained_file": str(tmp_path / "no.bin")}))


def test_kl_distillation_by_hand():
    zs = torch.tensor([[1.0, 2.0, 0.5]])
    zt = torch.tensor([[2.0, 0.0, 1.0]])
    t = 2.0
    ps, pt = (zs / t).softmax(-1)[0], (zt / t).softmax(-1)[0]
    by_hand = t * t * sum(pt[i] * math.log(pt[i] / ps[i]) for i in range(3))
    assert float(kl_distill(zs, zt, t)) == pytest.approx(float(by_hand), rel=1e-5)
    assert float(kl_distill(zt, zt, t)) == pytest.approx(0.0, abs=1e-7)


def test_total_loss_combines_terms_with_weights():
    torch.manual_seed(1)
    out = {"pspi_logits": torch.randn(4, 17), "au": torch.rand(4, 6), "cls": torch.randn(4, 8)}
    teach = {"pspi_logits": torch.randn(4, 17), "au": torch.rand(4, 6), "cls": torch.randn(4, 8)}
    y, aus = torch.tensor([0, 3, 16, 5]), torch.rand(4, 6)
    w = LossWeights(pspi=1.0, au=2.0, pspi_distill=0.1, au_distill=0.3, feature_distill=0.5,
                    temperature=4.0)
    total, parts = vitpain_loss(out, y, aus, w, teacher=teach)
    expect = (F.cross_entropy(out["pspi_logits"], y) + 2 * F.mse_loss(out["au"], aus)
              + 0.1 * kl_distill(out["pspi_logits"], teach["pspi_logits"], 4.0)
              + 0.3 * F.mse_loss(out["au"], teach["au"]) + 0.5 * F.mse_loss(out["cls"], teach["cls"]))
    assert float(total) == pytest.approx(float(expect), rel=1e-6)
    assert set(parts) == {"ce", "au_mse", "kl", "au_distill", "feature_distill"}
    no_t, parts2 = vitpain_loss(out, y, aus, w)
    assert set(parts2) == {"ce", "au_mse"}


def test_metrics_by_hand():
    # three classes present (0, 1, 2); logits chosen so the softmax is easy to reason about
    y = np.array([0, 0, 1, 2, 2])
    logits = np.full((5, 17), -20.0)
    best = [0, 1, 1, 2, 0]  # predictions: right, off by one, right, right, off by two
    for i, b in enumerate(best):
        logits[i, b] = 10.0
    m = compute_metrics(logits, y)
    assert m["acc"] == pytest.approx(3 / 5)
    assert m["acc_pm1"] == pytest.approx(4 / 5) and m["acc_pm2"] == pytest.approx(1.0)
    assert m["mae"] == pytest.approx((0 + 1 + 0 + 0 + 2) / 5, abs=1e-6)
    # macro AUROC over classes 0, 1, 2 (one-vs-rest), by hand with ranks
    from sklearn.metrics import roc_auc_score

    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    by_hand = np.mean([roc_auc_score(y == k, p[:, k]) for k in (0, 1, 2)])
    assert macro_auroc(y, p) == pytest.approx(by_hand)
    # binary at PSPI >= 2: true positives are the two 2's; predicted score P(>=2)
    assert m["auroc_pspi_ge2"] == pytest.approx(roc_auc_score(y >= 2, p[:, 2:].sum(1)))
    assert m["f1_pspi_ge2"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))  # tp=1 fp=0 fn=1
    au_m = compute_metrics(logits, y, np.ones((5, 6)), np.zeros((5, 6)))
    assert au_m["mae_AU4"] == 1.0 and au_m["mae_AU43"] == 1.0


def test_group_metrics_and_gap():
    y = np.array([0, 1, 0, 1])
    logits = np.full((4, 17), -9.0)
    logits[[0, 1], [0, 1]] = 9.0  # group a: both right
    logits[[2, 3], [1, 0]] = 9.0  # group b: both wrong
    g = group_metrics(logits, y, {"gender": np.array(["a", "a", "b", "b"])})
    assert g["gender"]["a"]["acc"] == 1.0 and g["gender"]["b"]["acc"] == 0.0
    assert g["gender"]["gap"]["acc"] == 1.0
