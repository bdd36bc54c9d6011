"""The bars over a Tune experiment's runs and epochs, and the quiet switch (no Ray needed)."""
import os
import pickle
import warnings
from types import SimpleNamespace

import optuna

from train.tune_progress import RunBars, quiet


def _trial(tid, status, done):
    return SimpleNamespace(trial_id=tid, status=status, last_result={"epochs_done": done})


def test_counts_shrink_the_epoch_total_for_a_run_stopped_early():
    bars = RunBars(runs=3, epochs=4)
    # one run finished all 4 epochs, one was stopped by ASHA after 1, one is running at 2,
    # none more started yet: 4 + 1 + 4 epochs in all
    trials = [_trial("a", "TERMINATED", 4), _trial("b", "TERMINATED", 1),
              _trial("c", "RUNNING", 2)]
    assert bars.counts(trials) == (2, 7, 9)
    # a run's last report may lack epochs_done: the count seen before stays
    trials[2] = SimpleNamespace(trial_id="c", status="RUNNING", last_result={})
    assert bars.counts(trials) == (2, 7, 9)
    assert bars.counts(trials[:1]) == (1, 4, 12)  # two runs not started: 4 epochs each


def test_bars_survive_pickling_without_their_tqdm_objects():
    bars = RunBars(runs=2, epochs=2, unit="fold")
    bars._update([_trial("a", "RUNNING", 1)])
    assert bars._bars is not None
    back = pickle.loads(pickle.dumps(bars))
    assert back._bars is None and back._seen == {"a": 1} and back.unit == "fold"
    bars.on_experiment_end([_trial("a", "TERMINATED", 2)])
    assert bars._bars is None


def test_quiet_switches_tune_to_its_silent_reporter_and_restores_everything():
    os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
    level = optuna.logging.get_verbosity()
    with quiet(False):
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
        assert optuna.logging.get_verbosity() == optuna.logging.WARNING
        with warnings.catch_warnings(record=True) as caught:  # quiet's filter stays first
            warnings.warn("x", optuna.exceptions.ExperimentalWarning)
            warnings.warn("y", UserWarning)
        assert [str(w.message) for w in caught] == ["y"]
    assert "RAY_AIR_NEW_OUTPUT" not in os.environ
    assert optuna.logging.get_verbosity() == level
    with quiet(True):  # -v: Tune's own output engine, untouched
        assert "RAY_AIR_NEW_OUTPUT" not in os.environ
