"""Web search through `ddgs` (optional extra `web`); results are treated as plain data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from masksearch.errors import ConfigError, MaskSearchError
from masksearch.types import Passage


class WebSearchError(MaskSearchError, RuntimeError):
    """A web search request failed (offline, rate limited, ...)."""


def _clean(value: Any, limit: int) -> str:
    """Plain single-line text, length-limited (web content is untrusted data)."""
    return " ".join(str(value or "").split())[:limit]


class WebRetriever:
    """DuckDuckGo & co. via `ddgs.DDGS().text`; one request per query."""

    name = "web"

    def __init__(
        self,
        *,
        region: str = "us-en",
        safesearch: str = "moderate",
        timeout: int = 10,
        backend: str = "auto",
        max_chars: int = 2000,
    ) -> None:
        try:
            from ddgs import DDGS  # noqa: F401  (lazy: optional extra)
        except ImportError:
            raise ConfigError(
                "web search needs the `web` extra: pip install 'masksearch[web]'"
            ) from None
        self.region, self.safesearch, self.timeout = region, safesearch, timeout
        self.backend, self.max_chars = backend, max_chars

    def _one(self, query: str, k: int) -> list[Passage]:
        from ddgs import DDGS
        from ddgs.exceptions import DDGSException

        try:
            hits = DDGS(timeout=self.timeout).text(
                query,
                region=self.region,
                safesearch=self.safesearch,
                max_results=k,
                backend=self.backend,
            )
        except DDGSException as e:
            raise WebSearchError(f"web search failed for {query!r}: {e} (offline?)") from None
        except OSError as e:
            raise WebSearchError(f"web search failed for {query!r}: {e} (offline?)") from None
        out = []
        for rank, hit in enumerate(hits[:k]):
            if not isinstance(hit, dict):
                continue
            url = _clean(hit.get("href"), 500)
            out.append(
                Passage(
                    id=url or f"web:{rank}",
                    title=_clean(hit.get("title"), 300),
                    text=_clean(hit.get("body"), self.max_chars),
                    score=1.0 / (rank + 1),
                )
            )
        return out

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        return [self._one(q, k) if q.strip() and k > 0 else [] for q in queries]
