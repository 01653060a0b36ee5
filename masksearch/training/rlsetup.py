"""RL set-up shared by GRPO (`grpo.py`) and PPO (`ppo.py`): the question rows, the retriever,
the judge model, the rewards and the multi-turn search rollout, built the same way for both."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from masksearch.errors import ConfigError, InputError
from masksearch.training.config import RLSettings

__all__ = [
    "RLStart",
    "build_rewards",
    "build_rl_rows",
    "load_judge_model",
    "make_policy_generator",
    "make_rollout",
    "make_score_fn",
    "resolve_questions",
    "resolve_retriever",
    "rollout_engine",
    "start_rl",
]

log = logging.getLogger(__name__)


def build_rl_rows(questions: list[dict[str, Any]], settings: RLSettings) -> list[dict[str, Any]]:
    """Dataset rows with the student prompt the graph uses, ordered by curriculum if enabled."""
    from masksearch.prompts import render_student_prompt
    from masksearch.training.curriculum import curriculum_rows

    rows = [
        {
            "prompt": render_student_prompt(q["question"], q.get("task")),
            "question": q["question"],
            "answers": list(q["answers"]),
            "task": q.get("task", "ramp"),
            "k": int(q.get("k", 0)),
            "id": str(q.get("id", i)),
        }
        for i, q in enumerate(questions)
    ]
    return curriculum_rows(rows, settings.curriculum, seed=settings.args.seed)


def make_rollout(
    settings: RLSettings,
    retriever: Any,
    tokenizer: Any,
    *,
    score_fn: Any = None,
    rows: list[dict[str, Any]] | None = None,
    cls: type | None = None,
) -> Any:
    from masksearch.student import Decoding
    from masksearch.training.rollout import SearchRollout

    args = settings.args
    decoding = Decoding.from_trl_args(args)
    return (cls or SearchRollout)(
        retriever,
        tokenizer,
        topk=settings.topk,
        max_turns=settings.max_turns,
        max_turn_tokens=settings.max_turn_tokens,
        max_obs_tokens=settings.max_obs_tokens,
        max_completion_length=args.max_completion_length,
        decoding=decoding,
        rollout_batch_size=settings.rollout_batch_size,
        policy_generator=make_policy_generator(settings, tokenizer, decoding, rows),
        tool_role=settings.tool_role,
        max_passages=settings.max_passages,
        num_generations=args.num_generations,
        score_fn=score_fn,
        refill_rows=rows,
        max_resample_rounds=settings.dapo.max_resample_rounds,
        seed=args.seed,
    )


def rollout_engine(settings: RLSettings) -> str:
    """`hf`, `vllm` or `llama_cpp`: what decodes this run's rollouts (`rollout_engine`)."""
    choice = settings.rollout_engine
    if choice not in ("auto", "hf", "llama_cpp"):
        raise ConfigError(f"rollout_engine must be auto, hf or llama_cpp, got {choice!r}")
    if getattr(settings.args, "use_vllm", False):
        if choice == "llama_cpp":
            raise ConfigError("rollout_engine: llama_cpp and use_vllm: true exclude each other")
        return "vllm"
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():  # each rank holds a shard: no whole policy to write to GGUF
        if choice == "llama_cpp":
            raise ConfigError("rollout_engine: llama_cpp needs whole weights; not under ZeRO-3")
        return "hf"
    if choice != "auto":
        return choice
    import importlib.util

    import torch

    from masksearch.training.llamacpp_rollout import policy_base_gguf

    on_cpu = bool(getattr(settings.args, "use_cpu", False)) or not torch.cuda.is_available()
    if not on_cpu or importlib.util.find_spec("llama_cpp") is None:
        return "hf"
    return "llama_cpp" if policy_base_gguf(settings.model, settings.gguf_base) else "hf"


def make_policy_generator(
    settings: RLSettings, tokenizer: Any, decoding: Any, rows: list[dict[str, Any]] | None
) -> Any:
    """The llama.cpp rollout generator when `rollout_engine` resolves to it, else None."""
    if rollout_engine(settings) != "llama_cpp":
        return None
    from pathlib import Path

    from masksearch.models.students import QTYPES
    from masksearch.training.chat import ChatRenderer
    from masksearch.training.llamacpp_rollout import LlamaCppGenerator, policy_base_gguf

    if settings.rollout_qtype not in QTYPES:
        raise ConfigError(
            f"rollout_qtype must be one of {', '.join(QTYPES)}, got {settings.rollout_qtype!r}"
        )
    base = policy_base_gguf(settings.model, settings.gguf_base)
    if base is None:
        raise ConfigError(
            "rollout_engine: llama_cpp needs a base GGUF for the policy's metadata and tokenizer: "
            "set gguf_base (e.g. local:smollm2-135m)"
        )
    args = settings.args
    renderer = ChatRenderer(tokenizer, tool_role=settings.tool_role)
    # the longest rendered prompt (PPO builds its rollout before it has rows: a generous bound)
    longest = max((len(renderer.prompt_ids(list(r["prompt"]))) for r in rows or []), default=2048)
    episodes = int(args.per_device_train_batch_size) * int(args.steps_per_generation or 1)
    log.info(
        "rollouts: llama.cpp on the policy written to GGUF (%s, base %s)",
        settings.rollout_qtype,
        base,
    )
    return LlamaCppGenerator(
        base,
        decoding,
        eos_id=tokenizer.eos_token_id,
        # one file per process (ranks of a multi-process CPU run each write their own copy)
        workdir=Path(args.output_dir) / "rollout-gguf" / f"rank{os.environ.get('RANK', '0')}",
        n_ctx=longest + int(args.max_completion_length) + 8,
        parallel=max(1, min(episodes, 16)),
        qtype=settings.rollout_qtype,
        seed=int(args.seed),
    )


