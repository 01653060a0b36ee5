"""Single-agent (student) nodes: one model emits `<think>` + `<search>`/`<answer>` directly."""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Command

from masksearch import prompts
from masksearch.graph.state import GraphState, Round
from masksearch.nodes.common import call_model, context_of, forced_answer_command, step
from masksearch.parsing import parse_action, truncate_after_action

STOP = ["</search>", "</answer>"]


def student_messages(question: str, rounds: list[Round]) -> list[dict[str, str]]:
    """The student's conversation so far, exactly as records render it."""
    msgs = prompts.render_student_prompt(question)
    for r in rounds:
        if r["kind"] == "search":
            msgs.append(
                {
                    "role": "assistant",
                    "content": prompts.assistant_search_turn(r["think"], r["queries"]),
                }
            )
            msgs.append(
                {
                    "role": "tool",
                    "name": "search",
                    "content": prompts.information_block(r["observation"]),
                }
            )
        else:
            msgs.append({"role": "assistant", "content": r.get("raw", "")})
            msgs.append({"role": "tool", "name": "search", "content": r["observation"]})
    return msgs


def restore_stop(text: str) -> str:
    """Re-close a tag whose closing stop sequence the provider cut off."""
    text = text.rstrip()
    for tag in ("search", "answer"):
        if text.rfind(f"<{tag}>") > text.rfind(f"</{tag}>"):
            return text + f"</{tag}>"
    return text


async def agent(
    state: GraphState, runtime: Runtime
) -> Command[Literal["search", "agent", "agent_force_answer", "judge"]]:
    ctx = context_of(runtime)
    rounds = state.get("rounds", [])
    turn = state.get("turn", 0)
    raw, meta = await call_model(
        ctx, "agent", student_messages(state["question"], rounds), stop=STOP
    )
    text = truncate_after_action(restore_stop(raw))
    action = parse_action(text)
    if action.kind == "answer":
        return Command(
            goto="judge",
            update={
                "final_think": action.think,
                "final_answer": action.answer,
                "status": "answered",
                "steps": [step("agent", turn, text, meta)],
            },
        )
    if turn >= ctx.max_turns:
        return Command(
            goto="agent_force_answer",
            update={"steps": [step("agent", turn, text, meta, parse_error="turn limit reached")]},
        )
    if action.kind == "search":
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
        "observation": prompts.INVALID_ACTION,
        "passages": [],
        "raw": text,
    }
    return Command(
        goto="agent",
        update={
            "rounds": [invalid],
            "turn": turn + 1,
            "steps": [step("agent", turn, text, meta, parse_error=action.error)],
        },
    )


async def agent_force_answer(state: GraphState, runtime: Runtime) -> Command[Literal["judge"]]:
    """Turn budget used: one last generation that must answer (Search-R1's final no-search step)."""
    ctx = context_of(runtime)
    msgs = student_messages(state["question"], state.get("rounds", []))
    msgs.append({"role": "user", "content": prompts.AGENT_FORCE_ANSWER})
    raw, meta = await call_model(ctx, "agent", msgs, stop=["</answer>"])
    text = truncate_after_action(restore_stop(raw))
    return forced_answer_command(text, meta, state.get("turn", 0))
