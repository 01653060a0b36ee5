"""Guards against quiet damage: a run whose model refuses every call stops (exit 3), slow or
greedy HTTP clients cannot hold the retrieval server, its docs need the token, an archived
store exports from a read-only disk, written files follow the umask, `sqlite:` URLs are read as
SQLAlchemy reads them, passwords in URLs never reach a printed line, and a FIFO input with a
writer that never closes is refused instead of blocking.

The matrices of one-line errors are `test_bad_inputs.py` and `test_bad_inputs_eval_server.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from masksearch.cli import run
from masksearch.errors import ConfigError, OutputError, RunStopped
from masksearch.pipeline.testing import masked_row, team_script

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_corpus.jsonl"


def write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("guards")
    assert run(["index", "--corpus", str(TINY), "--out", str(base / "index"), "--quiet"]) == 0
    write_lines(base / "masked.jsonl", [masked_row(i) for i in range(3)])
    team_script(base / "team.json", "3")
    code = run(
        [
            *gen_args(base, base / "masked.jsonl", base / "store.sqlite"),
            "--planner-model",
            f"fake:{base / 'team.json'}",
        ]
    )
    assert code == 0
    return base


def gen_args(shared: Path, input: Path, store: Path) -> list[str]:
    return [
        "generate",
        "--input",
        str(input),
        "--store",
        str(store),
        "--retriever",
        f"bm25:{shared / 'index'}",
        "--max-turns",
        "1",
        "--no-progress",
    ]


# -- a model server that refuses every call ---------------------------------------------------
class _Refusing(BaseHTTPRequestHandler):
    status = 401
    calls = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(
            {
                "error": {
                    "message": "Incorrect API key provided"
                    if self.status == 401
                    else "The model `m` does not exist",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key" if self.status == 401 else "model_not_found",
                }
            }
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server(request) -> Iterator[tuple[str, type[_Refusing]]]:
    handler = type("Handler", (_Refusing,), {"status": request.param, "calls": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.handle_error = lambda *a: None  # type: ignore[method-assign]  # (a client hung up)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "refusing_server,cause",
    [(401, "authentication refused"), (404, "unknown model")],
    indirect=["refusing_server"],
)
def test_generate_stops_early_when_every_first_call_is_refused(
    shared, tmp_path, capsys, monkeypatch, refusing_server, cause
):
    url, handler = refusing_server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-123456")
    masked = write_lines(tmp_path / "in.jsonl", [masked_row(i) for i in range(40)])
    before = masked.read_bytes()
    store = tmp_path / "s.sqlite"
    argv = [
        *gen_args(shared, masked, store),
        "--planner-model",
        f"openai-compatible:m@{url}",
        "--concurrency",
        "2",
    ]
    code = run(argv)
    text = capsys.readouterr().err
    assert code == 3, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and cause in errors[0] and "first 3 examples" in errors[0], text
    assert "Traceback" not in text and "sk-test-not-a-real-key" not in text
    db = sqlite3.connect(store)
    statuses = [s for (s,) in db.execute("SELECT status FROM trajectories")]
    db.close()
    # stopped after its first failures: not the 40 examples (2 in flight at once)
    assert 3 <= len(statuses) <= 4 and set(statuses) == {"failed"}, statuses
    assert handler.calls <= 8, handler.calls
    assert masked.read_bytes() == before


def test_failure_streak_is_disarmed_by_a_success_or_another_cause():
    from masksearch.pipeline.failfast import FailureStreak

    refused = {"status": "failed", "error": "AuthenticationError: Error code: 401 - bad key"}
    other = {"status": "failed", "error": "ValueError: something else"}
    ok = {"status": "answered", "error": None}
    for first in (ok, other):
        streak = FailureStreak(3)
        streak.observe(first)
        for _ in range(10):
            streak.observe(refused)  # later failures never stop a run that started well
    streak = FailureStreak(3)
    streak.observe(refused)
    streak.observe(refused)
    with pytest.raises(RunStopped, match="authentication refused"):
        streak.observe(refused)
    assert RunStopped.exit_code == 3


def test_password_in_a_model_url_is_never_printed(shared, tmp_path, capsys):
    masked = write_lines(tmp_path / "in.jsonl", [masked_row(0)])
    argv = [
        *gen_args(shared, masked, tmp_path / "s.sqlite"),
        "--planner-model",
        "openai-compatible:m@http://user:PASSWORD123@host/v1",
    ]
    assert run(argv) == 2
    text = capsys.readouterr().err
    assert "bad model spec" in text and "PASSWORD123" not in text, text


def test_redact_hides_url_passwords_and_secret_query_values():
    from masksearch.redact import redact

    text = "postgres://bob:hunter2@db:5432/ms and https://x.io/s?api_key=abc123&q=1"
    clean = redact(text)
    assert "hunter2" not in clean and "abc123" not in clean
    assert "postgres://bob:" in clean and "q=1" in clean
    assert redact("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


# -- inputs that never end -----------------------------------------------------------------------
def test_fifo_input_with_an_open_writer_is_refused_at_once(shared, tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer that never closes
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "masksearch.cli",
                *gen_args(shared, fifo, tmp_path / "s.sqlite"),
                "--planner-model",
                f"fake:{shared / 'team.json'}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )
    finally:
        os.close(writer)
    assert done.returncode == 2, done.stderr
    assert "a FIFO, not a regular file" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "s.sqlite").exists()


# -- the retrieval server -------------------------------------------------------------------------
class _TinyRetriever:
    name = "tiny"

    def search(self, queries, k):
        return [[] for _ in queries]

    def __len__(self) -> int:
        return 0


@pytest.fixture
def live_server(request) -> Iterator[int]:
    import uvicorn

    from masksearch.retrievers.server import ServerLimits, create_app, guarded_h11

    limits = ServerLimits(**request.param)
    config = uvicorn.Config(
        create_app(_TinyRetriever(), limits=limits),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=0,
        http=guarded_h11(limits),  # type: ignore[arg-type]
        log_level="error",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _stalled(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        sock.settimeout(10)
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _health(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


@pytest.mark.parametrize("live_server", [{"header_timeout_s": 0.5}], indirect=True)
def test_slowloris_connections_are_closed_by_the_server(live_server):
    port = live_server
    socks = [_stalled(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(20)]
    try:
        assert all(_closed_by_server(s) for s in socks)
    finally:
        for s in socks:
            s.close()
    assert b"200 OK" in _health(port)  # and a normal client is still served


@pytest.mark.parametrize(
    "live_server", [{"header_timeout_s": 60.0, "max_connections": 4}], indirect=True
)
def test_connections_beyond_the_cap_are_closed_at_once(live_server):
    port = live_server
    held = [_stalled(port, b"GET /health HTTP/1.1\r\n") for _ in range(4)]
    try:
        time.sleep(0.2)  # (the server has accepted them)
        extra = _stalled(port, b"GET /health HTTP/1.1\r\n")
        assert _closed_by_server(extra)
        extra.close()
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while b"200 OK" not in _health_or_empty(port):  # room again once they are gone
        assert time.monotonic() < deadline


def _health_or_empty(port: int) -> bytes:
    try:
        return _health(port)
    except OSError:
        time.sleep(0.05)
        return b""


@pytest.mark.parametrize("live_server", [{"body_timeout_s": 0.5}], indirect=True)
def test_a_stalled_body_gets_408_and_the_connection_closes(live_server):
    sock = _stalled(
        live_server,
        b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{",
    )
    try:
        sock.settimeout(10)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 408"), data
    finally:
        sock.close()


def test_docs_and_openapi_need_the_token():
    from fastapi.testclient import TestClient

    from masksearch.retrievers.server import create_app

    client = TestClient(create_app(_TinyRetriever(), token="s3cret-token-value"))  # type: ignore[arg-type]
    for path in ("/docs", "/openapi.json", "/redoc", "/health", "/nowhere"):
        assert client.get(path).status_code == 401, path
    auth = {"Authorization": "Bearer s3cret-token-value"}
    assert client.get("/openapi.json", headers=auth).status_code == 200
    assert client.get("/docs", headers=auth).status_code == 200


# -- stores and files ---------------------------------------------------------------------------
def test_a_store_on_a_read_only_file_system_exports(shared, tmp_path, tmpfs, capsys):
    d = tmpfs.mount("size=8m")
    shutil.copy(shared / "store.sqlite", d / "store.sqlite")
    db = sqlite3.connect(d / "store.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    if subprocess.run(["mount", "-o", "remount,ro", str(d)], capture_output=True).returncode:
        pytest.skip("cannot remount read-only here")
    out = tmp_path / "o.jsonl"
    code = run(
        [
            *["export", "--records", str(d / "store.sqlite"), "--format", "trl", "--all"],
            *["--out", str(out)],
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert sum(1 for _ in out.open()) >= 1


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_exports_and_summaries_follow_the_umask(shared, tmp_path, capsys, umask, mode):
    old = os.umask(umask)
    try:
        out, summary = tmp_path / "x.jsonl", tmp_path / "s.json"
        store = tmp_path / "s.sqlite"
        shutil.copy(shared / "store.sqlite", store)
        argv = [
            *gen_args(shared, shared / "masked.jsonl", store),
            "--planner-model",
            f"fake:{shared / 'team.json'}",
            "--export",
            str(out),
            "--summary-json",
            str(summary),
        ]
        assert run(argv) == 0, capsys.readouterr().err
        exported = tmp_path / "e.jsonl"
        assert (
            run(["export", "--records", str(store), "-f", "trl", "--out", str(exported), "--all"])
            == 0
        )
    finally:
        os.umask(old)
    for path in (out, summary, exported):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_a_rewritten_file_keeps_its_mode(tmp_path):
    from masksearch.fileio import atomic_write_text

    path = tmp_path / "keep.json"
    path.write_text("{}")
    path.chmod(0o640)
    atomic_write_text(path, '{"a": 1}')
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    "url,path",
    [
        ("sqlite:///rel/x.db", "rel/x.db"),
        ("sqlite:///x.db", "x.db"),
        ("sqlite:////abs/dir/x.db", "/abs/dir/x.db"),
    ],
)
def test_sqlite_urls_are_read_as_sqlalchemy_reads_them(url, path, tmp_path, monkeypatch):
    from masksearch.graph.checkpoint import sqlite_path

    monkeypatch.chdir(tmp_path)
    assert sqlite_path(url) == path


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:///tmp/nowhere/x.db"]
)
def test_sqlite_urls_without_a_clear_path_are_refused(url, tmp_path, monkeypatch):
    from masksearch.graph.checkpoint import sqlite_path

    monkeypatch.chdir(tmp_path)  # (it has no tmp/, while / has one)
    with pytest.raises(ConfigError):
        sqlite_path(url)


def test_output_kind_checks_look_at_head_and_tail(tmp_path):
    from masksearch.fileio import check_output_file

    good = tmp_path / "good.jsonl"
    good.write_text('{"a": 1}\n' * 20000 + '{"partial": ')  # a kill left a partial line
    check_output_file(good, kind="jsonl")
    tail_bad = tmp_path / "tail.jsonl"
    tail_bad.write_text('{"a": 1}\n' * 20000 + "not json at all\n")
    with pytest.raises(OutputError, match="last line"):
        check_output_file(tail_bad, kind="jsonl")
    text = tmp_path / "notes.jsonl"
    text.write_text("dear diary\n")
    with pytest.raises(OutputError, match="line 1"):
        check_output_file(text, kind="jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    check_output_file(empty, kind="jsonl")
