"""`review`: human in the loop before a search (only when `Context.review_queries` is set).

The run pauses with `interrupt({"question", "subquery", "queries"})`; resume it with
`Command(resume=...)`: a list of query strings (searched instead), `{"queries": [...]}`, a string
(one query per line or `a ; b`), or `[]`, `""` or `true` to search the proposed queries as they
are. Not `None`: LangGraph reads `Command(resume=None)` as "no resume value", so the run stays
paused (over the API) or fails inside LangGraph (in process).
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.types import interrupt

from masksearch.errors import InputError
from masksearch.state import GraphState, Pending


def reviewed_queries(answer: Any, proposed: list[str]) -> list[str]:
    """The queries to search after a reviewer's answer (see the module docstring)."""
    if answer is None or answer is True:
        return proposed
    if isinstance(answer, dict):
        if "queries" not in answer:
            raise InputError("review answer object needs a 'queries' list")
        answer = answer["queries"]
    if isinstance(answer, str):
        answer = [q for line in answer.splitlines() for q in line.split(";")]
    if not isinstance(answer, list) or not all(isinstance(q, str) for q in answer):
        raise InputError(f"resume a query review with a list of query strings, got {answer!r}")
    items: list[str] = answer
    queries = list(dict.fromkeys(q.strip() for q in items if q.strip()))
    return queries or proposed


def review(state: GraphState) -> dict[str, Any]:
    pending: dict[str, Any] = dict(state.get("pending") or {})
    proposed = [str(q) for q in pending.get("queries") or []]
    answer = interrupt(
        {
            "question": state.get("question", ""),
            "subquery": pending.get("subquery", ""),
            "queries": proposed,
            "resume_with": "a list of queries to search (an empty list keeps these)",
        }
    )
    queries = reviewed_queries(answer, proposed)
    reviewed: Pending = {
        "think": str(pending.get("think", "")),
        "subquery": str(pending.get("subquery", "")),
        "queries": queries,
    }
    update: dict[str, Any] = {"pending": reviewed}
    if queries != proposed:
        update["messages"] = [
            HumanMessage("Search these queries instead:\n" + "\n".join(queries), name="reviewer")
        ]
    return update
