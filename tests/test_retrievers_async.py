"""`retrievers.base.asearch`: where each kind of retriever's search runs, and the cache's hits."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from masksearch.graph.testing import KeywordRetriever
from masksearch.retrievers.base import asearch
from masksearch.retrievers.cache import CachedRetriever
from masksearch.types import Passage

PASSAGES = [Passage(id=str(i), title=f"T{i}", text=f"river {i} flows") for i in range(6)]


class IndexLike:
    """A retriever with no `asearch` and no `inline`: searched in a worker thread."""

    name = "index"

    def __init__(self) -> None:
        self.inner = KeywordRetriever(PASSAGES)
        self.batches: list[tuple[list[str], str]] = []

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        self.batches.append((list(queries), threading.current_thread().name))
        return self.inner.search(queries, k)


async def test_inline_search_runs_on_the_loop_and_index_search_in_a_thread():
    loop_thread = threading.current_thread().name
    keyword = KeywordRetriever(PASSAGES)
    seen: list[str] = []
    original = keyword.search

    def spy(queries: Sequence[str], k: int) -> list[list[Passage]]:
        seen.append(threading.current_thread().name)
        return original(queries, k)

    keyword.search = spy  # type: ignore[method-assign]
    assert await asearch(keyword, ["river 2"], 2) == original(["river 2"], 2)
    assert seen == [loop_thread]

    index = IndexLike()
    assert await asearch(index, ["river 3"], 2) == index.inner.search(["river 3"], 2)
    assert index.batches[0][1] != loop_thread


async def test_cache_hits_skip_the_search_and_misses_go_as_one_batch():
    index = IndexLike()
    cached = CachedRetriever(index)
    first = await asearch(cached, ["river 1", "river 2", "river 1"], 2)
    assert [q for q, _ in index.batches] == [["river 1", "river 2"]]  # one batch, deduplicated
    assert first == index.inner.search(["river 1", "river 2", "river 1"], 2)
    again = await asearch(cached, ["river 2", "river 4"], 2)
    assert [q for q, _ in index.batches][1:] == [["river 4"]]  # the hit never reached the index
    assert again == index.inner.search(["river 2", "river 4"], 2)
    assert (cached.hits, cached.misses) == (1, 3)
    assert await asearch(cached, ["river 4"], 2) == cached.search(["river 4"], 2)
    assert len(index.batches) == 2  # both served from the cache
