"""masksearch.graph: the LangGraph trajectory graph.

Public API (imported lazily so `masksearch --help` stays fast):
`Context`, `Resources`, `build_graph`, `thread_id_for`, `run_example`, `state_to_record`,
`open_checkpointer`.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from masksearch.context import Context

THREAD_NAMESPACE = uuid.UUID("6f1d7c1e-3b9a-5d2e-9c41-7a5e0b8d2f13")

_LAZY = {
    "Context": "masksearch.context",
    "Resources": "masksearch.resources",
    "build_graph": "masksearch.graph.builder",
    "run_example": "masksearch.graph.runner",
    "state_to_record": "masksearch.graph.records",
    "open_checkpointer": "masksearch.graph.checkpoint",
}


def thread_id_for(example_id: str, context: Context) -> str:
    """Deterministic thread id: uuid5(example id + fingerprint of every Context setting).

    Re-running the same example with the same settings resumes its checkpoint instead of
    duplicating it; changing a model, retriever or limit gives a new thread.
    """
    try:
        fingerprint = _fingerprint(context)
    except TypeError:  # a Context holding an unhashable value
        fingerprint = context.fingerprint()
    return str(uuid.uuid5(THREAD_NAMESPACE, f"{example_id}\x1f{fingerprint}"))


@lru_cache(maxsize=64)
def _fingerprint(context: Context) -> str:
    """`Context.fingerprint`, once per Context (frozen): a batch run asks for every example."""
    return context.fingerprint()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'masksearch.graph' has no attribute {name!r}")


__all__ = [*_LAZY, "thread_id_for"]
