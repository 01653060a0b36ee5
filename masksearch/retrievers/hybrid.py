"""Hybrid retrieval by weighted reciprocal-rank fusion (RRF) of several retrievers."""

from __future__ import annotations

from collections.abc import Sequence

from masksearch.retrievers.base import Retriever
from masksearch.types import Passage


def rrf_fuse(
    rankings: Sequence[list[Passage]],
    *,
    k: int,
    rrf_k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[Passage]:
    """Fuse ranked lists: score(d) = sum_i w_i / (rrf_k + rank_i(d)), ranks from 1.

    Passages are identified by id; ties keep first-seen order. Scores are the fused scores.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking is required")
    fused: dict[str, float] = {}
    first: dict[str, Passage] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, p in enumerate(ranking, 1):
            fused[p.id] = fused.get(p.id, 0.0) + w / (rrf_k + rank)
            first.setdefault(p.id, p)
    order = sorted(fused, key=lambda pid: -fused[pid])  # stable: ties keep insertion order
    return [first[pid].with_score(fused[pid]) for pid in order[:k]]


class HybridRetriever:
    """Query every sub-retriever for `depth` candidates each and fuse them with RRF."""

    name = "hybrid"

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        *,
        rrf_k: int = 60,
        weights: Sequence[float] | None = None,
        depth: int = 50,
    ) -> None:
        if not retrievers:
            raise ValueError("hybrid retrieval needs at least one retriever")
        if weights is not None and len(weights) != len(retrievers):
            raise ValueError("one weight per retriever is required")
        self.retrievers = list(retrievers)
        self.rrf_k, self.weights, self.depth = rrf_k, weights, depth

    def __len__(self) -> int:
        return max(len(r) for r in self.retrievers)  # type: ignore[arg-type]

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        depth = max(k, self.depth)
        per_retriever = [r.search(list(queries), depth) for r in self.retrievers]
        return [
            rrf_fuse(
                [res[qi] for res in per_retriever], k=k, rrf_k=self.rrf_k, weights=self.weights
            )
            for qi in range(len(queries))
        ]
