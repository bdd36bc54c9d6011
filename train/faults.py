"""Fault injection for tests: an epoch hook that kills one worker once. Production runs
pass no hook; ``train.run.train(epoch_hook=KillOnce(...))`` switches it on."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class KillOnce:
    epoch: int  # the epoch at whose start the last worker dies
    marker: str  # a file that records the death, so the retried run gets past it

    def __call__(self, epoch: int, rank: int, world: int) -> None:
        if epoch == self.epoch and rank == world - 1 and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
