"""Studio graph: importable offline with no keys; `langgraph dev` serves it over loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_studio_import_needs_no_key_or_network():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    code = (
        "import socket\n"
        "def deny(*a, **k): raise RuntimeError('network access at import')\n"
        "socket.socket.connect = deny\n"
        "from masksearch.graph.studio import graph\n"
        "import sys\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "print(sorted(graph(None).get_graph().nodes))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    for node in ("planner", "rewriter", "search", "observer", "force_answer", "agent", "judge"):
        assert node in out.stdout


def test_langgraph_json_points_at_studio_graph():
    cfg = json.loads((REPO / "langgraph.json").read_text())
    assert cfg["graphs"]["masksearch"] == "./masksearch/graph/studio.py:graph"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_langgraph_dev_serves_the_graph(tmp_path, tiny_corpus_path):
    """Start `langgraph dev` (in-memory server), run one question through langgraph_sdk (~5 s)."""
    cli = Path(sys.executable).parent / "langgraph"
    if not cli.exists():
        pytest.skip("langgraph-cli not installed (extra: studio)")
    from langgraph_sdk import get_client

    from masksearch.retrievers.build import build_index

    build_index(tiny_corpus_path, tmp_path / "idx", kind="bm25", show_progress=False)
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "cycle": True,
                "routes": {
                    "planner of a search team": [
                        "<think>find it</think><search>Eiffel Tower location</search>"
                    ],
                    "rewrite a search sub-query": ['{"queries": ["Eiffel Tower"]}'],
                    "observer of a search team": [
                        "<think>Doc 1 says Paris.</think><answer>Paris</answer>"
                    ],
                },
            }
        )
    )
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "dependencies": [str(REPO)],
                "graphs": {"masksearch": f"{REPO}/masksearch/graph/studio.py:graph"},
            }
        )
    )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["LANGSMITH_TRACING"] = "false"
    proc = subprocess.Popen(
        [
            str(cli),
            "dev",
            "--no-browser",
            "--no-reload",
            "--port",
            str(port),
            "--config",
            str(config),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("langgraph dev did not come up in 90 s")
        client = get_client(url=url)
        thread = await client.threads.create()
        spec = f"fake:{script}"
        result = await client.runs.wait(
            thread["thread_id"],
            "masksearch",
            input={"question": "Where is the Eiffel Tower?", "answers": ["Paris"], "task": "qa"},
            context={
                "planner_model": spec,
                "rewriter_model": spec,
                "observer_model": spec,
                "retriever": f"bm25:{tmp_path / 'idx'}",
                "top_k": 3,
            },
        )
        assert result["final_answer"] == "Paris" and result["status"] == "answered"
        assert result["accepted"] is True
        assert result["rounds"][0]["passages"][0]["title"] == "Eiffel Tower"
        state = await client.threads.get_state(thread["thread_id"])
        assert [s["agent"] for s in state["values"]["steps"]] == [
            "planner",
            "rewriter",
            "search",
            "observer",
        ]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
