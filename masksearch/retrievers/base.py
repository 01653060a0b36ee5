"""The retriever interface: batch-first `search(queries, k)`.

Optional: an `asearch(queries, k)` coroutine (network retrievers), or `inline = True` for a
search that is cheap, in memory and pure Python (a handful of passages): `asearch` below then
calls it on the event loop, since handing it to a worker thread costs more than the search
(~0.25 ms of CPU per call measured in a batch run, `benchmarks/generation.py`). Index-backed
searches (bm25s, FAISS) run in a worker thread, where FAISS also runs beside the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from masksearch.types import Passage


@runtime_checkable
class Retriever(Protocol):
    """Anything that maps a batch of queries to ranked passages."""

    name: str

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Return, for each query, up to `k` passages best first (scores set)."""
        ...


async def asearch(retriever: Retriever, queries: Sequence[str], k: int) -> list[list[Passage]]:
    """Async search: the retriever's own `asearch` if it has one, on the event loop if it is
    `inline`, else in a worker thread."""
    native = getattr(retriever, "asearch", None)
    if native is not None:
        return await native(queries, k)
    if getattr(retriever, "inline", False):
        return retriever.search(list(queries), k)
    return await asyncio.to_thread(retriever.search, list(queries), k)
