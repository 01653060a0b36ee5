"""What a training run will do, said before it starts: optimizer steps, tokens per step, warm-up.

`sft_plan` / `rl_plan` compute it from the trainer's arguments (a TRL `SFTConfig` / `GRPOConfig`,
or PPO's) and the data, with the schedule rules the trainers use (HF `Trainer`: a step is
`per_device_train_batch_size × gradient_accumulation_steps × processes` samples; GRPO: the samples
are completions, `num_generations` per prompt, seen `num_iterations` times; `max_steps` > 0
overrides epochs). `announce` logs the plan and warns when a run makes fewer than
`MIN_OPTIMIZER_STEPS` optimizer steps (a config written for a large set, run on a small one,
otherwise trains for two steps and says nothing).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MIN_OPTIMIZER_STEPS = 10


@dataclass(frozen=True)
class RunPlan:
    kind: str  # sft | grpo | ppo
    samples: int  # training samples per epoch (SFT rows; RL prompts)
    samples_per_step: int  # sequences per optimizer step (RL: completions)
    optimizer_steps: int
    warmup_steps: int
    tokens_per_step: int  # SFT: mean sequence tokens × samples per step; RL: an upper bound
    trained_tokens_per_step: int | None = None  # SFT: labelled tokens per step
    epochs: float | None = None
    decoding: dict[str, Any] | None = None  # RL: the rollouts' `Decoding`
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        bound = "≤ " if self.kind != "sft" else ""
        out = [
            f"{self.kind} plan: {self.optimizer_steps} optimizer steps"
            + (f" ({self.epochs:g} epoch(s) over {self.samples} samples)" if self.epochs else "")
            + f", {self.samples_per_step} sequences per step, {bound}{self.tokens_per_step:,} "
            f"tokens per step"
            + (
                f" ({self.trained_tokens_per_step:,} trained)"
                if self.trained_tokens_per_step is not None
                else ""
            )
            + f", warm-up {self.warmup_steps} step(s)",
        ]
        if self.decoding:
            out.append(f"rollout decoding: {self.decoding}")
        return out + self.notes

    def warnings(self) -> list[str]:
        out = []
        if self.optimizer_steps < MIN_OPTIMIZER_STEPS:
            out.append(
                f"this run makes only {self.optimizer_steps} optimizer step(s) (< "
                f"{MIN_OPTIMIZER_STEPS}): {self.samples} samples for {self.samples_per_step} per "
                "step; lower gradient_accumulation_steps / per_device_train_batch_size or add data"
            )
        if self.optimizer_steps and self.warmup_steps >= self.optimizer_steps:
            out.append(
                f"warm-up ({self.warmup_steps} steps) covers the whole run "
                f"({self.optimizer_steps} steps): the learning rate never reaches its peak"
            )
        return out


def _world(world_size: int | None) -> int:
    return max(1, int(world_size or 1))


def _warmup(args: Any, total: int) -> int:
    get = getattr(args, "get_warmup_steps", None)
    if callable(get):
        return int(get(total))
    w = float(getattr(args, "warmup_steps", 0) or 0)
    return int(math.ceil(w * total)) if 0 < w < 1 else int(w)


def _total_steps(args: Any, steps_per_epoch: int) -> tuple[int, float | None]:
    max_steps = int(getattr(args, "max_steps", -1) or -1)
    if max_steps > 0:
        return max_steps, None
    epochs = float(getattr(args, "num_train_epochs", 1.0) or 1.0)
    return max(1, math.ceil(epochs * steps_per_epoch)), epochs


def sft_plan(
    args: Any,
    lengths: Sequence[int],
    *,
    label_counts: Sequence[int] | None = None,
    world_size: int | None = 1,
) -> RunPlan:
    """The SFT run's plan: `lengths` are the rows' token counts (`label_counts` their trained
    tokens). Steps per epoch as HF `Trainer` counts them: batches per process, then
    ceil(batches / accumulation)."""
    n = len(lengths)
    world = _world(world_size)
    per_device = int(args.per_device_train_batch_size)
    accum = int(args.gradient_accumulation_steps)
    batches = math.ceil(n / (per_device * world)) if n else 0
    per_epoch = max(1, math.ceil(batches / accum))
    total, epochs = _total_steps(args, per_epoch)
    per_step = per_device * accum * world
    mean_len = sum(lengths) / n if n else 0.0
    mean_lab = sum(label_counts) / n if (label_counts and n) else None
    return RunPlan(
        kind="sft",
        samples=n,
        samples_per_step=per_step,
        optimizer_steps=total,
        warmup_steps=_warmup(args, total),
        tokens_per_step=round(mean_len * min(per_step, n or per_step)),
        trained_tokens_per_step=None if mean_lab is None else round(mean_lab * min(per_step, n)),
        epochs=epochs,
    )


def rl_plan(
    args: Any,
    prompts: int,
    *,
    prompt_tokens: Sequence[int] = (),
    world_size: int | None = 1,
    kind: str = "grpo",
    decoding: dict[str, Any] | None = None,
) -> RunPlan:
    """The RL run's plan (GRPO: TRL's sampler repeats each prompt `num_generations` times and
    each generation batch is trained on `num_iterations` times). Tokens per step are an upper
    bound: completions × (mean prompt tokens + `max_completion_length`)."""
    world = _world(world_size)
    per_device = int(args.per_device_train_batch_size)
    accum = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
    gens = int(getattr(args, "num_generations", 1) or 1) if kind == "grpo" else 1
    iters = int(getattr(args, "num_iterations", 1) or 1) if kind == "grpo" else 1
    per_step = per_device * accum * world
    per_epoch = max(1, math.ceil(prompts * gens * iters / per_step))
    total, epochs = _total_steps(args, per_epoch)
    mean_prompt = sum(prompt_tokens) / len(prompt_tokens) if prompt_tokens else 0.0
    max_completion = int(getattr(args, "max_completion_length", 0) or 0)
    notes = []
    if kind == "grpo":
        notes.append(
            f"{per_step // gens if gens else per_step} prompt(s) × {gens} generations per step"
        )
    return RunPlan(
        kind=kind,
        samples=prompts,
        samples_per_step=per_step,
        optimizer_steps=total,
        warmup_steps=_warmup(args, total),
        tokens_per_step=round(per_step * (mean_prompt + max_completion)),
        epochs=epochs,
        decoding=decoding,
        notes=notes,
    )


def announce(plan: RunPlan) -> RunPlan:
    """Log the plan (INFO) and its warnings (WARNING) before training starts."""
    for line in plan.lines():
        log.info("%s", line)
    for warning in plan.warnings():
        log.warning("%s", warning)
    return plan
