"""Studio graph: importable offline with no keys (the server tests are in test_studio_server.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    assert (
        cfg["env"] == ".env" and cfg["python_version"] == "3.11"
    )  # the user's .env, not the example
