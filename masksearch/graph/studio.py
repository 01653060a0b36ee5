"""Graph for LangGraph Studio / `langgraph dev` (see langgraph.json).

Importing this compiles the graph only: no model is loaded, no key is read, nothing is
fetched. The platform supplies its own checkpointer. Models and the retriever are resolved
from the run's context (e.g. `{"planner_model": "openai:gpt-4o-mini", ...}`) at run time.
"""

from __future__ import annotations

from masksearch.graph.builder import build_graph

graph = build_graph()
