"""`prepare`: the first node of every question — validate the input and the settings, check
that the retriever and the models load (before any model call), and start the question clean.

A thread may carry several questions (Studio, `masksearch chat`): each new input restarts the
per-question fields (`rounds`, `summaries`, `steps`, `turn`, outcome, scores), while `messages`
keeps the conversation. Gold `answers`/`task`/`example_id` belong to the question they came
with: a new question that does not send its own starts without them.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from masksearch.context import Context
from masksearch.errors import InputError
from masksearch.nodes.common import context_of
from masksearch.resources import Resources
from masksearch.state import GraphState

TASKS = ("ramp", "qa")
PER_QUESTION = ("answers", "task", "example_id")


def check_input(state: GraphState) -> None:
    """Raise `InputError` naming the first bad input field."""
    question = state.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(
            "input 'question' must be a non-empty string"
            + (f", got {type(question).__name__} {question!r}" if question is not None else "")
        )
    answers = state.get("answers")
    if answers is not None and (
        not isinstance(answers, list) or not all(isinstance(a, str) for a in answers)
    ):
        hint = " (wrap a single answer in a list)" if isinstance(answers, str) else ""
        raise InputError(f"input 'answers' must be a list of strings, got {answers!r}{hint}")
    task = state.get("task")
    if task not in (None, "", *TASKS):
        raise InputError(
            f"input 'task' must be one of {', '.join(TASKS)} (or absent), got {task!r}"
        )
    example_id = state.get("example_id")
    if example_id is not None and not isinstance(example_id, str):
        raise InputError(f"input 'example_id' must be a string, got {example_id!r}")


def incoming_question(state: GraphState) -> tuple[Any, bool]:
    """(the question of this run, whether it came as a chat message).

    A chat client (Studio's chat view) sends `messages` ending in a human turn; a form/API
    client sends `question`. A question newer than the last run's wins over an old message.
    """
    previous = (state.get("run_input") or {}).get("question")
    question = state.get("question")
    messages = state.get("messages") or []
    last = messages[-1] if messages else None
    if isinstance(last, HumanMessage) and (question is None or question == previous):
        return last.text, True
    return question, False


def start_state(run_input: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A question's run fields at its start: its input (`question` and the gold fields it came
    with), the Context's mode and review flag that the routers read, and every per-question
    field restarted. `prepare` writes it; a batch graph (no `prepare` node, see
    `graph.builder`) takes it as its input."""
    return {
        **run_input,
        "run_input": dict(run_input),
        "agent_mode": ctx.agent_mode,
        "review_queries": ctx.review_queries,
        "rounds": Overwrite([]),
        "summaries": Overwrite([]),
        "steps": Overwrite([]),
        "turn": 0,
        "pending": None,
        "decision": "search",
        "final_think": "",
        "final_answer": "",
        "forced": False,
        "status": "running",
        "scores": {},
        "accepted": False,
    }


async def prepare(
    state: GraphState, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    ctx = context_of(runtime)
    question, from_chat = incoming_question(state)
    previous = state.get("run_input") or {}
    given = {k: state.get(k) for k in PER_QUESTION}
    if previous and question != previous.get("question"):
        # a new question: gold fields still equal to the last question's were not sent again
        given = {k: (None if v == previous.get(k) else v) for k, v in given.items()}
    check_input({"question": question, **given})  # type: ignore[typeddict-item]
    await resources.aretriever(
        ctx.retriever
    )  # a bad retriever spec fails here, before any model call
    for spec in dict.fromkeys(ctx.models().values()):
        await resources.amodel(spec, **ctx.model_settings())
    if ctx.save:  # a store that cannot be opened fails here, before any model call
        await resources.astore(ctx.save)
    update = start_state({"question": question, **given}, ctx)
    update["trajectory_id"] = ""
    if not from_chat:
        update["messages"] = [HumanMessage(question)]
    return update
