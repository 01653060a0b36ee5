"""Search-R1-compatible retrieval HTTP server (FastAPI).

`POST /retrieve {"queries": [...], "topk": 3, "return_scores": true}` →
`{"result": [[{"document": {"id", "contents"}, "score": s}, ...], ...]}`; with
`return_scores=false` each query gets a plain list of documents. `GET /health` reports status.

Limits (`ServerLimits`): a request body over `max_body_bytes` gets 413 before it is read whole;
more than `max_queries` queries, a query over `max_query_chars` characters or a bad field get
422 with a short message that never echoes the request back. With a token
(`create_app(token=...)`, `masksearch serve --token-env VAR`) every path needs
`Authorization: Bearer <token>` (401 otherwise), `/docs` and `/openapi.json` included;
`check_bind` refuses a non-loopback address without one.

Slow clients (`serve`, through `guarded_h11`): a connection must send its request headers within
`header_timeout_s` of connecting (or of its previous response), and a body must keep arriving
(each part within `body_timeout_s`: else 408), or the connection is closed; beyond
`max_connections` open connections, new ones are closed at once. So connections that stall
inside the headers (slowloris) cannot pile up.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from masksearch.errors import ConfigError
from masksearch.retrievers.base import Retriever

MAX_QUERIES = 1024
MAX_TOPK = 100
MAX_QUERY_CHARS = 4096
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_DETAIL_CHARS = 300
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 256


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_body_bytes: int = MAX_BODY_BYTES
    max_queries: int = MAX_QUERIES
    max_query_chars: int = MAX_QUERY_CHARS
    header_timeout_s: float = HEADER_TIMEOUT_S  # request line + headers, from connect/last reply
    body_timeout_s: float = BODY_TIMEOUT_S  # longest wait for the next part of a body
    max_connections: int = MAX_CONNECTIONS  # open connections; more are closed at once


class QueryRequest(BaseModel):
    """Search-R1 request body."""

    queries: list[str] = Field(...)  # count and lengths checked against ServerLimits
    topk: int | None = Field(None, ge=1, le=MAX_TOPK)
    return_scores: bool = False


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


def check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    return port


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without authentication."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to listen on {host} without authentication: pass --token-env VAR "
            "(VAR holding a bearer token) or bind 127.0.0.1"
        )


class _BodyLimit:
    """ASGI middleware: 401 without the bearer `token` (when there is one) on every path; 413
    for a body over `limit` bytes (by Content-Length, or while streaming a chunked body), so an
    oversized request is never buffered whole; 408 when the next part of a body takes longer
    than `timeout_s`."""

    def __init__(
        self, app: Any, limit: int, token: str | None = None, timeout_s: float = BODY_TIMEOUT_S
    ) -> None:
        self.app, self.limit, self.token, self.timeout_s = app, limit, token, timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.token is not None and not token_ok(
            headers.get(b"authorization", b"").decode("latin-1"), self.token
        ):
            await _plain(send, 401, "missing or wrong bearer token", _BEARER)
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _plain(send, 413, f"request body over {self.limit} bytes")
            return
        # Read the body here (at most `limit` bytes are ever held), then replay it to the app.
        chunks, seen = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                await _plain(send, 408, f"request body stalled for {self.timeout_s:g} s")
                return
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await _plain(send, 413, f"request body over {self.limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_BEARER = ((b"www-authenticate", b"Bearer"),)


def token_ok(authorization: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries the bearer `token` (constant-time compare)."""
    scheme, _, value = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )


async def _plain(
    send: Any, status: int, detail: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _short_validation_detail(errors: list[Any]) -> dict[str, Any]:
    """At most 5 errors as `loc: msg`, never the offending input."""
    items = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        items.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}"[:200])
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return {"detail": "; ".join(items) + more}


def create_app(
    retriever: Retriever,
    *,
    default_top_k: int = 3,
    token: str | None = None,
    limits: ServerLimits | None = None,
) -> Any:
    """Build the FastAPI app serving `retriever` (run it with uvicorn)."""
    from fastapi import Depends, FastAPI, Header, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    limits = limits or ServerLimits()

    def authorize(authorization: str | None = Header(None)) -> None:
        if token is None:
            return
        if not token_ok(authorization, token):  # (the middleware checked it too: every path)
            raise HTTPException(
                status_code=401,
                detail="missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(
        title="masksearch retrieval server", version="1", dependencies=[Depends(authorize)]
    )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content=_short_validation_detail(list(exc.errors())))

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
        if len(req.queries) > limits.max_queries:
            raise HTTPException(
                status_code=422,
                detail=f"{len(req.queries)} queries; the limit is {limits.max_queries}",
            )
        for i, q in enumerate(req.queries):
            if len(q) > limits.max_query_chars:
                raise HTTPException(
                    status_code=422,
                    detail=f"queries[{i}]: {len(q)} characters; "
                    f"the limit is {limits.max_query_chars}",
                )
        k = req.topk or default_top_k
        try:
            results = retriever.search(req.queries, k)
        except Exception as e:  # report retrieval failures as 503, never crash the server
            raise HTTPException(
                status_code=503, detail=f"{type(e).__name__}: {e}"[:MAX_DETAIL_CHARS]
            ) from None
        out: list[list[dict[str, Any]]] = []
        for hits in results:
            docs: list[dict[str, Any]] = [{"id": p.id, "contents": p.contents} for p in hits]
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

    return _BodyLimit(app, limits.max_body_bytes, token, limits.body_timeout_s)


def guarded_h11(limits: ServerLimits) -> type:
    """uvicorn's h11 protocol with a header read timeout and a connection cap (`ServerLimits`):
    uvicorn times out only idle kept-alive connections, and counts its concurrency limit only
    once a request's headers are complete, so connections stalled inside the headers (slowloris)
    would otherwise stay open without bound."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self.transport.close()  # over the cap: refused before anything is read
                return
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(
                limits.header_timeout_s, self._header_deadline
            )

        def _header_deadline(self) -> None:
            self._header_timer = None
            # IDLE: the request line and headers of the next request are not complete yet
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()  # the next request's headers: the same deadline

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

    return GuardedH11


def serve(
    retriever: Retriever,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    default_top_k: int = 3,
    token: str | None = None,
    limits: ServerLimits | None = None,
    log_level: str = "info",
) -> None:
    """Run the server in the foreground (blocking)."""
    import uvicorn

    check_port(port)
    check_bind(host, token)
    limits = limits or ServerLimits()
    uvicorn.run(
        create_app(retriever, default_top_k=default_top_k, token=token, limits=limits),
        host=host,
        port=port,
        log_level=log_level,
        http=guarded_h11(limits),
    )
