"""Evaluation metrics (scikit-learn): the paper's Table 2 columns, binary pain detection, and
the same per demographic group with the best-minus-worst gap."""
from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr
from sklearn.metrics import f1_score, roc_auc_score

AU_NAMES = ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43")
GROUPS = ("age_group", "gender", "ethnicity")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def macro_auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """One-vs-rest AUROC averaged over the PSPI classes present (with both outcomes)."""
    aucs = []
    for k in range(probs.shape[1]):
        pos = y == k
        if pos.any() and (~pos).any():
            aucs.append(roc_auc_score(pos, probs[:, k]))
    return float(np.mean(aucs)) if aucs else float("nan")


def compute_metrics(logits: np.ndarray, y: np.ndarray, au_pred: np.ndarray | None = None,
                    au_true: np.ndarray | None = None) -> dict[str, float]:
    probs = _softmax(np.asarray(logits, np.float64))
    y = np.asarray(y, int)
    pred = probs.argmax(1)
    expected = probs @ np.arange(probs.shape[1])
    err = np.abs(pred - y)
    m = {"macro_auroc": macro_auroc(y, probs), "acc": float(np.mean(err == 0)),
         "acc_pm1": float(np.mean(err <= 1)), "acc_pm2": float(np.mean(err <= 2)),
         "mae": float(np.mean(np.abs(expected - y))),
         "pearson_r": float(pearsonr(expected, y)[0]) if np.std(y) > 0 and np.std(expected) > 0
         else float("nan")}
    for k in (2, 3):
        target = y >= k
        score = probs[:, k:].sum(1)
        m[f"auroc_pspi_ge{k}"] = (float(roc_auc_score(target, score))
                                  if target.any() and (~target).any() else float("nan"))
        m[f"f1_pspi_ge{k}"] = float(f1_score(target, score >= 0.5, zero_division=0))
    if au_pred is not None and au_true is not None:
        per = np.abs(np.asarray(au_pred) - np.asarray(au_true)).mean(0)
        for name, v in zip(AU_NAMES, per):
            m[f"mae_{name}"] = float(v)
    return m


def group_metrics(logits, y, groups: dict[str, np.ndarray], au_pred=None, au_true=None
                  ) -> dict[str, dict]:
    """{attribute: {value: metrics, ..., "gap": {metric: best - worst}}}."""
    out: dict[str, dict] = {}
    for attr, values in groups.items():
        values = np.asarray(values)
        per = {}
        for v in sorted(set(values.tolist())):
            sel = values == v
            per[str(v)] = compute_metrics(logits[sel], y[sel],
                                          None if au_pred is None else au_pred[sel],
                                          None if au_true is None else au_true[sel])
        keys = next(iter(per.values())).keys() if per else []
        gap = {}
        for k in keys:
            vals = [p[k] for p in per.values() if np.isfinite(p[k])]
            gap[k] = float(max(vals) - min(vals)) if len(vals) >= 2 else float("nan")
        out[attr] = {**per, "gap": gap}
    return out
