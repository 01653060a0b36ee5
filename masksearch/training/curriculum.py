"""Curriculum by number of masks: train on k=1 first, then k=2, … (MaskSearch "Training Strategy").

`curriculum_order` turns the per-example mask counts into an index order with stage boundaries;
`CurriculumSampler` is the same order as a torch `Sampler`. Trainers that own their sampler
(GRPO's repeat sampler) get the dataset itself reordered and shuffling turned off.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from masksearch.training.config import CurriculumSettings

from torch.utils.data import Sampler


def stage_of(k: int, stages: Sequence[int]) -> int:
    """Index of the first stage whose mask count is >= k (k beyond the last → last stage)."""
    for i, s in enumerate(stages):
        if k <= s:
            return i
    return len(stages) - 1


@dataclass(frozen=True)
class CurriculumPlan:
    order: list[int]  # dataset indices in training order
    boundaries: list[int]  # position in `order` where each stage starts
    stages: list[int]

    def stage_at(self, position: int) -> int:
        """The stage (mask count) that `order[position]` belongs to."""
        stage = 0
        for i, start in enumerate(self.boundaries):
            if position >= start:
                stage = i
        return self.stages[stage]


def curriculum_order(
    ks: Sequence[int],
    stages: Sequence[int] = (1, 2, 3, 4),
    *,
    mode: str = "strict",
    shuffle_within_stage: bool = True,
    seed: int = 0,
) -> CurriculumPlan:
    """Order examples by stage.

    - `strict`: stage s holds the examples whose k maps to s (each example once).
    - `cumulative`: stage s holds every example with stage <= s (earlier ones are replayed).
    Within a stage the order is shuffled (seeded) or kept stable.
    """
    if not stages or list(stages) != sorted(set(stages)):
        raise ValueError("stages must be a non-empty increasing list of mask counts")
    if mode not in ("strict", "cumulative"):
        raise ValueError("mode must be 'strict' or 'cumulative'")
    rng = random.Random(seed)
    by_stage: list[list[int]] = [[] for _ in stages]
    for idx, k in enumerate(ks):
        by_stage[stage_of(int(k), stages)].append(idx)
    order: list[int] = []
    boundaries: list[int] = []
    pool: list[int] = []
    for members in by_stage:
        chunk = list(members) if mode == "strict" else pool + list(members)
        pool = chunk if mode == "cumulative" else pool
        if shuffle_within_stage:
            chunk = list(chunk)
            rng.shuffle(chunk)
        boundaries.append(len(order))
        order.extend(chunk)
    return CurriculumPlan(order=order, boundaries=boundaries, stages=list(stages))


Row = TypeVar("Row", bound=dict[str, Any])
log = logging.getLogger(__name__)


def curriculum_rows(rows: list[Row], settings: CurriculumSettings, *, seed: int) -> list[Row]:
    """`rows` (each with its mask count `k`) in curriculum order when `settings.enabled`, else
    as given."""
    if not settings.enabled:
        return rows
    plan = curriculum_order(
        [r["k"] for r in rows],
        settings.stages,
        mode=settings.mode,
        shuffle_within_stage=settings.shuffle_within_stage,
        seed=seed,
    )
    log.info("curriculum: stages %s start at rows %s", plan.stages, plan.boundaries)
    return [rows[i] for i in plan.order]


class CurriculumSampler(Sampler[int]):
    """Yields dataset indices stage by stage; `set_epoch` reshuffles within stages."""

    def __init__(
        self,
        ks: Sequence[int],
        stages: Sequence[int] = (1, 2, 3, 4),
        *,
        mode: str = "strict",
        shuffle_within_stage: bool = True,
        seed: int = 0,
    ) -> None:
        self.ks, self.stages, self.mode = list(ks), list(stages), mode
        self.shuffle, self.seed, self.epoch = shuffle_within_stage, seed, 0

    def plan(self) -> CurriculumPlan:
        return curriculum_order(
            self.ks,
            self.stages,
            mode=self.mode,
            shuffle_within_stage=self.shuffle,
            seed=self.seed + self.epoch,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(self.plan().order)

    def __len__(self) -> int:
        return len(self.plan().order)
