"""Lazy, cached resolution of chat models and retrievers from the `Context`'s spec strings.

A batch of 1000 runs shares one loaded local model / index: objects are cached per spec (and,
for models, per sampling settings). Tests and embedding applications inject ready objects:

    register_model("fake:planner", ScriptedChatModel(responses=[...]))
    register_retriever("memory:tiny", MyRetriever())
    Context(planner_model="fake:planner", retriever="memory:tiny")

A registered object wins over loading; `clear()` forgets everything (registered and cached).
"""

from __future__ import annotations

import threading
from typing import Any

from masksearch.errors import ConfigError

_lock = threading.RLock()
_registered_models: dict[str, Any] = {}
_registered_retrievers: dict[str, Any] = {}
_model_cache: dict[tuple, Any] = {}
_retriever_cache: dict[str, Any] = {}


def register_model(spec: str, model: Any) -> None:
    """Serve `spec` with this chat model object (any LangChain `BaseChatModel`)."""
    if ":" not in spec:
        raise ConfigError(f"model spec must look like 'provider:name', got {spec!r}")
    with _lock:
        _registered_models[spec] = model


def register_retriever(spec: str, retriever: Any) -> None:
    """Serve `spec` with this retriever (anything with `search(queries, k)`)."""
    if not callable(getattr(retriever, "search", None)):
        raise ConfigError("a retriever needs a search(queries, k) method")
    with _lock:
        _registered_retrievers[spec] = retriever


def unregister(spec: str) -> None:
    with _lock:
        _registered_models.pop(spec, None)
        _registered_retrievers.pop(spec, None)


def clear() -> None:
    """Forget registered and cached objects (tests)."""
    with _lock:
        for d in (_registered_models, _registered_retrievers, _model_cache, _retriever_cache):
            d.clear()


def get_model(
    spec: str,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    seed: int | None = None,
) -> Any:
    """The chat model for `spec`: registered object, else cached, else `load_chat_model`."""
    with _lock:
        if spec in _registered_models:
            return _registered_models[spec]
        key = (spec, temperature, max_tokens, timeout, seed)
        if key not in _model_cache:
            from masksearch.models import load_chat_model

            _model_cache[key] = load_chat_model(
                spec, temperature=temperature, max_tokens=max_tokens, timeout=timeout, seed=seed
            )
        return _model_cache[key]


def loaded_model(
    spec: str,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    seed: int | None = None,
) -> Any | None:
    """The model for `spec` if it is registered or already loaded, else None (never loads, never
    blocks: safe on the event loop, so hot paths skip a worker-thread hop)."""
    return _registered_models.get(spec) or _model_cache.get(
        (spec, temperature, max_tokens, timeout, seed)
    )


def loaded_retriever(spec: str) -> Any | None:
    """The retriever for `spec` if registered or already loaded, else None (never loads)."""
    return _registered_retrievers.get(spec) or _retriever_cache.get(spec)


def get_retriever(spec: str) -> Any:
    """The retriever for `spec`: registered object, else cached `masksearch.retrievers.load_retriever`."""
    with _lock:
        if spec in _registered_retrievers:
            return _registered_retrievers[spec]
        if spec not in _retriever_cache:
            try:
                from masksearch.retrievers import load_retriever
            except ImportError as e:  # pragma: no cover - retrievers package incomplete
                raise ConfigError(f"cannot load retriever {spec!r}: {e}") from None
            _retriever_cache[spec] = load_retriever(spec)
        return _retriever_cache[spec]
