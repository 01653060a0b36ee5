"""RL set-up shared by GRPO (`grpo.py`) and PPO (`ppo.py`): the question rows, the retriever,
the judge model, the rewards and the multi-turn search rollout, built the same way for both."""

from __future__ import annotations

from typing import Any

from masksearch.errors import ConfigError
from masksearch.training.config import RLSettings

__all__ = [
    "build_rewards",
    "build_rl_rows",
    "load_judge_model",
    "make_rollout",
    "resolve_retriever",
]


def build_rl_rows(questions: list[dict[str, Any]], settings: RLSettings) -> list[dict[str, Any]]:
    """Dataset rows with the student prompt the graph uses, ordered by curriculum if enabled."""
    from masksearch.prompts import render_student_prompt
    from masksearch.training.curriculum import curriculum_rows

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
    from masksearch.training.rollout import SearchRollout

    args = settings.args
    return (cls or SearchRollout)(
        retriever,
        tokenizer,
        topk=settings.topk,
        max_turns=settings.max_turns,
        max_turn_tokens=settings.max_turn_tokens,
        max_obs_tokens=settings.max_obs_tokens,
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        top_p=args.top_p,
        tool_role=settings.tool_role,
        max_passages=settings.max_passages,
        num_generations=args.num_generations,
        score_fn=score_fn,
        refill_rows=rows,
        max_resample_rounds=settings.dapo.max_resample_rounds,
        seed=args.seed,
    )


def build_rewards(settings: RLSettings, judge_model: Any = None) -> tuple[list[Any], list[float]]:
    """Reward functions and their weights: the configured rewards, plus DAPO's soft overlong
    penalty (TRL's `get_soft_overlong_punishment`) when `dapo.overlong_buffer` > 0."""
    from masksearch.training.rewards import build_reward_funcs

    funcs = build_reward_funcs(
        settings.rewards,
        hybrid=settings.hybrid,
        judge_model=judge_model,
        judge_timeout_s=settings.judge_timeout_s,
        judge_batch_size=settings.judge_batch_size,
    )
    if settings.dapo.overlong_buffer > 0:
        from trl.rewards import get_soft_overlong_punishment

        funcs.append(
            get_soft_overlong_punishment(
                settings.args.max_completion_length, settings.dapo.overlong_buffer
            )
        )
    weights = list(settings.args.reward_weights or [1.0] * len(funcs))
    if len(weights) != len(funcs):
        raise ConfigError(
            f"reward_weights has {len(weights)} value(s) for {len(funcs)} reward function(s)"
        )
    return funcs, weights


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
