"""Single-agent (student) nodes: one model emits `<think>` + `<search>`/`<answer>` directly.

The rules of a turn are `masksearch.student.student_step`, shared with the RL rollout and eval;
its decoding is the Context's `decoding()` (`masksearch.student.Decoding`: sampling values and stop
strings, as in RL). A model that decodes under grammars (local llama.cpp) writes each turn under
the teacher's action grammar (`masksearch.grammars.for_student`), so it cannot emit a malformed
action.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from masksearch import grammars
from masksearch.context import Context
from masksearch.errors import ContextOverflow
from masksearch.nodes.common import (
    ai_message,
    answered,
    call_model,
    context_and_question,
    forced_answer_update,
    overflow_update,
    step,
)
from masksearch.resources import Resources
from masksearch.state import GraphState, Pending, Round
from masksearch.student import force_answer_messages, student_messages, student_step


async def agent(
    state: GraphState, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """One student turn: answer, search, an invalid action (corrective tool turn), or — at the
    turn limit — hand over to the forced answer."""
    ctx, question = context_and_question(state, runtime)
    rounds = state.get("rounds", [])
    turn = state.get("turn", 0)
    try:
        raw, meta = await call_model(
            ctx,
            "agent",
            student_messages(question, rounds),
            stop=list(ctx.decoding().stop),
            resources=resources,
            output_format=grammars.for_student(question, turn),
        )
    except ContextOverflow as e:  # the passages read so far fill the window: answer from them
        return overflow_update(ctx, "agent", turn, e)
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
    """Turn budget used, or the context window full: one last generation that must answer
    (Search-R1's final no-search step). When even that prompt does not fit, the oldest rounds are
    left out of it (the step's `rounds_dropped` says how many)."""
    ctx, question = context_and_question(state, runtime)
    rounds = state.get("rounds", [])
    for dropped in range(len(rounds) + 1):  # a window too small for every round: oldest out
        try:
            raw, meta = await call_model(
                ctx,
                "agent",
                force_answer_messages(question, rounds[dropped:]),
                stop=list(ctx.decoding().force_stop),
                resources=resources,
                output_format=grammars.for_student(question, state.get("turn", 0), forced=True),
            )
        except ContextOverflow:
            if dropped == len(rounds):
                raise
            continue
        if dropped:
            meta = {**meta, "rounds_dropped": dropped}
        break
    result = student_step(raw, state.get("turn", 0), ctx.max_turns, forced=True)
    return forced_answer_update(result.text, meta, state.get("turn", 0))
