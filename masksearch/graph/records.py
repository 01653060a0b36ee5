"""Graph state → `TrajectoryRecord` (student `messages` view + teacher `steps` view)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from masksearch import prompts
from masksearch.context import Context
from masksearch.records import (
    SCHEMA_VERSION,
    Message,
    Status,
    Step,
    TrajectoryRecord,
    validate_record,
)
from masksearch.scoring import score_answer, task_of
from masksearch.student import student_messages
from masksearch.types import MaskedExample

LLM_AGENTS = {"planner", "rewriter", "observer", "answer", "judge", "agent"}


def render_messages(state: dict[str, Any]) -> list[dict[str, str]]:
    """Student view: system, user, (assistant search turn, tool information)*, final assistant answer."""
    msgs = student_messages(state.get("question", ""), list(state.get("rounds", [])))
    answer = state.get("final_answer", "")
    if answer:
        msgs.append(
            {
                "role": "assistant",
                "content": prompts.assistant_answer_turn(state.get("final_think", ""), answer),
            }
        )
    return msgs


def with_search_results(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The state's steps, search steps completed with their round's observation and passages
    (the state keeps those once, in `rounds`)."""
    by_turn = {r["turn"]: r for r in state.get("rounds", []) if r.get("kind") == "search"}
    steps = []
    for s in state.get("steps", []):
        s = dict(s)
        rnd = by_turn.get(s.get("turn", -1))
        if s.get("agent") == "search" and rnd is not None and not s.get("output"):
            s["output"] = rnd["observation"]
            s["passages"] = list(rnd["passages"])
        steps.append(s)
    return steps


def state_to_record(
    state: dict[str, Any],
    *,
    example: MaskedExample,
    context: Context | None,
    thread_id: str,
    error: str | None = None,
) -> TrajectoryRecord:
    """Build a validated record. `error` marks a failed run (whatever state exists is kept).
    `context` is None only for a run outside the graph (a custom runner): no settings recorded."""
    steps = with_search_results(state)
    status = "failed" if error else state.get("status", "max_turns")
    if status == "running":
        status = "failed"
        error = error or "run ended without a final answer"
    answer = state.get("final_answer", "") if status != "failed" else ""
    scores = dict(state.get("scores") or {})
    if not scores:
        scores = (
            score_answer(answer, example.answers, example.task)
            if answer
            else {"recall": 0.0, "em": 0.0, "f1": 0.0}
        )
    llm_steps = [s for s in steps if s.get("agent") in LLM_AGENTS]
    search_steps = [s for s in steps if s.get("agent") == "search"]
    llm_s = sum(float(s.get("latency_s", 0.0)) for s in llm_steps)
    search_s = sum(float(s.get("latency_s", 0.0)) for s in search_steps)
    record: TrajectoryRecord = {
        "schema_version": SCHEMA_VERSION,
        "id": example.id,
        "thread_id": thread_id,
        "task": example.task or task_of(state),
        "question": example.question,
        "answers": list(example.answers),
        "messages": cast(
            list[Message],
            render_messages({**state, "question": example.question, "final_answer": answer}),
        ),
        "steps": cast(list[Step], steps),
        "final_answer": answer,
        "status": cast(Status, status),
        "error": error,
        "scores": {k: float(v) for k, v in scores.items()},
        "accepted": bool(state.get("accepted", False)) and status == "answered",
        "models": context.models() if context is not None else {},
        "usage": {
            "prompt_tokens": sum(int(s.get("prompt_tokens", 0)) for s in llm_steps),
            "completion_tokens": sum(int(s.get("completion_tokens", 0)) for s in llm_steps),
            "search_calls": len(search_steps),
            "llm_calls": len(llm_steps),
        },
        "timings": {
            "total_s": round(llm_s + search_s, 4),
            "llm_s": round(llm_s, 4),
            "search_s": round(search_s, 4),
        },
        "meta": {
            "k": example.k,
            "source_id": example.source_id,
            "title": example.title,
            "strategy": example.strategy,
            "turns": int(state.get("turn", 0)),
            "forced_answer": bool(state.get("forced", False)),
            **_context_meta(context),
        },
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return validate_record(record)


def _context_meta(context: Context | None) -> dict[str, Any]:
    if context is None:
        return {}
    return {
        "agent_mode": context.agent_mode,
        "retriever": context.retriever,
        "top_k": context.top_k,
        "max_turns": context.max_turns,
        "recall_threshold": context.recall_threshold,
    }


def failed_record(
    example: MaskedExample, context: Context | None, error: BaseException | str, thread_id: str = ""
) -> TrajectoryRecord:
    """The record of an example whose run raised outside the graph's own handling (no state);
    secrets in the error text are redacted."""
    from masksearch.redact import redact

    err = redact(error if isinstance(error, str) else f"{type(error).__name__}: {error}")
    return state_to_record({}, example=example, context=context, thread_id=thread_id, error=err)
