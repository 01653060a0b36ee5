"""The run plan a trainer states before it starts (optimizer steps, tokens per step, warm-up)."""

from __future__ import annotations

import logging

import pytest

from masksearch.training.config import load_settings
from masksearch.training.plan import MIN_OPTIMIZER_STEPS, announce, rl_plan, sft_plan


def test_shipped_sft_config_on_8_records_says_it_makes_2_steps(caplog):
    """`sft_qwen2.5-1.5b.yaml` (2 epochs, batch 1, accumulation 16) on 8 records: 2 optimizer
    steps, and a warning (it used to say nothing)."""
    s = load_settings("sft", "masksearch/training/configs/sft_qwen2.5-1.5b.yaml")
    with caplog.at_level(logging.INFO, logger="masksearch.training.plan"):
        plan = announce(sft_plan(s.args, [1000] * 8, label_counts=[300] * 8))
    assert plan.optimizer_steps == 2 and plan.samples_per_step == 16
    assert plan.tokens_per_step == 8000 and plan.trained_tokens_per_step == 2400
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("only 2 optimizer step(s)" in w for w in warnings)
    # on 8 GPUs, 20,000 records: 128 sequences a step, 157 steps an epoch, 10 % warm-up
    big = sft_plan(s.args, [1000] * 20_000, world_size=8)
    assert big.samples_per_step == 128 and big.optimizer_steps == 2 * 157
    assert big.warmup_steps == pytest.approx(0.1 * 314, abs=1) and not big.warnings()


def test_rl_plan_counts_completions_and_max_steps():
    s = load_settings("rl", "masksearch/training/configs/rl_qwen2.5-1.5b.yaml")
    plan = rl_plan(s.args, 20_000, prompt_tokens=[400] * 10, world_size=8)
    assert plan.optimizer_steps == 1005  # max_steps wins over epochs
    assert plan.samples_per_step == 10 * 4 * 8  # completions
    assert plan.warmup_steps == 287  # ceil(0.285 × 1005), as transformers computes it
    assert plan.tokens_per_step == 320 * (400 + 3072)
    assert "64 prompt(s) × 5 generations per step" in plan.lines()
    s.args.max_steps = 3
    small = rl_plan(s.args, 8)
    assert small.optimizer_steps == 3 < MIN_OPTIMIZER_STEPS and small.warnings()
