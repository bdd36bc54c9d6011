"""The ``tune`` section of the config: the search space over the loss weights and how the
sweep runs. ``configs/sweep.yaml`` holds the space the product ships with."""
from __future__ import annotations

from dataclasses import dataclass, field

DISTRIBUTIONS = ("loguniform", "uniform")


@dataclass
class ParamRange:
    dist: str = "loguniform"  # loguniform | uniform
    low: float = 0.01
    high: float = 1.0


@dataclass
class TuneConfig:
    # train.weights field -> range (pspi, au, pspi_distill, au_distill, feature_distill,
    # temperature); empty until a sweep file fills it
    space: dict[str, ParamRange] = field(default_factory=dict)
    samples: int = 20  # trials in all, the warm-start trial included
    concurrent: int = 2  # trials at once
    warm_start: bool = True  # the config's own weights (the paper's) are the first trial
    grace_epochs: int = 2  # ASHA: no trial is stopped before this many epochs
    reduction_factor: int = 2  # ASHA: keep the best 1/rf at each rung
    cpus_per_trial: float = 0.1  # the trial's own process; its training workers reserve theirs
    storage: str = "sweeps"  # local folder or s3://bucket/prefix
    final_seeds: int = 2  # best vs paper weights, each retrained with these many seeds
