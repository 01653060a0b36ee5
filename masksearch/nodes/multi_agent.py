"""Multi-agent (teacher) nodes: planner → rewriter → [search] → observer → … → answer.

Every node returns a `Command` (partial update + next node); none mutates the state.
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Command

from masksearch import prompts
from masksearch.graph.state import GraphState
from masksearch.nodes.common import call_model, context_of, forced_answer_command, step, user
from masksearch.tagformat import ParseError, parse_action, parse_rewrites, strip_tags


async def planner(state: GraphState, runtime: Runtime) -> Command[Literal["rewriter", "judge"]]:
    """First decision: a sub-query to search, or (rarely) a direct answer."""
    ctx = context_of(runtime)
    question = state["question"]
    text, meta = await call_model(
        ctx, "planner", user(prompts.PLANNER.substitute(question=question))
    )
    action = parse_action(text)
    if action.kind == "answer":
        return Command(
            goto="judge",
            update={
                "final_think": action.think,
                "final_answer": action.answer,
                "status": "answered",
                "steps": [step("planner", 0, text, meta)],
            },
        )
    if action.kind == "search":
        subquery = "; ".join(action.queries)
        think, error = action.think, ""
    else:  # malformed: search the question itself, keep the prose as the thought
        subquery, think, error = question, action.think or strip_tags(text), action.error
    pending = {"think": think, "subquery": subquery, "queries": []}
    return Command(
        goto="rewriter",
        update={
            "pending": pending,
            "status": "running",
            "steps": [step("planner", 0, text, meta, queries=[subquery], parse_error=error)],
        },
    )


async def rewriter(state: GraphState, runtime: Runtime) -> Command[Literal["search"]]:
    """Sub-query → 1..num_rewrites search queries (JSON); falls back to the sub-query itself."""
    ctx = context_of(runtime)
    pending = dict(state.get("pending") or {})
    subquery = pending.get("subquery") or state["question"]
    prompt = prompts.REWRITER.substitute(
        question=state["question"], subquery=subquery, num_rewrites=ctx.num_rewrites
    )
    text, meta = await call_model(ctx, "rewriter", user(prompt))
    try:
        queries, error = parse_rewrites(text, max_queries=ctx.num_rewrites), ""
    except ParseError as e:
        queries, error = [subquery], f"fallback to sub-query: {e}"
    pending["queries"] = queries
    turn = state.get("turn", 0) + 1
    return Command(
        goto="search",
        update={
            "pending": pending,
            "steps": [step("rewriter", turn, text, meta, queries=queries, parse_error=error)],
        },
    )


async def observer(
    state: GraphState, runtime: Runtime
) -> Command[Literal["rewriter", "force_answer", "judge"]]:
    """Summarize the latest results with ALL earlier summaries in view; answer or search again."""
    ctx = context_of(runtime)
    rounds = state.get("rounds", [])
    latest = rounds[-1]
    turn = state.get("turn", len(rounds))
    left = ctx.max_turns - turn
    budget = prompts.OBSERVER_LAST if left <= 0 else prompts.OBSERVER_BUDGET.substitute(left=left)
    history = prompts.render_history(_with_summaries(rounds[:-1], state.get("summaries", [])))
    prompt = prompts.OBSERVER.substitute(
        question=state["question"],
        history=history,
        subquery=latest.get("subquery", ""),
        queries="; ".join(latest.get("queries", [])),
        observation=latest["observation"],
        budget=budget,
    )
    text, meta = await call_model(ctx, "observer", user(prompt))
    action = parse_action(text)
    summary = action.think or strip_tags(text)
    update = {"summaries": [summary]}
    if action.kind == "answer":  # kept even on the last turn
        return Command(
            goto="judge",
            update={
                **update,
                "final_think": action.think,
                "final_answer": action.answer,
                "status": "answered",
                "steps": [step("observer", turn, text, meta)],
            },
        )
    if action.kind == "search" and left > 0:
        pending = {"think": action.think, "subquery": "; ".join(action.queries), "queries": []}
        return Command(
            goto="rewriter",
            update={
                **update,
                "pending": pending,
                "steps": [step("observer", turn, text, meta, queries=action.queries)],
            },
        )
    reason = "turn limit reached" if action.kind == "search" else action.error
    return Command(
        goto="force_answer",
        update={**update, "steps": [step("observer", turn, text, meta, parse_error=reason)]},
    )


async def force_answer(state: GraphState, runtime: Runtime) -> Command[Literal["judge"]]:
    """Out of turns (or no usable decision): answer from what was gathered."""
    ctx = context_of(runtime)
    rounds = state.get("rounds", [])
    history = prompts.render_history(_with_summaries(rounds, state.get("summaries", [])))
    prompt = prompts.FORCE_ANSWER.substitute(question=state["question"], history=history)
    text, meta = await call_model(ctx, "answer", user(prompt))
    return forced_answer_command(text, meta, state.get("turn", 0))


def _with_summaries(rounds: list, summaries: list[str]) -> list[dict]:
    return [
        {**r, "summary": summaries[i] if i < len(summaries) else ""} for i, r in enumerate(rounds)
    ]
