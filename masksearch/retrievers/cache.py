"""In-process LRU cache of query results, so reruns of the same queries do not search again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from masksearch.retrievers.base import Retriever
from masksearch.types import Passage


class CachedRetriever:
    """Wrap a retriever; `(query, k)` results are kept in an LRU of `maxsize` entries.

    Only cache misses of a batch are sent to the wrapped retriever (as one batch).
    """

    def __init__(self, inner: Retriever, maxsize: int = 4096) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "retriever")
        self.maxsize = maxsize
        self._cache: OrderedDict[tuple[str, int], list[Passage]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        results: list[list[Passage] | None] = [None] * len(queries)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, q in enumerate(queries):
                hit = self._cache.get((q, k))
                if hit is not None:
                    self._cache.move_to_end((q, k))
                    results[i] = list(hit)
                    self.hits += 1
                else:
                    missing.setdefault(q, []).append(i)
        if missing:
            todo = list(missing)
            found = self.inner.search(todo, k)
            with self._lock:
                for q, res in zip(todo, found, strict=True):
                    self.misses += 1
                    self._cache[(q, k)] = res
                    self._cache.move_to_end((q, k))
                    for i in missing[q]:
                        results[i] = list(res)
                while len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
        return [r if r is not None else [] for r in results]

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]  (TypeError if the inner has no size)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __getattr__(self, attr: str):
        if attr in ("inner", "asearch"):  # async calls go through search() so they are cached
            raise AttributeError(attr)
        return getattr(self.inner, attr)
