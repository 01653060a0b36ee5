"""Single-agent (student) nodes: one model emits `<think>` + `<search>`/`<answer>` directly.

The rules of a turn are `masksearch.student.student_step`, shared with the RL rollout and eval.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from masksearch.context import Context
from masksearch.nodes.common import (
    ai_message,
    answered,
    call_model,
    context_of,
    forced_answer_update,
    question_of,
    step,
)
from masksearch.resources import Resources
from masksearch.state import GraphState, Pending, Round
from masksearch.student import (
    FORCE_STOP,
    STOP_STRINGS,
    force_answer_messages,
    student_messages,
    student_step,
)


async def agent(
    state: GraphState, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """One student turn: answer, search, an invalid action (corrective tool turn), or — at the
    turn limit — hand over to the forced answer."""
    ctx = context_of(runtime)
    rounds = state.get("rounds", [])
    turn = state.get("turn", 0)
    raw, meta = await call_model(
        ctx,
        "agent",
        student_messages(question_of(state), rounds),
        stop=list(STOP_STRINGS),
        resources=resources,
    )
    result = student_step(raw, turn, ctx.max_turns)
    text, action = result.text, result.action
    if result.kind == "answer":
        return answered(action, "agent", turn, text, meta)
    if result.kind == "force_answer":
        return {
            "decision": "force",
            "pending": None,
            "steps": [step("agent", turn, text, meta, parse_error=result.error)],
            "messages": [ai_message("agent", text, meta)],
        }
    if result.kind == "search":
        pending: Pending = {"think": action.think, "subquery": "", "queries": action.queries}
        return {
            "decision": "search",
            "pending": pending,
            "steps": [step("agent", turn, text, meta, queries=action.queries)],
            "messages": [ai_message("agent", text, meta, queries=action.queries, turn=turn + 1)],
        }
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
    return {
        "decision": "invalid",
        "pending": None,
        "rounds": [invalid],
        "turn": turn + 1,
        "steps": [step("agent", turn, text, meta, parse_error=result.error)],
        "messages": [
            ai_message("agent", text, meta),
            HumanMessage(result.observation, name="corrective"),
        ],
    }


async def agent_force_answer(
    state: GraphState, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Turn budget used: one last generation that must answer (Search-R1's final no-search step)."""
    ctx = context_of(runtime)
    msgs = force_answer_messages(question_of(state), state.get("rounds", []))
    raw, meta = await call_model(ctx, "agent", msgs, stop=list(FORCE_STOP), resources=resources)
    result = student_step(raw, state.get("turn", 0), ctx.max_turns, forced=True)
    return forced_answer_update(result.text, meta, state.get("turn", 0))