def build_rewards(settings: RLSettings, judge_model: Any = None) -> tuple[list[Any], list[float]]:
    """Reward functions and their weights: the configured rewards, plus DAPO's soft overlong
    penalty over the model's own tokens (`rewards.make_overlong_penalty`) when
    `dapo.overlong_buffer` > 0."""
    from masksearch.training.rewards import build_reward_funcs, make_overlong_penalty

    funcs = build_reward_funcs(
        settings.rewards,
        hybrid=settings.hybrid,
        judge_model=judge_model,
        judge_timeout_s=settings.judge_timeout_s,
        judge_batch_size=settings.judge_batch_size,
    )
    if settings.dapo.overlong_buffer > 0:
        funcs.append(
            make_overlong_penalty(
                settings.args.max_completion_length,
                settings.dapo.overlong_buffer,
                settings.dapo.overlong_penalty,
            )
        )
    weights = list(settings.args.reward_weights or [1.0] * len(funcs))
    if len(weights) != len(funcs):
        raise ConfigError(
            f"reward_weights has {len(weights)} value(s) for {len(funcs)} reward function(s)"
        )
    return funcs, weights


def resolve_questions(
    settings: RLSettings, questions: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The training questions: the given ones, else `settings.questions` loaded (with its
    `accepted_only` and `limit`)."""
    if questions is not None:
        return questions
    if not settings.questions:
        raise InputError("no questions given (set `questions:` or pass --records)")
    from masksearch.training.data import load_questions

    return load_questions(
        settings.questions, accepted_only=settings.accepted_only, limit=settings.limit
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


def load_judge_model(settings: RLSettings, judge_model: Any = None) -> Any:
    """The LLM judge the rewards use: the given one, else `settings.judge_model` loaded, else
    None (rule rewards only)."""
    if judge_model is None and settings.judge_model:
        from masksearch.models import load_chat_model

        judge_model = load_chat_model(settings.judge_model)
    return judge_model


def make_score_fn(reward_funcs: list[Any], weights: list[float]) -> Any:
    """score(rows, trajectories) → weighted reward sums, as the trainer will compute them."""

    def score(rows: list[dict[str, Any]], trajs: list[Any]) -> list[float]:
        if not trajs:
            return []
        cols = {k: [r.get(k) for r in rows] for k in ("answers", "task", "k", "question")}
        kwargs = dict(
            prompts=[r["prompt"] for r in rows],
            completions=[[{"role": "assistant", "content": ""}] for _ in trajs],
            completion_ids=[t.completion_ids for t in trajs],
            env_mask=[t.env_mask for t in trajs],
            model_tokens=[t.model_tokens for t in trajs],
            trajectory=[t.turns for t in trajs],
            **cols,
        )
        per_func = [f(**kwargs) for f in reward_funcs]
        return [
            sum(w * float(fr[i] or 0.0) for w, fr in zip(weights, per_func, strict=True))
            for i in range(len(trajs))
        ]

    return score


@dataclass
class RLStart:
    """What GRPO and PPO both start from."""

    questions: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # `build_rl_rows(questions)`
    retriever: Any
    tokenizer: Any
    reward_funcs: list[Any]
    reward_weights: list[float]


def start_rl(
    settings: RLSettings,
    *,
    questions: list[dict[str, Any]] | None = None,
    retriever: Any = None,
    tokenizer: Any = None,
    judge_model: Any = None,
) -> RLStart:
    """An RL run's start-up: log the devices, then resolve the questions (and their rows), the
    retriever, the tokenizer and the rewards (with the judge); each given part is used as is."""
    from masksearch.training.devices import device_summary
    from masksearch.training.modeling import resolve_tokenizer

    log.info("%s", device_summary())
    questions = resolve_questions(settings, questions)
    retriever = resolve_retriever(settings, retriever)
    tokenizer = resolve_tokenizer(settings, tokenizer)
    reward_funcs, weights = build_rewards(settings, load_judge_model(settings, judge_model))
    return RLStart(
        questions=questions,
        rows=build_rl_rows(questions, settings),
        retriever=retriever,
        tokenizer=tokenizer,
        reward_funcs=reward_funcs,
        reward_weights=weights,
    )
