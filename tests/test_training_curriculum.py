"""Curriculum by number of masks: order, stage boundaries, sampler."""

from __future__ import annotations

import pytest

from masksearch.training.curriculum import CurriculumSampler, curriculum_order, stage_of

KS = [3, 1, 4, 2, 1, 0, 2, 4, 3, 6]


def test_strict_order_goes_one_mask_to_four():
    plan = curriculum_order(KS, shuffle_within_stage=False)
    assert [KS[i] for i in plan.order] == [1, 1, 0, 2, 2, 3, 3, 4, 4, 6]
    assert plan.order == [1, 4, 5, 3, 6, 0, 8, 2, 7, 9]  # stable within a stage
    assert plan.boundaries == [0, 3, 5, 7]
    assert [plan.stage_at(p) for p in range(len(plan.order))] == [1, 1, 1, 2, 2, 3, 3, 4, 4, 4]
    assert sorted(plan.order) == list(range(len(KS)))


def test_shuffled_stages_stay_monotone_and_seeded():
    ks = [i % 4 + 1 for i in range(40)]
    a = curriculum_order(ks, seed=1)
    b = curriculum_order(ks, seed=1)
    c = curriculum_order(ks, seed=2)
    assert a.order == b.order and a.order != c.order
    seq = [ks[i] for i in a.order]
    assert seq == sorted(seq)


def test_cumulative_replays_earlier_stages():
    plan = curriculum_order(
        [1, 2, 3], stages=[1, 2, 3], mode="cumulative", shuffle_within_stage=False
    )
    assert plan.order == [0, 0, 1, 0, 1, 2]
    assert plan.boundaries == [0, 1, 3]


def test_sampler_and_validation():
    s = CurriculumSampler(KS, seed=0)
    first = list(s)
    assert len(s) == len(KS) and sorted(first) == list(range(len(KS)))
    s.set_epoch(1)
    second = list(s)
    assert second != first and sorted(KS[i] for i in second[:3]) == [0, 1, 1]
    assert stage_of(0, [1, 2]) == 0 and stage_of(9, [1, 2]) == 1
    with pytest.raises(ValueError):
        curriculum_order(KS, stages=[2, 1])
    with pytest.raises(ValueError):
        curriculum_order(KS, mode="zigzag")
