"""Search-R1-compatible retrieval HTTP server (FastAPI).

`POST /retrieve {"queries": [...], "topk": 3, "return_scores": true}` →
`{"result": [[{"document": {"id", "contents"}, "score": s}, ...], ...]}`; with
`return_scores=false` each query gets a plain list of documents. `GET /health` reports status.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from masksearch.retrievers.base import Retriever

MAX_QUERIES = 1024
MAX_TOPK = 100


class QueryRequest(BaseModel):
    """Search-R1 request body."""

    queries: list[str] = Field(..., max_length=MAX_QUERIES)
    topk: int | None = Field(None, ge=1, le=MAX_TOPK)
    return_scores: bool = False


def create_app(retriever: Retriever, *, default_topk: int = 3) -> Any:
    """Build the FastAPI app serving `retriever` (run it with uvicorn)."""
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="masksearch retrieval server", version="1")

    @app.get("/health")
    def health() -> dict[str, Any]:
        info: dict[str, Any] = {"status": "ok", "retriever": getattr(retriever, "name", "?")}
        try:
            info["passages"] = len(retriever)  # type: ignore[arg-type]
        except TypeError:
            pass
        return info

    @app.post("/retrieve")
    def retrieve(req: QueryRequest) -> dict[str, Any]:
        k = req.topk or default_topk
        try:
            results = retriever.search(req.queries, k)
        except Exception as e:  # report retrieval failures as 503, never crash the server
            raise HTTPException(status_code=503, detail=f"{type(e).__name__}: {e}") from None
        out = []
        for hits in results:
            docs = [{"id": p.id, "contents": p.contents} for p in hits]
            if req.return_scores:
                out.append(
                    [
                        {"document": d, "score": p.score if p.score is not None else 0.0}
                        for d, p in zip(docs, hits, strict=True)
                    ]
                )
            else:
                out.append(docs)
        return {"result": out}

    return app


def serve(
    retriever: Retriever,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    default_topk: int = 3,
    log_level: str = "info",
) -> None:
    """Run the server in the foreground (blocking)."""
    import uvicorn

    uvicorn.run(
        create_app(retriever, default_topk=default_topk), host=host, port=port, log_level=log_level
    )
