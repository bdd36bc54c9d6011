"""Evaluation metrics (scikit-learn): the paper's Table 2 columns, binary pain detection, and
the same per demographic group with the best-minus-worst gap."""
from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr
from sklearn.metrics import f1_score, roc_auc_score

from train.heads import N_PSPI, PSPI_MAX

AU_NAMES = ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43")
GROUPS = ("age_group", "gender", "ethnicity")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def usable_classes(y: np.ndarray, n_classes: int) -> set[int]:
    """Classes with both outcomes in ``y`` (where a one-vs-rest AUROC is defined)."""
    return {k for k in range(n_classes) if (y == k).any() and (y != k).any()}


def macro_auroc(y: np.ndarray, probs: np.ndarray, classes=None) -> float:
    """One-vs-rest AUROC averaged over ``classes`` (default: every class with both outcomes
    here); pass one class set to compare groups on the same classes."""
    use = sorted(usable_classes(y, probs.shape[1]) if classes is None else classes)
    aucs = [roc_auc_score(y == k, probs[:, k]) for k in use
            if (y == k).any() and (y != k).any()]
    return float(np.mean(aucs)) if aucs and len(aucs) == len(use) else float("nan")


BINARY = (1, 2, 3)  # pain at PSPI >= k: AUROC and F1 at each (the authors' UNBC protocol)


def pain_score(probs: np.ndarray, k: int) -> np.ndarray:
    """P(PSPI >= k)."""
    return probs[:, k:].sum(1)


def pain_scores(logits=None, binary=None) -> dict[int, np.ndarray]:
    """Per k in BINARY, a score for PSPI >= k: P(PSPI >= k) from the class probabilities,
    else the binary head's probability (regression-only models)."""
    if logits is not None:
        probs = softmax(np.asarray(logits, np.float64))
        return {k: pain_score(probs, k) for k in BINARY}
    if binary is not None:
        return {k: np.asarray(binary, np.float64)[:, i] for i, k in enumerate(BINARY)}
    return {}


def calibrate_thresholds(logits, y: np.ndarray, binary=None) -> dict[int, float]:
    """Per k in BINARY: the PSPI >= k score threshold with the best F1 on these predictions
    (the authors grid-search theirs on the training split; pain3d's crossval calibrates on
    each fold's validation subjects)."""
    from sklearn.metrics import precision_recall_curve

    scores = pain_scores(logits, binary)
    out = {}
    for k in BINARY:
        target = np.asarray(y) >= k
        if not target.any() or target.all() or k not in scores:
            continue
        prec, rec, thr = precision_recall_curve(target, scores[k])
        f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
        out[k] = float(thr[int(np.argmax(f1[:-1]))])
    return out


def _class_metrics(pred: np.ndarray, estimate: np.ndarray, y: np.ndarray, auroc: float) -> dict:
    """The Table 2 columns from a predicted class and a continuous PSPI estimate."""
    err = np.abs(pred - y)
    return {"macro_auroc": auroc, "acc": float(np.mean(err == 0)),
            "acc_pm1": float(np.mean(err <= 1)), "acc_pm2": float(np.mean(err <= 2)),
            "mae_argmax": float(np.mean(err)), "mae_expected": float(np.mean(np.abs(estimate - y))),
            "pearson_r": float(pearsonr(estimate, y)[0])
            if np.std(y) > 0 and np.std(estimate) > 0 else float("nan")}


def regression_class(value: np.ndarray, n_classes: int = N_PSPI) -> np.ndarray:
    """The class a PSPI estimate in class units names: rounded, clipped to the classes."""
    return np.clip(np.rint(value), 0, n_classes - 1).astype(int)


def regression_metrics(value: np.ndarray, y: np.ndarray, n_classes: int = N_PSPI, classes=None
                       ) -> dict[str, float]:
    """The same columns from a PSPI estimate in class units: the class is the estimate
    rounded (and clipped to the classes); class k's one-vs-rest AUROC scores each frame by
    -|estimate - k| (nearness to k)."""
    value = np.asarray(value, np.float64)
    y = np.asarray(y, int)
    pred = regression_class(value, n_classes)
    nearness = -np.abs(value[:, None] - np.arange(n_classes)[None])
    return _class_metrics(pred, value, y, macro_auroc(y, nearness, classes))


