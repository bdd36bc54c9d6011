"""Confidence intervals that include which identities were tested: a hierarchical cluster
bootstrap over test identities (an identity's frames move together) and seeds, per split,
paired between rows, with Holm-corrected p values and the effect the design could detect.

A *run* is one trained model scored on its split's test identities: per frame its identity,
true PSPI and class probabilities. A row's runs cover several splits and seeds. Replicate b
resamples, in every split, the test identities and the seeds with replacement; every row is
scored on the same resample (so differences between rows are paired), and a row's replicate
value is the mean of its runs' metric over the split's resampled seeds, averaged over
splits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

Z_POWER = norm.ppf(0.975) + norm.ppf(0.80)  # two-sided 5% test at 80% power: 2.80


@dataclass
class Run:
    split: int
    seed: int
    identity: np.ndarray  # (N,) per frame
    y: np.ndarray  # (N,) true PSPI
    probs: np.ndarray  # (N, 17) class probabilities


def auroc(target: np.ndarray, score: np.ndarray) -> float:
    """Binary AUROC by ranks (Mann-Whitney), NaN without both classes."""
    target = np.asarray(target, bool)
    n1, n0 = target.sum(), (~target).sum()
    if not n1 or not n0:
        return float("nan")
    r = rankdata(score)
    return float((r[target].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _within(y: np.ndarray, probs: np.ndarray, lo: int, hi: int):
    """Frames with PSPI lo..hi, their classes lo..hi renormalised (labels from 0)."""
    keep = (y >= lo) & (y <= hi)
    p = probs[keep][:, lo:hi + 1]
    return y[keep] - lo, p / np.maximum(p.sum(1, keepdims=True), 1e-12)


def pain_only_macro_auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """The paper's Table 2 column: frames with PSPI 1-16, classes 1-16 renormalised, the mean
    one-vs-rest AUROC over the classes present (as train.metrics.pain_only_metrics)."""
    return macro_auroc(*_within(y, probs, 1, 16))


def pspi_0_15_macro_auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """The other reading of Table 2's caption ("16 classes, PSPI 0-15"): frames with PSPI
    0-15, classes 0-15 renormalised, the mean one-vs-rest AUROC over the classes present."""
    return macro_auroc(*_within(y, probs, 0, 15))


def macro_auroc(y: np.ndarray, probs: np.ndarray) -> float:
    """All frames, 17 classes: the mean one-vs-rest AUROC over the classes present (as
    train.metrics.macro_auroc, by ranks: thousands of replicates call it)."""
    vals = [auroc(y == k, probs[:, k]) for k in range(probs.shape[1]) if 0 < (y == k).sum() < len(y)]
    return float(np.mean(vals)) if vals else float("nan")


def auroc_pspi_ge3(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary pain detection at PSPI >= 3 (the paper's Table 3), scored by P(PSPI >= 3)."""
    return auroc(y >= 3, probs[:, 3:].sum(1))


def row_interval(runs: list[Run], metric, reps: int, seed: int) -> dict:
    """One row's estimate and 95% CI (the bootstrap of :func:`replicates`)."""
    return interval(replicates({"row": runs}, metric, reps, seed)["row"])


def write_scored(loc, rel: str, frames: dict) -> None:
    """A run's scored frames (``evaluate(keep=True)``'s ``frames_scored``) as an npz file."""
    import io

    from pipelines import storage

    buf = io.BytesIO()
    np.savez_compressed(buf, **frames)
    storage.write_bytes(loc, rel, buf.getvalue())


def read_scored(loc, rel: str, split: int, seed: int) -> Run | None:
    """The :class:`Run` that :func:`write_scored` kept at ``rel``, None if there is none."""
    import io

    from pipelines import storage

    blob = storage.read_bytes(loc, rel)
    if blob is None:
        return None
    f = np.load(io.BytesIO(blob))
    return Run(split, seed, f["identity"], f["y"], f["probs"])


def _frames_of(run: Run, ids: np.ndarray) -> np.ndarray:
    """Frame indices of the identities ``ids`` (repeats kept: a twice-drawn identity counts
    twice)."""
    if not hasattr(run, "_order"):
        run._order = np.argsort(run.identity, kind="stable")
        run._sorted = run.identity[run._order]
    lo = np.searchsorted(run._sorted, ids, "left")
    hi = np.searchsorted(run._sorted, ids, "right")
    return np.concatenate([run._order[a:b] for a, b in zip(lo, hi)]) if len(ids) else \
        run._order[:0]


def replicates(rows: dict[str, list[Run]], metric=pain_only_macro_auroc, reps: int = 500,
               seed: int = 0) -> dict[str, np.ndarray]:
    """Per row, ``reps`` bootstrap values of the metric (see the module docstring); replicate
    0 is the sample itself (no resampling)."""
    rng = np.random.default_rng([seed, 29])
    splits = sorted({r.split for runs in rows.values() for r in runs})
    # each split's test identities and seeds (the same for every replicate)
    ids_of = {s: np.unique(np.concatenate([r.identity for runs in rows.values() for r in runs
                                           if r.split == s])) for s in splits}
    seeds_of = {s: sorted({r.seed for runs in rows.values() for r in runs if r.split == s})
                for s in splits}
    out = {k: np.empty(reps) for k in rows}
    for b in range(reps):
        per_row = {k: [] for k in rows}
        for s in splits:
            ids, seeds = ids_of[s], seeds_of[s]
            pick = ids if b == 0 else rng.choice(ids, len(ids), replace=True)
            draw = seeds if b == 0 else list(rng.choice(seeds, len(seeds), replace=True))
            for k, runs in rows.items():
                by_seed = {r.seed: r for r in runs if r.split == s}
                vals = []
                for sd in draw:
                    r = by_seed.get(sd)
                    if r is not None:
                        ix = _frames_of(r, pick)
                        vals.append(metric(r.y[ix], r.probs[ix]))
                if vals:
                    per_row[k].append(np.nanmean(vals))
        for k in rows:
            out[k][b] = np.nanmean(per_row[k]) if per_row[k] else np.nan
    return out


def interval(values: np.ndarray, level: float = 0.95) -> dict:
    """Estimate (replicate 0), percentile CI and bootstrap SE of replicates."""
    v = values[1:][np.isfinite(values[1:])]
    a = (1 - level) / 2
    lo, hi = (np.quantile(v, [a, 1 - a]) if len(v) else (np.nan, np.nan))
    return {"mean": float(values[0]), "lo": float(lo), "hi": float(hi),
            "se": float(v.std(ddof=1)) if len(v) > 1 else float("nan")}


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """b - a, paired replicate by replicate: the CI, a two-sided bootstrap p and the minimum
    effect detectable at 80% power (2.80 SE)."""
    d = b - a
    out = interval(d)
    tail = d[1:][np.isfinite(d[1:])]
    n = len(tail)
    out["p"] = float(min(1.0, 2 * (min((tail <= 0).sum(), (tail >= 0).sum()) + 1) / (n + 1))) \
        if n else float("nan")
    out["mde"] = float(Z_POWER * out["se"])
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error), NaNs left out and kept NaN."""
    p = np.asarray(pvalues, float)
    ok = np.flatnonzero(np.isfinite(p))
    adj = np.full(len(p), np.nan)
    order = ok[np.argsort(p[ok])]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()
