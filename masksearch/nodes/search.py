"""Search node: run a round's queries as ONE batched retriever call, merge, format."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Command

from masksearch.graph import resources
from masksearch.graph.state import GraphState, Round
from masksearch.nodes.common import context_of, step
from masksearch.prompts import format_docs
from masksearch.retrievers.base import asearch
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


async def search(state: GraphState, runtime: Runtime) -> Command[Literal["observer", "agent"]]:
    """Execute `pending.queries`; append a search Round, count the turn, hand over to the reader."""
    ctx = context_of(runtime)
    pending = state.get("pending") or {}
    queries = list(pending.get("queries") or [])
    turn = state.get("turn", 0) + 1
    retriever = resources.loaded_retriever(ctx.retriever) or await asyncio.to_thread(
        resources.get_retriever, ctx.retriever
    )
    start = time.perf_counter()
    per_query = await asearch(retriever, queries, ctx.top_k) if queries else []
    latency = round(time.perf_counter() - start, 4)
    passages = merge_results(per_query, ctx.passage_cap)
    observation = format_docs(passages) or NO_RESULTS
    as_dicts = [p.to_dict() for p in passages]
    rnd: Round = {
        "turn": turn,
        "kind": "search",
        "think": pending.get("think", ""),
        "subquery": pending.get("subquery", ""),
        "queries": queries,
        "observation": observation,
        "passages": as_dicts,
    }
    meta = {"model": f"retriever:{ctx.retriever}", "latency_s": latency}
    goto = "agent" if ctx.agent_mode == "single_agent" else "observer"
    return Command(
        goto=goto,
        update={
            "rounds": [rnd],
            "turn": turn,
            "pending": None,
            "steps": [step("search", turn, observation, meta, queries=queries, passages=as_dicts)],
        },
    )
