"""The retriever interface: batch-first `search(queries, k)`."""

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
    """Async search: the retriever's own `asearch` if it has one, else a worker thread."""
    native = getattr(retriever, "asearch", None)
    if native is not None:
        return await native(queries, k)
    return await asyncio.to_thread(retriever.search, list(queries), k)
