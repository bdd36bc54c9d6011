"""PSPI and AU-configuration sampling.

PSPI = AU4 + max(AU6, AU7) + max(AU9, AU10) + AU43 with AU intensities 0-5 (FACS A-E) and
AU43 binary, so PSPI is an integer 0-16. The sampler draws, for a target PSPI, uniformly
among *all* integer configurations with exactly that score (many per level, not one
canonical face). Each identity gets 10 pain configurations + the neutral; their target
levels come from a van der Corput sequence over the dataset's global slot index, so that any
aligned run of slots is stratified over the level distribution (exactly balanced for 16
equally weighted levels every 16 slots), while an identity's plan still depends only on
(seed, identity).
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

import numpy as np

from faces.demographics import identity_rng

PSPI_AUS = ("AU4", "AU6", "AU7", "AU9", "AU10", "AU43")
EXTRA_AUS = ("AU12", "AU25", "AU26")
PSPI_MAX = 16
PAIN_EXPRESSIONS = 10  # per identity, plus one neutral (expression 0)


def pspi(aus) -> np.ndarray | float:
    """PSPI of one configuration (a dict) or of arrays of AU values (dict of arrays)."""
    g = {k: np.asarray(aus.get(k, 0.0), np.float64) for k in PSPI_AUS}
    out = g["AU4"] + np.maximum(g["AU6"], g["AU7"]) + np.maximum(g["AU9"], g["AU10"]) + g["AU43"]
    return float(out) if out.ndim == 0 else out


@functools.lru_cache(maxsize=1)
def _all_configs() -> tuple[np.ndarray, np.ndarray]:
    """Every integer configuration (15,552 of them) and its PSPI."""
    grid = np.array(list(itertools.product(range(6), range(6), range(6), range(6), range(6),
                                           range(2))), np.int8)
    scores = grid[:, 0] + np.maximum(grid[:, 1], grid[:, 2]) + np.maximum(grid[:, 3], grid[:, 4]) \
        + grid[:, 5]
    return grid, scores.astype(np.int16)


def configs_with_pspi(target: int) -> np.ndarray:
    grid, scores = _all_configs()
    return grid[scores == int(target)]


@dataclass
class PSPIConfig:
    """Which PSPI levels pain expressions target, and how often.

    ``weights`` maps level -> relative frequency (e.g. a real dataset's histogram); None means
    equal weights over ``levels``. ``extra_aus`` adds non-PSPI AUs (AU12, AU25, AU26) at random
    to some expressions for appearance diversity; they never change PSPI.
    """

    levels: tuple[int, ...] = tuple(range(1, PSPI_MAX + 1))
    weights: dict[int, float] | None = None
    extra_aus: bool = False
    extra_probability: float = 0.25

    def distribution(self) -> tuple[np.ndarray, np.ndarray]:
        if self.weights is not None:
            levels = np.array(sorted(int(k) for k in self.weights), int)
            w = np.array([float(self.weights[k]) for k in sorted(self.weights, key=int)])
        else:
            levels = np.array(sorted(set(int(v) for v in self.levels)), int)
            w = np.ones(len(levels))
        if len(levels) == 0 or np.any((levels < 0) | (levels > PSPI_MAX)):
            raise ValueError(f"PSPI levels must be within 0-{PSPI_MAX}, got {levels.tolist()}")
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError("PSPI weights must be >= 0 with a positive sum")
        return levels, w / w.sum()


def van_der_corput(n: np.ndarray | int, base: int = 2) -> np.ndarray:
    n = np.atleast_1d(np.asarray(n, np.int64)).copy()
    out = np.zeros(len(n))
    denom = 1.0
    while np.any(n > 0):
        denom *= base
        n, r = np.divmod(n, base)
        out += r / denom
    return out


def slot_levels(slots: np.ndarray, cfg: PSPIConfig) -> np.ndarray:
    """Target PSPI level of each global slot (identity * 10 + k)."""
    levels, p = cfg.distribution()
    u = van_der_corput(slots)
    idx = np.searchsorted(np.cumsum(p), u, side="right")
    return levels[np.minimum(idx, len(levels) - 1)]


def sample_config(target: int, rng: np.random.Generator) -> dict[str, float]:
    """A random integer AU configuration with exactly the target PSPI."""
    if not 0 <= int(target) <= PSPI_MAX:
        raise ValueError(f"target PSPI {target} is outside 0-{PSPI_MAX}")
    cands = configs_with_pspi(int(target))
    row = cands[rng.integers(len(cands))]
    return {k: float(v) for k, v in zip(PSPI_AUS, row)}


def neutral_config() -> dict[str, float]:
    return {k: 0.0 for k in PSPI_AUS}


@dataclass
class ExpressionPlan:
    identity: int
    configs: list[dict[str, float]] = field(default_factory=list)  # [0] is the neutral

    @property
    def pspi(self) -> list[int]:
        return [int(round(pspi(c))) for c in self.configs]


def identity_plan(identity: int, seed: int, cfg: PSPIConfig | None = None) -> ExpressionPlan:
    """Neutral + 10 pain configurations for one identity; distinct where the level allows."""
    cfg = cfg or PSPIConfig()
    rng = identity_rng(seed, identity, "aus")
    targets = slot_levels(np.arange(PAIN_EXPRESSIONS) + PAIN_EXPRESSIONS * int(identity), cfg)
    plan = ExpressionPlan(int(identity), [neutral_config()])
    seen = set()
    for t in targets:
        for _ in range(20):  # avoid repeating a configuration within one identity
            c = sample_config(int(t), rng)
            key = tuple(c.values())
            if key not in seen or len(configs_with_pspi(int(t))) <= 1:
                break
        seen.add(key)
        if cfg.extra_aus and rng.random() < cfg.extra_probability:
            k = EXTRA_AUS[rng.integers(len(EXTRA_AUS))]
            c[k] = float(rng.integers(1, 4))
        plan.configs.append(c)
    return plan
