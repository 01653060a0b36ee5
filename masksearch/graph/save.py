"""`save` node (Studio and chat graphs): a finished question's trajectory into the store named by
`Context.save`, so a run a person steered or fixed by hand in Studio (an edited state at a
breakpoint, a fork re-run from an earlier checkpoint) reaches `masksearch export` and training.

The record is the one `generate` would write (`graph.records.state_to_record`). Its id is the
question's `example_id` when the input gave one, else derived from the thread and the question
(`chat-<uuid5>`), so re-running the same question on its thread (a fork) replaces its record
instead of adding one. Without `Context.save` the node does nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from masksearch.context import Context
from masksearch.graph.records import state_to_record
from masksearch.nodes.common import context_of
from masksearch.resources import Resources
from masksearch.scoring import task_of
from masksearch.state import GraphState
from masksearch.types import MaskedExample

_NAMESPACE = uuid.UUID("6f1c7f0e-8d1e-4b52-9d0b-5a3c0e2d9b11")


def trajectory_id(thread_id: str, question: str, example_id: str | None = None) -> str:
    """The record id of a question asked on a thread (its `example_id` when it has one)."""
    if example_id:
        return example_id
    return "chat-" + str(uuid.uuid5(_NAMESPACE, f"{thread_id}\n{question}"))


async def save(
    state: GraphState, runtime: Runtime[Context], config: RunnableConfig, *, resources: Resources
) -> dict[str, Any]:
    ctx = context_of(runtime)
    if not ctx.save:
        return {}
    thread = str((config.get("configurable") or {}).get("thread_id") or uuid.uuid4())
    question = state.get("question", "")
    example = MaskedExample(
        id=trajectory_id(thread, question, state.get("example_id")),
        question=question,
        answers=list(state.get("answers") or []),
        task=task_of(state),
    )
    record = state_to_record(dict(state), example=example, context=ctx, thread_id=thread)
    store = await resources.astore(ctx.save)
    await asyncio.to_thread(store.put, record, overwrite=True)
    return {"trajectory_id": example.id}
