"""Graph for LangGraph Studio / `langgraph dev` (see langgraph.json).

`graph(runtime)` is a graph factory: the server calls it for each run with the run's raw
context, so unknown context keys (a `planner-model` typo, which the server would otherwise drop
silently) and invalid values fail the run with a clear error before anything runs. Each run gets
a fresh view of the shared `Resources` (a loaded local model / index is reused across runs;
`fake:` scripts start afresh and are reloaded when edited). Importing this loads no model,
reads no key and fetches nothing; the platform supplies its own checkpointer. A run returns
`state.OutputState` (question, answer, status, verdict, scores, trajectory id), also through
the server's `/mcp` tool; the whole state stays readable with `threads.get_state`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from masksearch.context import Context
from masksearch.graph.builder import build_graph
from masksearch.resources import Resources

if TYPE_CHECKING:
    from langgraph_sdk.runtime import ServerRuntime

SHARED = Resources()


def graph(runtime: ServerRuntime[Any]) -> Any:
    context = getattr(runtime, "context", None)
    if isinstance(context, dict) and context:
        Context.from_dict(context)  # raises ConfigError naming the bad key or value
    return build_graph(resources=SHARED.for_run(), output="summary")
