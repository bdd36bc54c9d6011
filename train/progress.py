"""Training progress a person can see while ``trainer.fit()`` blocks the driver: rank 0
writes ``<run>/progress.json`` after each epoch, and the driver shows it as a tqdm bar.

Worker output stays in Ray's log files (pain3d starts Ray with ``log_to_driver`` off unless
``-v``), so this file is the one channel from the loop to the person at the terminal.
"""
from __future__ import annotations

import sys
import threading

from pipelines import storage

FILE = "progress.json"


def write(run: tuple[str, str] | None, metrics: dict, epochs: int) -> None:
    """Rank 0, after each epoch. ``run`` is (storage URI, run name)."""
    if run is None:
        return
    keep = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    storage.write_json(storage.resolve(run[0]), f"{run[1]}/{FILE}", {"epochs": epochs, **keep})


class Watcher:
    """Polls the run's progress file in a daemon thread while the driver waits in fit()."""

    def __init__(self, storage_uri: str, name: str, epochs: int, desc: str,
                 interval_s: float = 2.0, metric: str = "val_macro_auroc"):
        self.loc, self.rel = storage.resolve(storage_uri), f"{name}/{FILE}"
        self.metric = metric
        self.epochs, self.desc, self.interval_s = epochs, desc, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from tqdm import tqdm

        with tqdm(total=self.epochs, desc=self.desc, unit="epoch", file=sys.stderr,
                  dynamic_ncols=True) as bar:
            while True:
                stopping = self._stop.wait(self.interval_s)
                try:
                    p = storage.read_json(self.loc, self.rel) or {}
                except Exception:  # noqa: BLE001 - progress is best effort
                    p = {}
                if p.get("epochs_done", 0) > bar.n:
                    bar.update(p["epochs_done"] - bar.n)
                    v = p.get(self.metric)
                    bar.set_postfix({"loss": f"{p.get('train_loss', float('nan')):.3f}",
                                     self.metric: f"{v:.3f}" if v is not None else "-"})
                if stopping:
                    return
