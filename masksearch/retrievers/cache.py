"""In-process LRU cache of query results, so reruns of the same queries do not search again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from masksearch.retrievers.base import Retriever, asearch
from masksearch.types import Passage


class CachedRetriever:
    """Wrap a retriever; `(query, k)` results are kept in an LRU of at most `maxsize` entries and
    about `max_bytes` of text (query + passage characters), whichever is reached first, so memory
    stays bounded however many distinct (or long) queries arrive.

    Only cache misses of a batch are sent to the wrapped retriever (as one batch).
    """

    def __init__(
        self, inner: Retriever, maxsize: int = 4096, *, max_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "retriever")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._cache: OrderedDict[tuple[str, int], list[Passage]] = OrderedDict()
        self._sizes: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        results, missing = self._lookup(queries, k)
        if missing:
            self._fill(results, missing, self.inner.search(list(missing), k), k)
        return [r if r is not None else [] for r in results]

    async def asearch(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Hits are served on the event loop (no thread hand-off); the misses go to the wrapped
        retriever as one batch, the way `base.asearch` runs it."""
        results, missing = self._lookup(queries, k)
        if missing:
            self._fill(results, missing, await asearch(self.inner, list(missing), k), k)
        return [r if r is not None else [] for r in results]

    def _lookup(
        self, queries: Sequence[str], k: int
    ) -> tuple[list[list[Passage] | None], dict[str, list[int]]]:
        """(the cached results, None where missing; each missing query's positions)."""
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
        return results, missing

    def _fill(
        self,
        results: list[list[Passage] | None],
        missing: dict[str, list[int]],
        found: list[list[Passage]],
        k: int,
    ) -> None:
        """Put the results of the missing queries (`found`, in `missing`'s order) in place and
        in the cache."""
        with self._lock:
            for q, res in zip(missing, found, strict=True):
                self.misses += 1
                for i in missing[q]:
                    results[i] = list(res)
                self._put((q, k), res)

    def _put(self, key: tuple[str, int], res: list[Passage]) -> None:
        size = _entry_bytes(key[0], res)
        if size > self.max_bytes or self.maxsize <= 0:
            return
        old = self._sizes.pop(key, None)
        if old is not None:
            self.nbytes -= old
        self._cache[key] = res
        self._cache.move_to_end(key)
        self._sizes[key] = size
        self.nbytes += size
        while len(self._cache) > self.maxsize or self.nbytes > self.max_bytes:
            evicted, _ = self._cache.popitem(last=False)
            self.nbytes -= self._sizes.pop(evicted)

    def __len__(self) -> int:
        # a TypeError if the wrapped retriever has no size
        return len(self.inner)  # type: ignore[arg-type]

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._sizes.clear()
            self.nbytes = 0

    def __getattr__(self, attr: str):
        if attr in ("inner", "asearch"):  # async calls go through search() so they are cached
            raise AttributeError(attr)
        return getattr(self.inner, attr)


def _entry_bytes(query: str, passages: Sequence[Passage]) -> int:
    """Approximate memory of one entry: its text plus a fixed overhead per object."""
    return 200 + len(query) + sum(200 + len(p.id) + len(p.title) + len(p.text) for p in passages)
