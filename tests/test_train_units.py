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
    assert m["mae_argmax"] == pytest.approx((0 + 1 + 0 + 0 + 2) / 5, abs=1e-6)
    assert m["mae_expected"] == pytest.approx((0 + 1 + 0 + 0 + 2) / 5, abs=1e-6)  # confident
    # macro AUROC over classes 0, 1, 2 (one-vs-rest), by hand with ranks
    from sklearn.metrics import roc_auc_score

    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    by_hand = np.mean([roc_auc_score(y == k, p[:, k]) for k in (0, 1, 2)])
    assert macro_auroc(y, p) == pytest.approx(by_hand)
    # binary at PSPI >= 2: true positives are the two 2's; predicted score P(>=2)
    assert m["auroc_pspi_ge2"] == pytest.approx(roc_auc_score(y >= 2, p[:, 2:].sum(1)))
    assert m["f1_pspi_ge2_at_0.5"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))  # tp=1 fp=0 fn=1
    assert "f1_pspi_ge2" not in m  # no calibrated threshold given
    assert m["auroc_pspi_ge1"] == pytest.approx(roc_auc_score(y >= 1, p[:, 1:].sum(1)))
    from sklearn.metrics import f1_score

    assert m["f1_pspi_ge1_at_0.5"] == pytest.approx(f1_score(y >= 1, p[:, 1:].sum(1) >= 0.5))
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


def test_mae_of_the_argmax_and_of_the_expectation_differ_when_unsure():
    logits = np.full((1, 17), -30.0)
    logits[0, [0, 4]] = 0.0  # half on 0, half on 4: argmax 0, expectation 2
    m = compute_metrics(logits, np.array([4]))
    assert m["mae_argmax"] == pytest.approx(4.0) and m["mae_expected"] == pytest.approx(2.0)


def test_thresholds_calibrated_on_training_predictions():
    from train.metrics import calibrate_thresholds

    rng = np.random.default_rng(0)
    y = rng.integers(0, 17, 400)
    logits = np.full((400, 17), 0.0)
    logits[:, 0] = 3.0 - 0.6 * y + rng.normal(0, 0.5, 400)  # P(no pain) falls with PSPI
    t = calibrate_thresholds(logits, y)
    assert set(t) == {1, 2, 3} and all(0 < v < 1 for v in t.values())
    m = compute_metrics(logits, y, thresholds=t)
    assert m["f1_pspi_ge3"] >= m["f1_pspi_ge3_at_0.5"]  # calibrated on these very frames


def test_pain_only_protocol_drops_neutral_frames_and_class_0():
    from train.metrics import pain_only_metrics

    y = np.array([0, 0, 1, 5, 16])
    logits = np.full((5, 17), -9.0)
    logits[:, 0] = 9.0  # "no pain" everywhere: wrong on every pain frame in 17 classes
    logits[[2, 3, 4], [1, 5, 16]] = 5.0  # the right pain class is the runner-up
    assert compute_metrics(logits, y)["acc"] == pytest.approx(2 / 5)
    m = pain_only_metrics(logits, y)
    assert m["frames"] == 3 and m["acc"] == 1.0 and m["mae_argmax"] == 0.0


def test_groups_compare_macro_auroc_on_the_same_classes():
    y = np.array([0, 1, 2, 0, 1, 0, 1, 2])
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(8, 17))
    groups = {"gender": np.array(["a", "a", "a", "b", "b", "c", "c", "c"])}
    g = group_metrics(logits, y, groups)
    assert {g["gender"][k]["auroc_classes"] for k in "abc"} == {2}  # 0 and 1: in every group
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    sel = groups["gender"] == "a"
    assert g["gender"]["a"]["macro_auroc"] == pytest.approx(macro_auroc(y[sel], probs[sel],
                                                                        {0, 1}))


def test_ablation_summary_uses_sample_std_pairs_seeds_and_reports_failures():
    from scipy.stats import ttest_rel

    from train.ablate import markdown, summarise

    def rep(v):
        m = {"macro_auroc": v, "acc": v / 2, "acc_pm1": v, "acc_pm2": v}
        return {"pain_only": m, "all": m}

    base, queries = [0.60, 0.62, 0.70], [0.65, 0.66, 0.78]
    runs = {"baseline": [rep(v) for v in base], "au_queries": [rep(v) for v in queries],
            "au_queries_distill": [rep(0.8), None, rep(0.9)],  # seed 1 failed
            "teacher": [rep(0.95)] * 3}
    t = summarise(runs)
    mean, std, n = t["baseline"]["pain_only"]["macro_auroc"]
    assert n == 3 and mean == pytest.approx(np.mean(base))
    assert std == pytest.approx(np.std(base, ddof=1))  # sample std, not ddof=0
    assert t["au_queries_distill"]["pain_only"]["macro_auroc"][2] == 2  # failed seed left out
    d = t["au_queries"]["vs_base"]["macro_auroc"]
    assert d["diff"] == pytest.approx(np.mean(np.subtract(queries, base)))
    assert d["p"] == pytest.approx(ttest_rel(queries, base).pvalue)
    assert t["au_queries_distill"]["vs_base"]["macro_auroc"]["n"] == 2  # pairs only
    assert "vs_base" not in t["baseline"]
    md = markdown({"rows": t, "seeds": 3, "failures": [
        {"seed": 1, "row": "au_queries_distill", "error": "boom"}]})
    assert "seed 1, au_queries_distill: boom" in md and "ddof=1" in md


def test_max_frames_is_a_seeded_sample_stratified_by_identity():
    import pyarrow as pa

    from train.data import sample_frames

    ids = [3, 5, 8, 9]
    sids = [f"{i:06d}_{e:02d}_{v}" for i in ids + [11] for e in range(11) for v in range(3)]
    table = pa.table({"sample_id": sids, "identity": [int(s[:6]) for s in sids]})
    a = sample_frames(table, ids, 40, seed=0)
    assert len(a) == 40 and {int(s[:6]) for s in a} == set(ids)  # every identity, not the first
    per = [sum(int(s[:6]) == i for s in a) for i in ids]
    assert max(per) - min(per) <= 1  # equal shares
    assert a == sample_frames(table, ids, 40, seed=0) != sample_frames(table, ids, 40, seed=1)
    assert len(sample_frames(table, ids, 10_000, seed=0)) == 4 * 33  # capped by what exists
