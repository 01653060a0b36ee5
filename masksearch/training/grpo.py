"""RL with TRL's `GRPOTrainer` and the DAPO loss, over multi-turn search rollouts.

- `loss_type="dapo"` (token-level normalisation over the global batch), clip-higher via
  `epsilon_high` (0.28) and overlong filtering via `mask_truncated_completions`.
- Rollouts come from `SearchRollout` (a TRL `rollout_func`): the policy searches our retriever;
  retrieved tokens carry `env_mask` 0, which TRL multiplies into the loss mask.
- Rewards are the rule functions in `masksearch.training.rewards` (hybrid by default).
- Curriculum by mask count: the dataset is ordered by stage and TRL's shuffling is turned off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from masksearch.errors import ConfigError, InputError
from masksearch.training.config import RLSettings

log = logging.getLogger(__name__)


def build_rl_rows(questions: list[dict[str, Any]], settings: RLSettings) -> list[dict[str, Any]]:
    """Dataset rows with the student prompt the graph uses, ordered by curriculum if enabled."""
    from masksearch.prompts import render_student_prompt
    from masksearch.training.curriculum import curriculum_order

    rows = [
        {
            "prompt": render_student_prompt(q["question"]),
            "question": q["question"],
            "answers": list(q["answers"]),
            "task": q.get("task", "ramp"),
            "k": int(q.get("k", 0)),
            "id": str(q.get("id", i)),
        }
        for i, q in enumerate(questions)
    ]
    cur = settings.curriculum
    if cur.enabled:
        plan = curriculum_order(
            [r["k"] for r in rows],
            cur.stages,
            mode=cur.mode,
            shuffle_within_stage=cur.shuffle_within_stage,
            seed=settings.seed,
        )
        rows = [rows[i] for i in plan.order]
        log.info("curriculum: stages %s start at rows %s", plan.stages, plan.boundaries)
    return rows


def grpo_config(settings: RLSettings) -> Any:
    from trl import GRPOConfig

    from masksearch.training.modeling import use_bf16

    if settings.loss_type != "dapo":
        log.warning(
            "loss_type=%r: MaskSearch trains with DAPO (loss_type='dapo')", settings.loss_type
        )
    args: dict[str, Any] = dict(
        output_dir=settings.output_dir,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        top_p=settings.top_p,
        beta=settings.beta,
        epsilon=settings.epsilon,
        epsilon_high=settings.epsilon_high,
        loss_type=settings.loss_type,
        mask_truncated_completions=settings.mask_truncated_completions,
        max_steps=settings.max_steps,
        num_train_epochs=settings.num_train_epochs,
        warmup_steps=settings.warmup_ratio,  # float in [0, 1) = ratio (transformers 5)
        lr_scheduler_type=settings.lr_scheduler_type,
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        seed=settings.seed,
        report_to=settings.report_to,
        bf16=use_bf16(settings.dtype),
        reward_weights=settings.reward_weights,
        shuffle_dataset=not settings.curriculum.enabled,
    )
    if settings.gradient_checkpointing:
        args["gradient_checkpointing"] = True
    args.update(settings.trainer_args)
    return GRPOConfig(**args)


def make_rollout(settings: RLSettings, retriever: Any, tokenizer: Any) -> Any:
    from masksearch.training.rollout import SearchRollout

    return SearchRollout(
        retriever,
        tokenizer,
        topk=settings.topk,
        max_turns=settings.max_turns,
        max_turn_tokens=settings.max_turn_tokens,
        max_obs_tokens=settings.max_obs_tokens,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        top_p=settings.top_p,
        tool_role=settings.tool_role,
        max_passages=settings.max_passages,
    )


def resolve_retriever(settings: RLSettings, retriever: Any = None) -> Any:
    if retriever is not None:
        return retriever
    if not settings.retriever:
        raise ConfigError(
            "RL needs a retriever (set `retriever:` to a spec such as bm25:<index_dir>)"
        )
    from masksearch.retrievers import load_retriever

    return load_retriever(settings.retriever)


def train_grpo(
    settings: RLSettings,
    *,
    questions: list[dict[str, Any]] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    retriever: Any = None,
    judge_model: Any = None,
    callbacks: list[Any] | None = None,
    rollout: Any = None,
    save: bool = True,
) -> dict[str, Any]:
    """Run GRPO/DAPO with search rollouts; returns run stats."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from masksearch.training.data import load_questions
    from masksearch.training.modeling import device_summary, load_model, load_tokenizer, lora_config
    from masksearch.training.rewards import build_reward_funcs

    log.info("%s", device_summary())
    if questions is None:
        if not settings.questions:
            raise InputError("no questions given (set `questions:` or pass --records)")
        questions = load_questions(
            settings.questions, accepted_only=settings.accepted_only, limit=settings.limit
        )
    retriever = resolve_retriever(settings, retriever)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(settings)
    tokenizer.padding_side = "left"
    if judge_model is None and settings.judge_model:
        from masksearch.models import load_chat_model

        judge_model = load_chat_model(settings.judge_model)
    reward_funcs = build_reward_funcs(
        settings.rewards, hybrid=settings.hybrid, judge_model=judge_model
    )
    dataset = Dataset.from_list(build_rl_rows(questions, settings))
    model = model if model is not None else load_model(settings)
    if (
        settings.beta
        and not settings.lora.enabled
        and not getattr(model.config, "_name_or_path", "")
    ):
        raise ConfigError(
            "beta > 0 needs a reference model, which TRL reloads from the policy's path; "
            "give `model:` as a path/hub id (not an in-memory model) or set beta: 0"
        )
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=grpo_config(settings),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora),
        callbacks=callbacks,
        rollout_func=rollout or make_rollout(settings, retriever, tokenizer),
    )
    result = trainer.train()
    if save:
        trainer.save_model(settings.output_dir)
        tokenizer.save_pretrained(settings.output_dir)
    stats = {
        "output_dir": str(Path(settings.output_dir)),
        "prompts": len(dataset),
        "train_loss": float(result.training_loss),
        "global_step": int(result.global_step),
    }
    log.info("GRPO done: %s", stats)
    return stats
