"""Run one example through the graph → one `TrajectoryRecord` (resuming from its checkpoint)."""

from __future__ import annotations

import logging
from typing import Any

from masksearch.context import Context
from masksearch.graph import thread_id_for
from masksearch.graph.records import state_to_record
from masksearch.nodes.prepare import start_state
from masksearch.records import TrajectoryRecord
from masksearch.redact import redact
from masksearch.types import MaskedExample

log = logging.getLogger(__name__)
MAX_ERROR_CHARS = 500


def graph_input(example: MaskedExample) -> dict[str, Any]:
    return {
        "question": example.question,
        "answers": list(example.answers),
        "task": example.task,
        "example_id": example.id,
    }


def run_config(thread_id: str, context: Context) -> dict[str, Any]:
    # planner + per turn (rewriter, search, observer | agent, search) + invalid turns + answer + judge
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": 4 * context.max_turns + 10}


async def _has_checkpoint(graph: Any, config: dict[str, Any]) -> bool:
    """Whether the thread has a checkpoint: one lookup, without building a state snapshot (most
    examples of a batch are new)."""
    saver = graph.checkpointer
    if saver is None:
        return False
    if not hasattr(saver, "aget_tuple"):
        return True  # let `aget_state` decide
    return await saver.aget_tuple(config) is not None


async def run_example(
    graph: Any, example: MaskedExample, context: Context, *, durability: str = "sync"
) -> TrajectoryRecord:
    """Run (or resume, or just rebuild) `example`; never raises for run failures.

    - finished checkpoint for this thread: rebuild the record from the saved state, no model call;
    - interrupted checkpoint (a node failed or the process died): resume from it;
    - otherwise: start fresh. A node failing after its retries gives status "failed" + `error`.
    """
    thread_id = thread_id_for(example.id, context)
    config = run_config(thread_id, context)
    given = graph_input(example)
    # a batch graph (no `prepare` node) takes the question's start state as its input
    payload: dict[str, Any] | None = (
        given if "prepare" in graph.nodes else start_state(given, context)
    )
    state: dict[str, Any] = {}
    if await _has_checkpoint(graph, config):
        snapshot = await graph.aget_state(config)
        finished = not snapshot.next and snapshot.values.get("status") not in (None, "running")
        if finished:
            return state_to_record(
                dict(snapshot.values), example=example, context=context, thread_id=thread_id
            )
        if snapshot.values and snapshot.next:
            state = dict(snapshot.values)
            payload = None  # resume the interrupted run
            log.info("resuming %s at %s", example.id, ", ".join(snapshot.next))
        # else: no checkpoint, or only the input checkpoint without its writes (the process died
        # while saving it): start fresh
    try:
        # durability "sync": each step is on disk before the next starts (a killed process
        # resumes at its last step); "async"/"exit": cheaper, see docs/pipeline.md
        durable = {"durability": durability} if graph.checkpointer is not None else {}
        async for values in graph.astream(
            payload, config, context=context, stream_mode="values", **durable
        ):
            state = values
    except Exception as e:  # noqa: BLE001 - the pipeline records the failure
        reason = redact(f"{type(e).__name__}: {e}")[:MAX_ERROR_CHARS]
        log.warning("example %s failed: %s", example.id, reason)
        if graph.checkpointer is not None:
            try:
                state = dict((await graph.aget_state(config)).values) or state
            except Exception:  # noqa: BLE001
                pass
        return state_to_record(
            state, example=example, context=context, thread_id=thread_id, error=reason
        )
    return state_to_record(state, example=example, context=context, thread_id=thread_id)
