"""Build the MaskSearch graph (both agent modes in one graph, chosen per run by `Context.agent_mode`).

Nodes return partial state updates; conditional edges route by reading the state only
(`decision`, `pending`, and the question's `agent_mode`/`review_queries` that `prepare` copies
from the Context). Routing therefore works the same after a human edit
(`update_state` at a breakpoint, or a fork of an earlier checkpoint) as after a node's own update.

A batch run, whose Context fixes the agent mode for every example, compiles only that mode's
path (`build_graph(agent_mode=...)`): the same nodes and decision routers, with the mode's own
branches as plain edges (fewer nodes and channels for LangGraph to scan at every step, and two
routing decisions fewer per example). A batch that never pauses for a human review
(`review=False`) also leaves out the review node: the rewriter hands its queries straight to
the search (one routing decision fewer); and it keeps no chat view (`chat=False`: the
`messages` channel is left out, see `state.BatchState`).

A batch graph (`chat=False`) also has no `prepare` node: its runner has already validated
each example and loaded the models and retriever once (`Resources.warm_up`), and every
example is the first question of its own thread, so the graph takes the question's start state
(`nodes.prepare.start_state`, built by `graph.runner.run_example`) as its input and starts at
the first agent: one superstep fewer per example.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from masksearch.context import AgentMode, Context
from masksearch.errors import ConfigError
from masksearch.graph.save import save
from masksearch.nodes.common import default_retry_policy
from masksearch.nodes.judge import judge
from masksearch.nodes.multi_agent import force_answer, observer, planner, rewriter
from masksearch.nodes.prepare import prepare
from masksearch.nodes.review import review as review_node
from masksearch.nodes.search import search
from masksearch.nodes.single_agent import agent, agent_force_answer
from masksearch.resources import Resources
from masksearch.state import BatchState, GraphState, InputState, OutputState, RouteView


def after_prepare(state: RouteView) -> Literal["planner", "agent"]:
    """multi_agent starts at the planner, single_agent at the agent."""
    return "agent" if state.get("agent_mode") == "single_agent" else "planner"


def after_planner(state: RouteView) -> Literal["rewriter", "judge"]:
    return "judge" if state.get("decision") == "answer" else "rewriter"


def to_search(state: RouteView) -> Literal["review", "search"]:
    """With `review_queries` a human approves or edits the queries first."""
    return "review" if state.get("review_queries") else "search"


def after_search(state: RouteView) -> Literal["observer", "agent"]:
    return "agent" if state.get("agent_mode") == "single_agent" else "observer"


def after_observer(state: RouteView) -> Literal["rewriter", "force_answer", "judge"]:
    decision = state.get("decision")
    if decision == "answer":
        return "judge"
    pending = state.get("pending")
    if decision == "search" and pending and pending.get("subquery"):
        return "rewriter"
    return "force_answer"  # out of turns, or no usable decision


def after_agent(
    state: RouteView,
) -> Literal["review", "search", "agent", "agent_force_answer", "judge"]:
    decision = state.get("decision")
    if decision == "answer":
        return "judge"
    pending = state.get("pending")
    if decision == "search" and pending and pending.get("queries"):
        return to_search(state)
    if decision == "invalid":
        return "agent"  # the agent sees the corrective turn (it forces an answer at the limit)
    return "agent_force_answer"


def _router(fn: Any) -> Any:
    """A routing function as an untraced runnable: LangGraph would otherwise open and close a
    callback run for every routing decision (two shielded asyncio tasks each; ~10 % of an
    example's CPU in `generate`). Its `Literal` return type still names the destinations."""
    try:
        from langgraph._internal._runnable import RunnableCallable
    except ImportError:  # another LangGraph layout: a plain (traced) function
        return fn
    return RunnableCallable(fn, name=fn.__name__, trace=False)


def build_graph(
    checkpointer: Any = None,
    *,
    resources: Resources | None = None,
    retry_policy: RetryPolicy | None = None,
    node_timeout_s: float | None = None,
    agent_mode: AgentMode | None = None,
    review: bool = True,
    chat: bool = True,
    output: Literal["state", "summary"] = "state",
) -> Any:
    """Compile the graph (context_schema=`Context`).

    `resources` serves the models and retrievers the Context names (default: a private
    `Resources` that loads them on first use). `retry_policy` applies to every model/search node
    (default: 3 attempts, exponential backoff, only transient errors). `node_timeout_s` caps one
    node attempt (None = only the per-call `Context.llm_timeout_s`). `agent_mode`: compile only
    that mode's path, for runs whose Contexts all use it (a batch); None: both, chosen per run by
    the question's mode (Studio, chat). A one-mode graph runs every question in its own mode.
    `review=False`: no review node (for runs whose Contexts all have `review_queries` off).
    `chat=False`: state without the `messages` chat view (`state.BatchState`; batch runs, whose
    records come from the rounds and steps), and no `prepare` node: the input is the question's
    start state (`nodes.prepare.start_state`; `graph.runner.run_example` builds it).
    A chat graph ends with the `save` node (`graph.save`: the trajectory into `Context.save`).
    `output="summary"`: a run returns `state.OutputState` (question, answer, status, verdict,
    scores, trajectory id) instead of the whole state — what Studio's server, its API and its
    `/mcp` tool return; the checkpointed state is the same either way.
    """
    if agent_mode not in (None, "multi_agent", "single_agent"):
        raise ConfigError(
            f"agent_mode must be multi_agent, single_agent or None, got {agent_mode!r}"
        )
    res = resources if resources is not None else Resources()
    retry = retry_policy or default_retry_policy()
    state: type[Any] = GraphState if chat else BatchState
    builder = StateGraph(
        state,
        context_schema=Context,
        input_schema=InputState if chat else state,
        output_schema=OutputState if output == "summary" else state,
    )
    opts: dict[str, Any] = {"retry_policy": retry}
    if node_timeout_s is not None:
        opts["timeout"] = node_timeout_s
    multi = agent_mode in (None, "multi_agent")
    single = agent_mode in (None, "single_agent")
    nodes: list[tuple[str, Any]] = [("prepare", prepare)] if chat else []
    if multi:
        nodes += [("planner", planner), ("rewriter", rewriter)]
    nodes.append(("search", search))
    if multi:
        nodes += [("observer", observer), ("force_answer", force_answer)]
    if single:
        nodes += [("agent", agent), ("agent_force_answer", agent_force_answer)]
    nodes.append(("judge", judge))
    if chat:
        nodes.append(("save", save))
    for name, fn in nodes:
        builder.add_node(name, partial(fn, resources=res), **opts)
    if review:
        builder.add_node("review", review_node, input_schema=state)
    first = "prepare" if chat else START  # a batch graph's input is the start state
    if chat:
        builder.add_edge(START, "prepare")
    if multi and single:  # the question's mode picks the path
        builder.add_conditional_edges(first, _router(after_prepare))
        builder.add_conditional_edges("search", _router(after_search))
    else:
        builder.add_edge(first, "planner" if multi else "agent")
        builder.add_edge("search", "observer" if multi else "agent")
    if review:
        builder.add_edge("review", "search")
    if multi:
        builder.add_conditional_edges("planner", _router(after_planner))
        if review:
            builder.add_conditional_edges("rewriter", _router(to_search))
        else:
            builder.add_edge("rewriter", "search")
        builder.add_conditional_edges("observer", _router(after_observer))
        builder.add_edge("force_answer", "judge")
    if single:
        # without a review node, `after_agent` never picks it (review_queries is off)
        ends = None if review else ["search", "agent", "agent_force_answer", "judge"]
        builder.add_conditional_edges("agent", _router(after_agent), ends)
        builder.add_edge("agent_force_answer", "judge")
    if chat:
        builder.add_edge("judge", "save")
        builder.add_edge("save", END)
    else:
        builder.add_edge("judge", END)
    return builder.compile(checkpointer=checkpointer, name="masksearch")
