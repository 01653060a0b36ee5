"""Transitional helpers over the process-wide `masksearch.resources.DEFAULT` (for callers that
do not pass their own `Resources` yet). New code passes a `Resources` to `build_graph`."""

from __future__ import annotations

from typing import Any

from masksearch.resources import DEFAULT


def register_model(spec: str, model: Any) -> None:
    DEFAULT.add_model(spec, model)


def register_retriever(spec: str, retriever: Any) -> None:
    DEFAULT.add_retriever(spec, retriever)


def get_model(spec: str, **settings: Any) -> Any:
    return DEFAULT.get_model(spec, **settings)


def get_retriever(spec: str) -> Any:
    return DEFAULT.get_retriever(spec)


def clear() -> None:
    """Forget registered and cached objects (tests)."""
    DEFAULT.__init__()  # type: ignore[misc]
