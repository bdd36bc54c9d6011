"""Progress of a Ray Tune experiment (a sweep's trials, a cross-validation's folds) as two
tqdm bars on the driver: runs finished, and epochs trained over all of them. With them Tune's
own status tables stay off (``verbose=0``) unless ``-v``, like ``train``'s single bar."""
from __future__ import annotations

import contextlib
import os
import sys
import warnings

from ray.tune import Callback

FINISHED = ("TERMINATED", "ERROR")


class RunBars(Callback):
    """``runs`` runs (trials or folds) of ``epochs`` epochs each. A run stopped early (ASHA)
    takes its unrun epochs off the epoch bar's total, so both bars end full."""

    def __init__(self, runs: int, epochs: int, unit: str = "trial"):
        self.runs, self.epochs, self.unit = runs, epochs, unit
        self._seen: dict[str, int] = {}  # epochs each run has reported (its last report may not)
        self._bars = None

    def __getstate__(self):  # Tune saves its callbacks with the experiment; bars don't pickle
        return {**self.__dict__, "_bars": None}

    def _open(self):
        from tqdm import tqdm

        self._bars = (tqdm(total=self.runs, desc=f"{self.unit}s", unit=self.unit, position=0,
                           file=sys.stderr, dynamic_ncols=True),
                      tqdm(total=self.runs * self.epochs, desc="epochs", unit="epoch",
                           position=1, file=sys.stderr, dynamic_ncols=True))

    def counts(self, trials) -> tuple[int, int, int]:
        """(runs finished, epochs trained, epochs in all) over the runs Tune knows of and the
        ones it has yet to start."""
        done = trained = total = 0
        for t in trials:
            n = int((t.last_result or {}).get("epochs_done", 0))
            n = self._seen[t.trial_id] = max(n, self._seen.get(t.trial_id, 0))
            finished = t.status in FINISHED
            done += finished
            trained += n
            total += n if finished else self.epochs
        total += max(0, self.runs - len(trials)) * self.epochs
        return done, trained, total

    def _update(self, trials) -> None:
        if self._bars is None:
            self._open()
        done, trained, total = self.counts(trials)
        runs_bar, epochs_bar = self._bars
        for bar, n, t in ((runs_bar, done, self.runs), (epochs_bar, trained, total)):
            if (bar.n, bar.total) != (n, t):
                bar.total, bar.n = t, n
                bar.refresh()

    def on_step_end(self, iteration, trials, **info):
        self._update(trials)

    def on_experiment_end(self, trials, **info):
        self._update(trials)
        for bar in self._bars or ():
            bar.close()
        self._bars = None


@contextlib.contextmanager
def quiet(verbose: bool):
    """Tune and Optuna as quiet as ``train``: Tune's new output engine prints its experiment
    box and "View detailed results" even at ``verbose=0``, so without ``-v`` its legacy
    reporter (silent at 0) runs instead, and Optuna logs warnings only."""
    if verbose:
        yield
        return
    import optuna

    before, level = os.environ.get("RAY_AIR_NEW_OUTPUT"), optuna.logging.get_verbosity()
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():  # OptunaSearch is "experimental": a warning each call
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before
