"""Training batches are shuffled: seeded, different every epoch, mixing identities."""
import numpy as np
import pytest

from cluster.config import load_config
from train.data import identity_table, make_split, split_datasets
from train.loop import epoch_batches

from tests.conftest import tiny_dataset


@pytest.fixture(scope="module")
def data20(ray_local, tmp_path_factory):
    return tiny_dataset(tmp_path_factory, 20, 32, 64)


def _epochs(data, seed, n_epochs=2, shuffle_buffer=1024, cache=False):
    """Identity lists of each batch, per epoch, as one worker's training loop sees them."""
    cfg = load_config("local", ["train.batch_size=32", f"train.shuffle_buffer={shuffle_buffer}"])
    split = make_split(identity_table(path=data), (0.7, 0.2, 0.1), 0)
    ds = split_datasets(data, {"train": split["train"]}, 16, seed=seed, cache=cache)["train"]
    # what Ray Train hands a worker, once (a cached split goes to the workers whole)
    shard = ds if cache else ds.streaming_split(1, equal=True)[0]
    return [[b["identity"].tolist() for b in epoch_batches(shard, cfg.train, seed, e, 0)]
            for e in range(n_epochs)], split


@pytest.mark.parametrize("cache", [pytest.param(False, marks=pytest.mark.slow), True],
                         ids=["decoded every epoch", "decoded once"])  # the first: ~23 s
def test_batches_mix_identities_and_change_every_epoch(data20, cache):
    epochs, split = _epochs(data20, seed=3, cache=cache)
    n_frames = 33 * len(split["train"])
    for batches in epochs:  # every training frame once per epoch
        flat = [i for b in batches for i in b]
        assert len(flat) == n_frames and set(flat) == set(split["train"])
    full = [b for b in epochs[0] if len(b) == 32]
    mixed = np.mean([len(set(b)) for b in full])
    assert mixed >= 8, f"a batch of 32 holds {mixed:.1f} identities on average"
    assert epochs[0] != epochs[1]  # a different order in the second epoch
    again, _ = _epochs(data20, seed=3, cache=cache)
    assert again == epochs  # one seed, one sequence of epochs
    other, _ = _epochs(data20, seed=4, cache=cache)
    assert other[0] != epochs[0]


def test_without_shuffling_a_batch_is_one_or_two_identities(data20):
    """What the shuffle fixes (and the check above would catch): in file order a batch of 32
    holds the frames of one or two identities."""
    cfg = load_config("local", ["train.batch_size=32"])
    split = make_split(identity_table(path=data20), (0.7, 0.2, 0.1), 0)
    ds = split_datasets(data20, {"val": split["train"]}, 16, seed=3)["val"]  # not shuffled
    batches = [b["identity"].tolist() for b in ds.iter_torch_batches(batch_size=32)]
    assert np.mean([len(set(b)) for b in batches if len(b) == 32]) <= 2.5
    assert cfg.train.shuffle_buffer > 0
