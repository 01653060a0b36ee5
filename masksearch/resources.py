"""`Resources`: the chat models and retrievers one compiled graph uses, resolved from the
`Context`'s spec strings and passed explicitly to `build_graph(resources=...)`.

A batch of 1000 runs shares one loaded local model / index: loaded objects are cached per spec
(models also per sampling settings). Tests and embedding applications inject ready objects:

    res = Resources(models={"fake:team": ScriptedChatModel(...)},
                    retrievers={"memory:tiny": MyRetriever()})
    graph = build_graph(resources=res)
    Context(planner_model="fake:team", retriever="memory:tiny")

There is no process-wide instance: whoever runs graphs creates one and passes it down (one per
CLI invocation, per Ray worker, per eval run, per Studio server process), so a loaded model is
reused across that caller's runs and nothing outlives it.

`fake:<script.json>` models are scripts, not weights: they are reloaded when the file changes and
`for_run()` gives each run a fresh copy (a server run never finds a script used up by the last one).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from masksearch.errors import ConfigError
from masksearch.models import CHAT_SETTINGS, ChatSettings

if TYPE_CHECKING:
    from masksearch.context import Context

ModelKey = tuple[str, tuple[object, ...]]  # the spec, then the values of `CHAT_SETTINGS`


class Resources:
    """Injected objects win over loading; everything else is loaded once and cached."""

    def __init__(
        self,
        models: Mapping[str, Any] | None = None,
        retrievers: Mapping[str, Any] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._models: dict[str, Any] = {}
        self._retrievers: dict[str, Any] = {}
        self._model_cache: dict[ModelKey, Any] = {}
        self._retriever_cache: dict[str, Any] = {}
        self._fakes: dict[tuple[ModelKey, int], Any] = {}
        self._stores: dict[str, Any] = {}
        for spec, model in (models or {}).items():
            self.add_model(spec, model)
        for spec, retriever in (retrievers or {}).items():
            self.add_retriever(spec, retriever)

    def add_model(self, spec: str, model: Any) -> None:
        """Serve `spec` with this chat model object (any LangChain `BaseChatModel`)."""
        if ":" not in spec:
            raise ConfigError(f"model spec must look like 'provider:name', got {spec!r}")
        with self._lock:
            self._models[spec] = model

    def add_retriever(self, spec: str, retriever: Any) -> None:
        """Serve `spec` with this retriever (anything with `search(queries, k)`)."""
        if not callable(getattr(retriever, "search", None)):
            raise ConfigError("a retriever needs a search(queries, k) method")
        with self._lock:
            self._retrievers[spec] = retriever

    def for_run(self) -> Resources:
        """A view sharing the injected and loaded objects, with fresh `fake:` script models."""
        view = Resources.__new__(Resources)
        view.__dict__.update(self.__dict__)
        view._fakes = {}
        return view

    # -- models --------------------------------------------------------------------------
    def loaded_model(self, spec: str, **settings: Unpack[ChatSettings]) -> Any | None:
        """The model if injected or already loaded, else None (never loads: safe on the loop).
        `settings`: `Context.model_settings()` (part of the cache key)."""
        key = model_key(spec, **settings)
        if spec in self._models:
            return self._models[spec]
        if spec.startswith("fake:"):
            return self._fakes.get((key, _mtime_ns(spec)))
        return self._model_cache.get(key)

    def get_model(self, spec: str, **settings: Unpack[ChatSettings]) -> Any:
        """The chat model for `spec`: injected, else cached, else `load_chat_model` (blocking)."""
        key = model_key(spec, **settings)
        with self._lock:
            found = self.loaded_model(spec, **settings)
            if found is not None:
                return found
            from masksearch.models import load_chat_model

            model = load_chat_model(spec, **settings)
            if spec.startswith("fake:"):
                self._fakes[(key, _mtime_ns(spec))] = model
            else:
                self._model_cache[key] = model
            return model

    async def amodel(self, spec: str, **settings: Unpack[ChatSettings]) -> Any:
        """`get_model` without blocking the event loop (a first load runs in a worker thread)."""
        found = self.loaded_model(spec, **settings)
        if found is not None:
            return found
        return await asyncio.to_thread(lambda: self.get_model(spec, **settings))

    # -- retrievers ----------------------------------------------------------------------
    def loaded_retriever(self, spec: str) -> Any | None:
        """The retriever if injected or already loaded, else None (never loads)."""
        return self._retrievers.get(spec) or self._retriever_cache.get(spec)

    def get_retriever(self, spec: str) -> Any:
        """The retriever for `spec`: injected, else cached `load_retriever(spec)` (blocking)."""
        with self._lock:
            found = self.loaded_retriever(spec)
            if found is not None:
                return found
            from masksearch.retrievers import load_retriever

            self._retriever_cache[spec] = load_retriever(spec)
            return self._retriever_cache[spec]

    async def aretriever(self, spec: str) -> Any:
        """`get_retriever` without blocking the event loop."""
        found = self.loaded_retriever(spec)
        if found is not None:
            return found
        return await asyncio.to_thread(self.get_retriever, spec)

    # -- trajectory stores (`Context.save`) ---------------------------------------------
    def get_store(self, spec: str) -> Any:
        """The trajectory store for `spec` (`masksearch.store.trajectories.open_store`, opened once;
        the store module depends only on the record schema, below this one)."""
        with self._lock:
            store = self._stores.get(spec)
            if store is None:
                from masksearch.store.trajectories import open_store

                store = self._stores[spec] = open_store(spec)
            return store

    async def astore(self, spec: str) -> Any:
        """`get_store` without blocking the event loop."""
        found = self._stores.get(spec)
        if found is not None:
            return found
        return await asyncio.to_thread(self.get_store, spec)

    async def warm_up(self, context: Context) -> list[Any]:
        """Load the run's retriever and every model once, one at a time, before workers start:
        a bad spec or missing key fails here (not in every example), and first loads (local
        models are not safe to load from two threads at once) cannot race. Returns the models."""
        await asyncio.to_thread(self.get_retriever, context.retriever)
        models: list[Any] = []
        for spec in dict.fromkeys(context.models().values()):
            model = await asyncio.to_thread(self.get_model, spec, **context.model_settings())
            load = getattr(
                model, "load", None
            )  # local models: weights otherwise load on first call
            if spec.startswith("local:") and callable(load):
                await asyncio.to_thread(load)
            models.append(model)
        return models


def model_key(spec: str, **settings: Unpack[ChatSettings]) -> ModelKey:
    """Cache key of a loaded model: the spec and the settings it was built with (a setting left
    out keys like None: both build the same model)."""
    return (spec, tuple(settings.get(name) for name in CHAT_SETTINGS))


def _mtime_ns(spec: str) -> int:
    """A `fake:` script's modification time (0 when missing: loading then reports it)."""
    try:
        return Path(spec.split(":", 1)[1]).stat().st_mtime_ns
    except OSError:
        return 0
