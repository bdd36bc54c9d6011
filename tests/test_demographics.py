from collections import Counter

import numpy as np
import pytest

from faces.demographics import (AGE_GROUPS, ETHNICITIES, GENDERS, PAPER_TABLE, Demographics,
                                DemographicsConfig, identity_rng, make_prompt, sample_demographics)


def test_balanced_mode_is_exact_per_block_of_24():
    demos = [sample_demographics(i, seed=5) for i in range(48)]
    cells = Counter((d.age_group, d.gender, d.ethnicity) for d in demos)
    assert len(cells) == 24 and set(cells.values()) == {2}
    first = Counter((d.age_group, d.gender, d.ethnicity) for d in demos[:24])
    assert set(first.values()) == {1}
    # marginals are exactly balanced too
    assert Counter(d.ethnicity for d in demos) == {e: 8 for e in ETHNICITIES}


def test_table_mode_reproduces_the_paper_table():
    cfg = DemographicsConfig(mode="table")
    demos = [sample_demographics(i, seed=1, cfg=cfg) for i in range(2500)]
    for attr, counts in PAPER_TABLE.items():
        assert Counter(getattr(d, attr) for d in demos) == counts


def test_identity_demographics_do_not_depend_on_run_size():
    cfg = DemographicsConfig(mode="table")
    assert sample_demographics(17, 3, cfg) == sample_demographics(17, 3, cfg)
    assert sample_demographics(17, 3) == sample_demographics(17, 3)
    assert [sample_demographics(i, 3) for i in range(30)] != \
        [sample_demographics(i, 4) for i in range(30)]


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown ethnicity"):
        Demographics("young", "man", "Martian")
    with pytest.raises(ValueError, match="mode"):
        sample_demographics(0, 0, DemographicsConfig(mode="random"))
    with pytest.raises(ValueError, match="unknown attribute"):
        sample_demographics(0, 0, DemographicsConfig(mode="table", table={"height": {"x": 1}}))


def test_prompts_are_diverse_and_name_the_demographics():
    prompts = set()
    for i in range(600):
        d = sample_demographics(i, 0)
        p = make_prompt(d, identity_rng(0, i, "prompt"))
        assert d.ethnicity in p
        prompts.add(p)
    assert len(prompts) > 550  # thousands of combinations; few collisions
    assert all(a in AGE_GROUPS for a in ("young", "elderly")) and len(GENDERS) == 2


def test_identity_rng_streams_are_independent():
    a = identity_rng(0, 1, "shape").random(4)
    b = identity_rng(0, 1, "texture").random(4)
    c = identity_rng(0, 1, "shape").random(4)
    assert np.array_equal(a, c) and not np.array_equal(a, b)
