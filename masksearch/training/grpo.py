"""RL with TRL's `GRPOTrainer` and the full DAPO recipe, over multi-turn search rollouts.

DAPO, each piece behind a setting:
- clip-higher: `epsilon_high` (0.28) — a `GRPOConfig` key;
- token-level loss: `loss_type: dapo` — a `GRPOConfig` key;
- overlong filtering: `mask_truncated_completions` — a `GRPOConfig` key (only episodes cut by the
  token budget end without EOS, see `rollout.py`);
- soft overlong penalty: `dapo.overlong_buffer` > 0 adds `rewards.make_overlong_penalty`, a ramp to
  `-dapo.overlong_penalty` over the last `overlong_buffer` tokens before `max_completion_length`,
  counted over the model's own tokens only (retrieved `<information>` text excluded: TRL's
  `get_soft_overlong_punishment` counts every completion token, tool turns included);
- dynamic sampling: `dapo.dynamic_sampling` — groups whose rewards are all equal are dropped and
  refilled with fresh questions inside the rollout (`SearchRollout.run_dynamic`).

Rollouts come from `SearchRollout` (a TRL `rollout_func`): the policy searches our retriever;
retrieved tokens carry `env_mask` 0, which TRL multiplies into the loss mask. Generation is HF
`generate`, or vLLM with `use_vllm: true` (`vllm_mode: colocate` or `server`, TRL's own engine).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from masksearch.errors import ConfigError
from masksearch.training.config import RLSettings
from masksearch.training.rlsetup import build_rl_rows, make_rollout, make_score_fn, start_rl

log = logging.getLogger(__name__)


def grpo_args(settings: RLSettings) -> Any:
    """The run's `GRPOConfig` (`settings.args`), checked against what our rollout needs."""
    args = settings.args
    if args.loss_type != "dapo":
        log.warning("loss_type=%r: MaskSearch trains with DAPO (loss_type='dapo')", args.loss_type)
    if settings.dapo.dynamic_sampling and settings.algorithm == "grpo":
        per_gen = args.per_device_train_batch_size * args.steps_per_generation
        if per_gen % args.num_generations:
            raise ConfigError(
                "dynamic sampling refills whole groups on each process: make "
                f"per_device_train_batch_size × steps_per_generation ({per_gen}) a multiple of "
                f"num_generations ({args.num_generations}), or set dapo.dynamic_sampling: false"
            )
    return args


def load_eval_sets(settings: RLSettings) -> dict[str, list[dict[str, Any]]]:
    """Held-out question sets by name (file stem), e.g. RAMP recall and a QA set."""
    from masksearch.training.data import load_questions

    out = {}
    for path in settings.eval_questions:
        out[Path(path).stem] = load_questions(path, limit=settings.eval_limit)
    return out


def build_grpo_trainer(
    settings: RLSettings,
    *,
    questions: list[dict[str, Any]] | None = None,
    eval_questions: dict[str, list[dict[str, Any]]] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    retriever: Any = None,
    judge_model: Any = None,
    callbacks: list[Any] | None = None,
    rollout: Any = None,
) -> Any:
    """The configured `GRPOTrainer` (questions, rewards, rollout, eval sets), not yet trained."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from masksearch.training.modeling import lora_config, resolve_policy

    args = grpo_args(settings)
    start = start_rl(
        settings,
        questions=questions,
        retriever=retriever,
        tokenizer=tokenizer,
        judge_model=judge_model,
    )
    if eval_questions is None:
        eval_questions = load_eval_sets(settings)
    tokenizer, rows = start.tokenizer, start.rows
    tokenizer.padding_side = "left"
    reward_funcs, weights = start.reward_funcs, start.reward_weights
    dataset = Dataset.from_list(rows)
    eval_dataset = (
        {
            name: Dataset.from_list(build_rl_rows(qs, settings))
            for name, qs in eval_questions.items()
        }
        if eval_questions
        else None
    )
    if rollout is None:
        rollout = make_rollout(
            settings,
            start.retriever,
            tokenizer,
            score_fn=make_score_fn(reward_funcs, weights)
            if settings.dapo.dynamic_sampling
            else None,
            rows=rows,
        )
    model = resolve_policy(settings, model)
    if args.beta and not settings.lora.enabled and not getattr(model.config, "_name_or_path", ""):
        raise ConfigError(
            "beta > 0 needs a reference model, which TRL reloads from the policy's path; "
            "give `model:` as a path/hub id (not an in-memory model) or set beta: 0"
        )
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental
    return GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora),
        callbacks=callbacks,
        rollout_func=rollout,
    )


def train_grpo(
    settings: RLSettings,
    *,
    save: bool = True,
    **parts: Any,
) -> dict[str, Any]:
    """Run GRPO/DAPO with search rollouts; returns run stats. `parts` are `build_grpo_trainer`'s
    keyword arguments (questions, model, tokenizer, retriever, rollout, …)."""
    from masksearch.training.modeling import check_trainable_fp32, resolve_resume
    from masksearch.training.plan import announce, rl_plan

    trainer = build_grpo_trainer(settings, **parts)
    args, tokenizer = trainer.args, trainer.processing_class
    check_trainable_fp32(trainer.model)
    rollout = getattr(trainer, "rollout_func", None)
    decoding = getattr(rollout, "decoding", None)
    plan = announce(
        rl_plan(
            args,
            len(trainer.train_dataset),
            prompt_tokens=_prompt_lengths(tokenizer, trainer.train_dataset),
            world_size=getattr(args, "world_size", 1),
            decoding=decoding.to_dict() if decoding is not None else None,
        )
    )
    result = trainer.train(
        resume_from_checkpoint=resolve_resume(settings.resume_from_checkpoint, args.output_dir)
    )
    if save:
        trainer.save_model(args.output_dir)
        tokenizer.save_pretrained(args.output_dir)
    stats = {
        "output_dir": str(Path(args.output_dir)),
        "prompts": len(trainer.train_dataset),
        "train_loss": float(result.training_loss),
        "global_step": int(result.global_step),
        "planned_steps": plan.optimizer_steps,
    }
    log.info("GRPO done: %s", stats)
    return stats


def _prompt_lengths(tokenizer: Any, dataset: Any, sample: int = 64) -> list[int]:
    """Token counts of (up to `sample`) rendered prompts, for the run plan's token estimate."""
    from masksearch.training.chat import ChatRenderer

    renderer = ChatRenderer(tokenizer)
    out = []
    for i in range(min(sample, len(dataset))):
        try:
            out.append(len(renderer.prompt_ids(list(dataset[i]["prompt"]))))
        except Exception:  # noqa: BLE001 - an estimate only; never stops training
            return out
    return out
