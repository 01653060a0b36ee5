"""Single-agent (student) nodes: one model emits `<think>` + `<search>`/`<answer>` directly.

The rules of a turn are `masksearch.student.student_step`, shared with the RL rollout and eval.
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Command

from masksearch.graph.state import GraphState, Round
from masksearch.nodes.common import call_model, context_of, forced_answer_command, step
from masksearch.student import (
    FORCE_STOP,
    STOP_STRINGS,
    force_answer_messages,
    student_messages,
    student_step,
)


async def agent(
    state: GraphState, runtime: Runtime
) -> Command[Literal["search", "agent", "agent_force_answer", "judge"]]:
    ctx = context_of(runtime)
    rounds = state.get("rounds", [])
    turn = state.get("turn", 0)
    raw, meta = await call_model(
        ctx, "agent", student_messages(state["question"], rounds), stop=list(STOP_STRINGS)
    )
    result = student_step(raw, turn, ctx.max_turns)
    text, action = result.text, result.action
    if result.kind == "answer":
        return Command(
            goto="judge",
            update={
                "final_think": action.think,
                "final_answer": action.answer,
                "status": "answered",
                "steps": [step("agent", turn, text, meta)],
            },
        )
    if result.kind == "force_answer":
        return Command(
            goto="agent_force_answer",
            update={"steps": [step("agent", turn, text, meta, parse_error=result.error)]},
        )
    if result.kind == "search":
        pending = {"think": action.think, "subquery": "", "queries": action.queries}
        return Command(
            goto="search",
            update={
                "pending": pending,
                "steps": [step("agent", turn, text, meta, queries=action.queries)],
            },
        )
    invalid: Round = {
        "turn": turn + 1,
        "kind": "invalid",
        "think": action.think,
        "subquery": "",
        "queries": [],
        "observation": result.observation,
        "passages": [],
        "raw": text,
    }
    return Command(
        goto="agent",
        update={
            "rounds": [invalid],
            "turn": turn + 1,
            "steps": [step("agent", turn, text, meta, parse_error=result.error)],
        },
    )


async def agent_force_answer(state: GraphState, runtime: Runtime) -> Command[Literal["judge"]]:
    """Turn budget used: one last generation that must answer (Search-R1's final no-search step)."""
    ctx = context_of(runtime)
    msgs = force_answer_messages(state["question"], state.get("rounds", []))
    raw, meta = await call_model(ctx, "agent", msgs, stop=list(FORCE_STOP))
    result = student_step(raw, state.get("turn", 0), ctx.max_turns, forced=True)
    return forced_answer_command(result.text, meta, state.get("turn", 0))
