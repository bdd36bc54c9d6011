"""train/stats.py: the cluster bootstrap covers a planted effect at about its nominal rate,
pairs rows on the same resamples, and Holm's adjustment is the textbook one."""
import numpy as np
import pytest

from train.stats import Run, auroc, compare, holm, interval, pain_only_macro_auroc, replicates


def mean_score(y, probs):
    return float(probs[:, 0].mean())


def simulate(rng, effect, n_ids=30, frames=6, seeds=3, id_sd=0.5, seed_sd=0.02, noise=0.5):
    """Two rows scored on the same identities: a frame's value is its identity's effect +
    the seed's + noise; row B adds ``effect``. True means 0 and ``effect``."""
    ids = np.repeat(np.arange(n_ids), frames)
    u = rng.normal(0, id_sd, n_ids)[ids]
    rows = {"A": [], "B": []}
    for s in range(seeds):
        for key, shift in (("A", 0.0), ("B", effect)):
            v = u + rng.normal(0, seed_sd) + rng.normal(0, noise, len(ids)) + shift
            probs = np.zeros((len(ids), 17))
            probs[:, 0] = v
            rows[key].append(Run(0, s, ids.copy(), np.zeros(len(ids), int), probs))
    return rows


def test_bootstrap_covers_the_planted_effect_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    cover_a = cover_d = 0
    sims = 150
    for k in range(sims):
        rows = simulate(rng, effect=0.1)
        rep = replicates(rows, mean_score, reps=150, seed=k)
        a, d = interval(rep["A"]), compare(rep["A"], rep["B"])
        cover_a += a["lo"] <= 0.0 <= a["hi"]
        cover_d += d["lo"] <= 0.1 <= d["hi"]
    # nominal 0.95; 150 simulations put the rate within about +-0.035 (2 SE) of the truth
    assert 0.88 <= cover_a / sims <= 0.995 and 0.88 <= cover_d / sims <= 0.995


def test_paired_differences_cancel_the_identity_effects():
    rng = np.random.default_rng(1)
    rows = simulate(rng, effect=0.05, id_sd=2.0, seed_sd=0.002, noise=0.05)
    rep = replicates(rows, mean_score, reps=300)
    alone, paired = interval(rep["B"]), compare(rep["A"], rep["B"])
    # the identity effects (sd 2) dominate each row's CI, and cancel in the difference
    assert alone["hi"] - alone["lo"] > 10 * (paired["hi"] - paired["lo"])
    assert paired["lo"] > 0 and paired["p"] < 0.01 and paired["mde"] < 0.05


def test_holm_and_auroc():
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([float("nan")])[0])
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    y = np.array([1, 1, 2, 2, 3, 3])
    probs = np.zeros((6, 17))
    probs[np.arange(6), y] = 1.0  # perfect
    assert pain_only_macro_auroc(y, probs) == pytest.approx(1.0)
    from train.metrics import pain_only_metrics

    logits = np.log(np.clip(probs + np.random.default_rng(0).random((6, 17)) * 0.3, 1e-6, None))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert pain_only_macro_auroc(y, p) == pytest.approx(
        pain_only_metrics(logits, y)["macro_auroc"])


def test_ablation_table_prints_intervals_holm_and_the_detectable_effect():
    from train.ablate import bootstrap, markdown

    rng = np.random.default_rng(3)
    scored = {"baseline": [], "au_queries": []}
    for split in (0, 1):
        ids = np.repeat(np.arange(split * 100, split * 100 + 12), 20)
        y = rng.integers(1, 6, len(ids))
        for seed in (0, 1):
            for key, skill in (("baseline", 1.0), ("au_queries", 2.0)):
                logits = rng.normal(0, 1, (len(ids), 17))
                logits[np.arange(len(ids)), y] += skill
                p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
                scored[key].append(Run(split, seed, ids, y, p))
    b = bootstrap(scored, reps=200, seed=0)
    assert b["identities"] == {"baseline": 24, "au_queries": 24}
    (c,) = b["comparisons"]
    assert (c["row"], c["base"]) == ("au_queries", "baseline")
    assert c["lo"] > 0 and c["p"] < 0.05 and c["p_holm"] == c["p"] and c["mde"] > 0
    md = markdown({"rows": {}, "seeds": 2, "splits": 2, "failures": [], "bootstrap": b})
    assert md.startswith("# Ablation: test split, 2 split(s) × 2 seed(s),")
    assert "## 95% confidence intervals: pain-only macro AUROC (2 split(s) × 2 seed(s)" in md
    assert "| + AU queries | ViTPain baseline (CLS only) |" in md
    assert "detects a difference of" in md and "at 80% power" in md
    assert b["min_test_identities_per_split"] == 12 and "Too few test identities" not in md
    few = bootstrap({k: [r for r in v if r.split == 0] for k, v in scored.items()}, 50, 0)
    few["min_test_identities_per_split"] = 1
    assert "Too few test identities" in markdown({"rows": {}, "seeds": 2, "splits": 1,
                                                  "failures": [], "bootstrap": few})


def test_both_readings_of_the_table_2_classes_and_the_other_metrics():
    from train.metrics import macro_auroc as sklearn_macro
    from train.stats import auroc_pspi_ge3, macro_auroc, pspi_0_15_macro_auroc

    rng = np.random.default_rng(3)
    y = rng.integers(0, 17, 400)
    probs = rng.dirichlet(np.ones(17), 400)
    probs[np.arange(400), y] += 0.05  # informative, not perfect
    probs /= probs.sum(1, keepdims=True)
    assert macro_auroc(y, probs) == pytest.approx(sklearn_macro(y, probs), abs=1e-9)
    keep = y <= 15  # 0-15: neutral frames in, PSPI 16 out
    p = probs[keep][:, :16] / probs[keep][:, :16].sum(1, keepdims=True)
    assert pspi_0_15_macro_auroc(y, probs) == pytest.approx(sklearn_macro(y[keep], p), abs=1e-9)
    assert pspi_0_15_macro_auroc(y, probs) != pytest.approx(pain_only_macro_auroc(y, probs))
    from sklearn.metrics import roc_auc_score

    assert auroc_pspi_ge3(y, probs) == pytest.approx(roc_auc_score(y >= 3, probs[:, 3:].sum(1)))
