import itertools

import numpy as np
import pytest

from faces.au import (PSPI_AUS, PSPIConfig, configs_with_pspi, identity_plan, pspi,
                      sample_config, slot_levels, van_der_corput)


def test_pspi_formula_by_hand():
    assert pspi({"AU4": 3, "AU6": 2, "AU7": 4, "AU9": 1, "AU10": 0, "AU43": 1}) == 3 + 4 + 1 + 1
    assert pspi({"AU4": 0, "AU6": 5, "AU7": 1, "AU9": 2, "AU10": 5, "AU43": 0}) == 10
    assert pspi({}) == 0
    assert pspi({"AU4": 5, "AU6": 5, "AU7": 5, "AU9": 5, "AU10": 5, "AU43": 1}) == 16
    # vectorised form matches the scalar one
    arr = pspi({"AU4": np.array([1, 2]), "AU6": np.array([0, 3]), "AU7": np.array([2, 1]),
                "AU9": np.array([0, 0]), "AU10": np.array([1, 4]), "AU43": np.array([1, 0])})
    assert arr.tolist() == [1 + 2 + 1 + 1, 2 + 3 + 4 + 0]


def test_every_level_reachable_and_counts_match_enumeration():
    total = 0
    for t in range(17):
        c = configs_with_pspi(t)
        assert len(c) > 0, t
        total += len(c)
        # recompute PSPI for every enumerated configuration independently
        s = c[:, 0] + np.maximum(c[:, 1], c[:, 2]) + np.maximum(c[:, 3], c[:, 4]) + c[:, 5]
        assert np.all(s == t)
    assert total == 6 ** 5 * 2
    # brute force count for one level
    brute = sum(1 for a in itertools.product(range(6), range(6), range(6), range(6), range(6),
                                             range(2))
                if a[0] + max(a[1], a[2]) + max(a[3], a[4]) + a[5] == 7)
    assert brute == len(configs_with_pspi(7))


@pytest.mark.parametrize("target", range(17))
def test_sampler_hits_target_and_is_diverse(target, rng):
    seen = set()
    for _ in range(60):
        c = sample_config(target, rng)
        assert set(c) == set(PSPI_AUS)
        assert pspi(c) == target
        assert all(0 <= c[k] <= 5 for k in PSPI_AUS) and c["AU43"] in (0.0, 1.0)
        seen.add(tuple(c.values()))
    if target not in (0,):  # only the all-zero face has PSPI 0
        assert len(seen) >= min(5, len(configs_with_pspi(target)))


def test_sampler_rejects_bad_target(rng):
    with pytest.raises(ValueError):
        sample_config(17, rng)


def test_van_der_corput_values():
    assert van_der_corput(np.arange(5)).tolist() == [0.0, 0.5, 0.25, 0.75, 0.125]


def test_identity_plan_structure_and_determinism():
    p = identity_plan(7, seed=3)
    assert len(p.configs) == 11
    assert p.pspi[0] == 0 and all(v == 0 for v in p.configs[0].values())
    assert all(1 <= s <= 16 for s in p.pspi[1:])
    assert identity_plan(7, seed=3).configs == p.configs
    assert identity_plan(7, seed=4).configs != p.configs


def test_levels_exactly_balanced_by_default():
    # 8 identities x 10 expressions = 80 slots = 5 x 16 levels
    levels = [s for i in range(8) for s in identity_plan(i, 0).pspi[1:]]
    counts = np.bincount(levels, minlength=17)
    assert counts[0] == 0 and np.all(counts[1:] == 5)
    # larger, non-aligned counts stay within +-2 of uniform
    lv = slot_levels(np.arange(10 * 37), PSPIConfig())
    c = np.bincount(lv, minlength=17)[1:]
    assert c.max() - c.min() <= 2


def test_imposed_distribution_is_followed():
    # a real-data-like skew: most mass on low levels
    weights = {1: 8, 2: 4, 3: 2, 4: 1, 5: 1}
    lv = slot_levels(np.arange(1600), PSPIConfig(weights=weights))
    counts = np.bincount(lv, minlength=6)[1:6]
    expected = np.array([8, 4, 2, 1, 1]) / 16 * 1600
    assert np.all(np.abs(counts - expected) <= 2)
    assert set(np.unique(lv)) == {1, 2, 3, 4, 5}


def test_bad_distribution_rejected():
    with pytest.raises(ValueError):
        PSPIConfig(levels=(0, 17)).distribution()
    with pytest.raises(ValueError):
        PSPIConfig(weights={3: -1}).distribution()
