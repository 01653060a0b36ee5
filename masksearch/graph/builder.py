"""Build the MaskSearch graph (both agent modes in one graph, chosen per run by `Context.agent_mode`)."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy

from masksearch.graph.context import Context
from masksearch.graph.state import GraphState, InputState
from masksearch.nodes.common import context_of, default_retry_policy
from masksearch.nodes.judge import judge
from masksearch.nodes.multi_agent import force_answer, observer, planner, rewriter
from masksearch.nodes.search import search
from masksearch.nodes.single_agent import agent, agent_force_answer


def start_route(state: GraphState, runtime: Runtime) -> Literal["planner", "agent"]:
    """multi_agent starts at the planner, single_agent at the agent."""
    if not (state.get("question") or "").strip():
        raise ValueError("input needs a non-empty 'question'")
    return "agent" if context_of(runtime).agent_mode == "single_agent" else "planner"


def build_graph(
    checkpointer: Any = None,
    *,
    retry_policy: RetryPolicy | None = None,
    node_timeout_s: float | None = None,
) -> Any:
    """Compile the graph (context_schema=`Context`).

    `retry_policy` applies to every model/search node (default: 3 attempts, exponential
    backoff, only transient errors). `node_timeout_s` caps one node attempt (None = only the
    per-call `Context.llm_timeout_s`).
    """
    retry = retry_policy or default_retry_policy()
    builder = StateGraph(GraphState, context_schema=Context, input_schema=InputState)
    opts: dict[str, Any] = {"retry_policy": retry}
    if node_timeout_s is not None:
        opts["timeout"] = node_timeout_s
    for name, fn in (
        ("planner", planner),
        ("rewriter", rewriter),
        ("search", search),
        ("observer", observer),
        ("force_answer", force_answer),
        ("agent", agent),
        ("agent_force_answer", agent_force_answer),
        ("judge", judge),
    ):
        builder.add_node(name, fn, **opts)
    builder.add_conditional_edges(START, start_route, ["planner", "agent"])
    builder.add_edge("judge", END)
    return builder.compile(checkpointer=checkpointer, name="masksearch")
