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
    build_index(TINY, out, kind="bm25", show_progress=False)
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
