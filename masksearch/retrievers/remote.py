"""Client for a Search-R1-compatible retrieval server (`POST /retrieve`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from masksearch.errors import MaskSearchError
from masksearch.types import Passage


class RemoteRetrievalError(MaskSearchError, RuntimeError):
    """The retrieval server could not be reached or answered something unexpected."""


TOKEN_ENV = "MASKSEARCH_RETRIEVAL_TOKEN"


class RemoteRetriever:
    """Batch client; always sends `return_scores=true` (Search-R1's server breaks without it).

    A bearer token (for `masksearch serve --token-env`) comes from `token` or the
    `MASKSEARCH_RETRIEVAL_TOKEN` environment variable."""

    name = "remote"

    def __init__(self, url: str, *, timeout: float = 60.0, token: str | None = None) -> None:
        import os

        self.url = url.rstrip("/")
        if not self.url.endswith("/retrieve"):
            self.url += "/retrieve"
        self.timeout = timeout
        token = token if token is not None else os.environ.get(TOKEN_ENV, "").strip()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _payload(self, queries: Sequence[str], k: int) -> dict[str, Any]:
        return {"queries": list(queries), "topk": k, "return_scores": True}

    def _parse(self, body: Any, n: int) -> list[list[Passage]]:
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, list) or len(result) != n:
            raise RemoteRetrievalError(f"{self.url}: expected {{'result': [...]}} with {n} lists")
        out = []
        for hits in result:
            row = []
            for hit in hits or []:
                doc = hit.get("document", hit) if isinstance(hit, dict) else None
                if not isinstance(doc, dict) or "contents" not in doc:
                    raise RemoteRetrievalError(f"{self.url}: a hit has no document.contents")
                score = hit.get("score") if isinstance(hit, dict) else None
                row.append(
                    Passage.from_contents(
                        str(doc.get("id", "")),
                        str(doc["contents"]),
                        float(score) if score is not None else None,
                    )
                )
            out.append(row)
        return out

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        import httpx

        if not queries:
            return []
        try:
            resp = httpx.post(
                self.url,
                json=self._payload(queries, k),
                headers=self._headers,
                timeout=self.timeout,
            )
            resp.raise_for_status()
            body = resp.json()
        except (httpx.HTTPError, ValueError) as e:
            raise RemoteRetrievalError(f"retrieval server {self.url} failed: {e}") from None
        return self._parse(body, len(queries))

    async def asearch(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        import httpx

        if not queries:
            return []
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                resp = await client.post(
                    self.url, json=self._payload(queries, k), headers=self._headers
                )
                resp.raise_for_status()
                body = resp.json()
        except (httpx.HTTPError, ValueError) as e:
            raise RemoteRetrievalError(f"retrieval server {self.url} failed: {e}") from None
        return self._parse(body, len(queries))
