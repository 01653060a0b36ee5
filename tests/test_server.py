"""Retrieval server round trip over loopback (real uvicorn in a thread) + the remote client."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from masksearch.retrievers import asearch, load_retriever
from masksearch.retrievers.bm25 import BM25Retriever
from masksearch.retrievers.build import build_index
from masksearch.retrievers.remote import RemoteRetrievalError, RemoteRetriever
from masksearch.retrievers.server import create_app

TINY = Path(__file__).parent / "data" / "tiny_corpus.jsonl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    out = tmp_path_factory.mktemp("srv")
    build_index(TINY, out, show_progress=False)
    return BM25Retriever(out)


@pytest.fixture(scope="module")
def server(local):
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(create_app(local), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        if time.time() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_retrieve_with_scores_is_search_r1_shaped(server):
    body = {
        "queries": ["Who designed the Eiffel Tower", "capital of Sudan"],
        "topk": 2,
        "return_scores": True,
    }
    resp = httpx.post(f"{server}/retrieve", json=body, timeout=10)
    assert resp.status_code == 200
    result = resp.json()["result"]
    assert len(result) == 2 and len(result[0]) == 2
    top = result[0][0]
    assert set(top) == {"document", "score"} and set(top["document"]) == {"id", "contents"}
    assert top["document"]["id"] == "0"
    assert top["document"]["contents"].startswith("Eiffel Tower\nThe Eiffel Tower")
    assert top["score"] > result[0][1]["score"]
    assert result[1][0]["document"]["contents"].startswith("Khartoum\n")


def test_retrieve_without_scores_returns_documents(server):
    for n in (1, 2, 3):  # Search-R1's server mis-unpacks exactly this case
        resp = httpx.post(
            f"{server}/retrieve", json={"queries": ["Bach"] * n, "topk": 1}, timeout=10
        )
        assert resp.status_code == 200
        result = resp.json()["result"]
        assert len(result) == n
        assert result[0] == [{"id": "20", "contents": result[0][0]["contents"]}]


def test_default_topk_health_and_validation(server):
    resp = httpx.post(f"{server}/retrieve", json={"queries": ["river"], "return_scores": True})
    assert len(resp.json()["result"][0]) == 3
    health = httpx.get(f"{server}/health").json()
    assert health == {"status": "ok", "retriever": "bm25", "passages": 24}
    assert httpx.post(f"{server}/retrieve", json={"topk": 3}).status_code == 422
    assert httpx.post(f"{server}/retrieve", json={"queries": ["x"], "topk": 0}).status_code == 422


def test_remote_retriever_round_trip(server, local):
    queries = ["Who designed the Eiffel Tower", "Dutch programmer who created Python", "zzzz"]
    remote = load_retriever(f"remote:{server}")
    got = remote.search(queries, 3)
    assert got == local.search(queries, 3)  # ids, titles, texts and scores survive the trip
    assert got[2] == []
    assert RemoteRetriever(server + "/retrieve/").url == f"{server}/retrieve"
    with pytest.raises(TypeError):
        len(remote)  # remote indexes have no known size; /health then omits "passages"


def test_health_through_cached_retriever(local):
    from fastapi.testclient import TestClient

    from masksearch.retrievers.cache import CachedRetriever

    client = TestClient(create_app(CachedRetriever(local)))
    assert client.get("/health").json()["passages"] == 24


async def test_remote_async(server, local):
    remote = RemoteRetriever(server)
    got = await asearch(remote, ["Bach", "Nile"], 2)
    assert got == local.search(["Bach", "Nile"], 2)


def test_remote_errors_are_clear():
    port = _free_port()  # nothing listens here
    with pytest.raises(RemoteRetrievalError, match="retrieval server"):
        RemoteRetriever(f"http://127.0.0.1:{port}", timeout=2).search(["x"], 1)
    with pytest.raises(RemoteRetrievalError, match="expected"):
        RemoteRetriever("http://127.0.0.1:1")._parse({"result": [[]]}, 2)
    with pytest.raises(RemoteRetrievalError, match="document.contents"):
        RemoteRetriever("http://127.0.0.1:1")._parse({"result": [[{"score": 1}]]}, 1)


def test_server_reports_retriever_failure_as_503():
    from fastapi.testclient import TestClient

    class Broken:
        name = "broken"

        def search(self, queries, k):
            raise RuntimeError("index unavailable")

    client = TestClient(create_app(Broken()))
    resp = client.post("/retrieve", json={"queries": ["x"]})
    assert resp.status_code == 503 and "index unavailable" in resp.json()["detail"]
    assert client.get("/health").json() == {"status": "ok", "retriever": "broken"}


# --- limits, auth, bounded cache (issue 11 item 9) ------------------------------------------


def _serve_app(app):
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    return srv, thread, f"http://127.0.0.1:{port}"


def test_body_and_query_limits_over_loopback(local):
    from masksearch.retrievers.server import ServerLimits

    limits = ServerLimits(max_body_bytes=20_000, max_queries=50, max_query_chars=500)
    srv, thread, url = _serve_app(create_app(local, limits=limits))
    try:
        big = httpx.post(f"{url}/retrieve", json={"queries": ["x" * 30_000]}, timeout=10)
        assert big.status_code == 413 and "20000 bytes" in big.json()["detail"]

        def chunks():  # no Content-Length: the limit applies while streaming
            yield b'{"queries": ["'
            for _ in range(100):
                yield b"y" * 1000
            yield b'"]}'

        streamed = httpx.post(f"{url}/retrieve", content=chunks(), timeout=10)
        assert streamed.status_code == 413

        long_q = httpx.post(f"{url}/retrieve", json={"queries": ["ok", "z" * 600]}, timeout=10)
        assert long_q.status_code == 422
        assert long_q.json()["detail"] == "queries[1]: 600 characters; the limit is 500"

        many = httpx.post(f"{url}/retrieve", json={"queries": ["q"] * 60}, timeout=10)
        assert many.status_code == 422 and "60 queries; the limit is 50" in many.text

        # a schema error over many queries answers briefly, without echoing the input back
        bad = httpx.post(f"{url}/retrieve", json={"queries": [{"q": "SECRET"}] * 40}, timeout=10)
        assert bad.status_code == 422
        assert "SECRET" not in bad.text and len(bad.text) < 1000
        assert "(+35 more)" in bad.json()["detail"]

        ok = httpx.post(f"{url}/retrieve", json={"queries": ["river"], "topk": 1}, timeout=10)
        assert ok.status_code == 200 and len(ok.json()["result"][0]) == 1
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_bearer_token(local, monkeypatch):
    srv, thread, url = _serve_app(create_app(local, token="s3cret-token"))
    try:
        body = {"queries": ["river"], "topk": 1}
        assert httpx.post(f"{url}/retrieve", json=body).status_code == 401
        assert httpx.get(f"{url}/health").status_code == 401
        wrong = httpx.post(f"{url}/retrieve", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "s3cret" not in wrong.text
        good = httpx.post(
            f"{url}/retrieve", json=body, headers={"Authorization": "Bearer s3cret-token"}
        )
        assert good.status_code == 200
        with pytest.raises(RemoteRetrievalError, match="401"):
            RemoteRetriever(url).search(["river"], 1)
        monkeypatch.setenv("MASKSEARCH_RETRIEVAL_TOKEN", "s3cret-token")
        assert RemoteRetriever(url).search(["river"], 1) == local.search(["river"], 1)
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_bind_rules():
    from masksearch.errors import ConfigError
    from masksearch.retrievers.server import check_bind, check_port, is_loopback

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "10.0.0.5", "example.org"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match="without authentication"):
            check_bind(host, None)
        check_bind(host, "tok")
    for port in (0, -1, 65536, 70000):
        with pytest.raises(ConfigError, match="1..65535"):
            check_port(port)
    assert check_port(65535) == 65535


def test_cache_stays_bounded(local):
    from masksearch.retrievers.cache import CachedRetriever

    cached = CachedRetriever(local, maxsize=100, max_bytes=50_000)
    for i in range(400):
        cached.search([f"river {i} " + "w" * (i % 50)], 2)
        assert len(cached._cache) <= 100 and cached.nbytes <= 50_000
    assert cached.nbytes == sum(cached._sizes.values())
    cached.search(["river 399 " + "w" * 49], 2)  # most recent entry is still cached
    assert cached.hits == 1
    cached.search(["x" * 100_000], 2)  # an entry bigger than the budget is not kept
    assert ("x" * 100_000, 2) not in cached._cache


def test_serve_cli_refuses_bad_port_and_open_bind(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("MS_TOKEN", None)
    cases = [
        (["--port", "70000"], "--port must be in 1..65535, got 70000"),
        (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0 without authentication"),
        (["--host", "0.0.0.0", "--token-env", "MS_TOKEN"], "MS_TOKEN"),
    ]
    for args, message in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "masksearch.cli", "serve", "--index", str(tmp_path), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_stem_cache_is_bounded(monkeypatch):
    from masksearch.retrievers import bm25

    monkeypatch.setattr(bm25, "STEM_CACHE_WORDS", 100)
    analyzer = bm25.Analyzer()
    words = [f"word{i}x" for i in range(1000)] + ["z" * 40]
    assert len(analyzer(" ".join(words))) == len(words)
    assert len(analyzer._cache) == 100 and "z" * 40 not in analyzer._cache
    assert analyzer("running") == analyzer("running") == ["run"]
