"""Search node: run a round's queries as ONE batched retriever call, merge, format."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.runtime import Runtime

from masksearch.context import Context
from masksearch.nodes.common import context_of, search_call_id, step
from masksearch.prompts import format_docs, information_block
from masksearch.resources import Resources
from masksearch.retrievers.base import asearch
from masksearch.state import GraphState, Round
from masksearch.types import Passage

NO_RESULTS = "(no results)"


def merge_results(per_query: Sequence[Sequence[Passage]], cap: int) -> list[Passage]:
    """Round-robin across queries (rank 1 of each, then rank 2, …), dedupe by id, keep `cap`."""
    merged: list[Passage] = []
    seen: set[str] = set()
    depth = max((len(r) for r in per_query), default=0)
    for rank in range(depth):
        for results in per_query:
            if rank < len(results) and results[rank].id not in seen:
                seen.add(results[rank].id)
                merged.append(results[rank])
                if len(merged) >= cap:
                    return merged
    return merged


async def search(
    state: GraphState, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Execute `pending.queries`; append a search Round, count the turn, hand over to the reader.

    The round holds the observation and passages; the step only the call's metadata (records
    join them back), so a checkpoint stores each passage once per round (plus the chat view).
    """
    ctx = context_of(runtime)
    pending: dict[str, Any] = dict(state.get("pending") or {})
    queries = list(pending.get("queries") or [])
    turn = state.get("turn", 0) + 1
    retriever = await resources.aretriever(ctx.retriever)
    start = time.perf_counter()
    per_query = await asearch(retriever, queries, ctx.top_k) if queries else []
    latency = round(time.perf_counter() - start, 4)
    passages = merge_results(per_query, ctx.passage_cap)
    observation = format_docs(passages) or NO_RESULTS
    rnd: Round = {
        "turn": turn,
        "kind": "search",
        "think": str(pending.get("think", "")),
        "subquery": str(pending.get("subquery", "")),
        "queries": queries,
        "observation": observation,
        "passages": [p.to_dict() for p in passages],
    }
    meta = {"model": f"retriever:{ctx.retriever}", "latency_s": latency}
    tool_turn = ToolMessage(
        content=information_block(observation),
        name="search",
        tool_call_id=search_call_id(turn),
        artifact={"queries": queries},
    )
    return {
        "rounds": [rnd],
        "turn": turn,
        "pending": None,
        "steps": [step("search", turn, "", meta, queries=queries)],
        "messages": [tool_turn],
    }