def compute_metrics(logits, y: np.ndarray, au_pred: np.ndarray | None = None,
                    au_true: np.ndarray | None = None, thresholds: dict | None = None,
                    classes=None, reg=None, binary=None) -> dict[str, float]:
    """From whichever outputs exist: class ``logits`` (17), a regression ``reg`` (PSPI / 16)
    and ``binary`` probabilities (PSPI >= 1, 2, 3). The main columns come from the classes
    when there are any (accuracy, ±1, ±2 and ``mae_argmax`` from the argmax class,
    ``mae_expected`` and Pearson r from the softmax expectation), else from the regression
    (see :func:`regression_metrics`); a model with both also gets ``reg_*`` columns and the
    binary heads' ``bin_auroc_pspi_ge{k}``. AUROC and F1 at PSPI >= k: from P(PSPI >= k), else
    the binary heads; F1 at 0.5 (``_at_0.5``) and, given ``thresholds`` from the training
    split, at those (``f1_pspi_ge1`` .. ``f1_pspi_ge3``)."""
    y = np.asarray(y, int)
    if logits is not None:
        probs = softmax(np.asarray(logits, np.float64))
        m = _class_metrics(probs.argmax(1), probs @ np.arange(probs.shape[1]), y,
                           macro_auroc(y, probs, classes))
    elif reg is not None:
        m = regression_metrics(np.asarray(reg) * PSPI_MAX, y, classes=classes)
    else:
        raise ValueError("no PSPI output to score (neither class logits nor a regression)")
    for k, score in pain_scores(logits, binary).items():
        target = y >= k
        m[f"auroc_pspi_ge{k}"] = _auroc(target, score)
        m[f"f1_pspi_ge{k}_at_0.5"] = float(f1_score(target, score >= 0.5, zero_division=0))
        if thresholds and k in thresholds:
            m[f"f1_pspi_ge{k}"] = float(f1_score(target, score >= thresholds[k],
                                                 zero_division=0))
    if logits is not None and reg is not None:
        r = regression_metrics(np.asarray(reg) * PSPI_MAX, y, classes=classes)
        m.update({f"reg_{k}": v for k, v in r.items()})
        m.update({f"bin_auroc_pspi_ge{k}": _auroc(y >= k, s)
                  for k, s in pain_scores(None, binary).items()})
    if au_pred is not None and au_true is not None:
        per = np.abs(np.asarray(au_pred) - np.asarray(au_true)).mean(0)
        for name, v in zip(AU_NAMES, per):
            m[f"mae_{name}"] = float(v)
    return m


def _auroc(target: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(target, score)) if target.any() and (~target).any() \
        else float("nan")


def pain_only_metrics(logits, y: np.ndarray, reg=None) -> dict[str, float]:
    """The paper's 16-class setting: pain frames only (PSPI 1-16), the model's probabilities
    renormalised over classes 1-16 (it may not answer 'no pain'); a regression-only model's
    estimate is clipped to 1-16 likewise."""
    y = np.asarray(y, int)
    sel = y >= 1
    if not sel.any():
        return {}
    if logits is not None:
        m = compute_metrics(np.asarray(logits, np.float64)[sel][:, 1:], y[sel] - 1)
    else:
        m = regression_metrics(np.asarray(reg)[sel] * PSPI_MAX - 1, y[sel] - 1, PSPI_MAX)
    return {k: m[k] for k in ("macro_auroc", "acc", "acc_pm1", "acc_pm2", "mae_argmax",
                              "mae_expected")} | {"frames": int(sel.sum())}


def group_metrics(logits, y, groups: dict[str, np.ndarray], au_pred=None, au_true=None,
                  reg=None, binary=None) -> dict[str, dict]:
    """{attribute: {value: metrics, ..., "gap": {metric: best - worst}}}."""
    out: dict[str, dict] = {}
    y = np.asarray(y, int)
    for attr, values in groups.items():
        values = np.asarray(values)
        per = {}
        names = sorted(set(values.tolist()))
        # macro AUROC over the classes every group can score, so groups compare like with like
        common = set.intersection(*[usable_classes(y[values == v], N_PSPI)
                                    for v in names]) if names else set()
        for v in names:
            sel = values == v
            cut = {k: None if a is None else np.asarray(a)[sel] for k, a in (
                ("logits", logits), ("au_pred", au_pred), ("au_true", au_true), ("reg", reg),
                ("binary", binary))}
            per[str(v)] = compute_metrics(y=y[sel], classes=common, **cut)
            per[str(v)]["auroc_classes"] = len(common)
        keys = next(iter(per.values())).keys() if per else []
        gap = {}
        for k in keys:
            vals = [p[k] for p in per.values() if np.isfinite(p[k])]
            gap[k] = float(max(vals) - min(vals)) if len(vals) >= 2 else float("nan")
        out[attr] = {**per, "gap": gap}
    return out


def mean_std(values) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, n) over seeds; NaN std for a single seed."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v)


def cell(ms) -> str:
    """A (mean, std, n) triple as a table cell: one value says so instead of "± nan"."""
    mean, std, n = ms
    if n == 0:
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f} (n = 1)"


def paired(a, b) -> dict:
    """b - a over the seeds both have: mean difference, its std (ddof=1) and a paired t-test
    (scipy); p is NaN with fewer than 2 pairs or no spread."""
    from scipy.stats import ttest_rel

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None
             and np.isfinite(x) and np.isfinite(y)]
    d = np.asarray([y - x for x, y in pairs], float)
    out = {"diff": float(d.mean()) if len(d) else float("nan"),
           "diff_std": float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
           "n": len(d), "p": float("nan")}
    if len(d) > 1 and d.std() > 0:
        out["p"] = float(ttest_rel([y for _, y in pairs], [x for x, _ in pairs]).pvalue)
    return out
