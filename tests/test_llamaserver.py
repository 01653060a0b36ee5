"""`llama-server:<model>@<url>`: the project's grammars reach llama.cpp's server in the request body.

A tiny HTTP server stands in for `llama-server` (its /v1/chat/completions reply shape, with the
`timings` object llama.cpp adds) and records every request body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from masksearch import grammars
from masksearch.context import Context
from masksearch.errors import ConfigError
from masksearch.models import load_chat_model, output_format_kwargs
from masksearch.models.llamaserver import LlamaServerChatModel, _StreamCut
from masksearch.nodes.common import call_model
from masksearch.resources import Resources


class FakeLlamaServer:
    """Answers every chat completion with `reply` and keeps the request bodies."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                data = json.dumps(outer.response(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def response(self, body: dict[str, Any]) -> dict[str, Any]:
        last = body["messages"][-1]  # like llama-server: a continued turn's text comes first
        prefill = last["content"] if last["role"] == "assistant" else ""
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": prefill + self.reply},
                }
            ],
            "usage": {"prompt_tokens": 57, "completion_tokens": 4, "total_tokens": 61},
            "timings": {
                "cache_n": 40,
                "prompt_n": 17,
                "prompt_ms": 250.0,
                "predicted_n": 4,
                "predicted_ms": 100.0,
                "predicted_per_second": 40.0,
                "draft_n": 3,
                "draft_n_accepted": 2,
            },
        }


@pytest.fixture
def server() -> Iterator[FakeLlamaServer]:
    srv = FakeLlamaServer("<verdict>correct</verdict>")
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_spec_builds_a_grammar_model(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    m = load_chat_model("llama-server:qwen@http://127.0.0.1:8080/v1", temperature=0.0)
    assert isinstance(m, LlamaServerChatModel) and m.supports_output_format
    assert m.model_name == "qwen" and m.openai_api_base == "http://127.0.0.1:8080/v1"
    assert output_format_kwargs(m, "verdict") == {"output_format": "verdict"}
    # a plain OpenAI-compatible server gets no grammar (JSON mode only for the JSON formats)
    plain = load_chat_model("openai-compatible:qwen@http://127.0.0.1:8080/v1")
    assert output_format_kwargs(plain, "verdict") == {}
    with pytest.raises(ConfigError, match="llama-server:<model>@"):
        load_chat_model("llama-server:qwen")


def test_grammar_and_budget_reach_the_request_body(server):
    m = load_chat_model(f"llama-server:qwen@{server.url}", temperature=0.0, max_tokens=5)
    msg = m.invoke("Is it right?", output_format="verdict")
    body = server.bodies[-1]
    assert body["grammar"] == grammars.grammar_for("verdict")
    assert body["max_completion_tokens"] == grammars.token_budget("verdict", 5) == 10
    assert body["temperature"] == 0.0 and "output_format" not in body
    assert msg.content == "<verdict>correct</verdict>"
    assert msg.usage_metadata["input_tokens"] == 57
    meta = msg.response_metadata
    assert meta["prompt_cached_tokens"] == 40 and meta["prompt_eval_s"] == 0.25
    assert (meta["lookup_drafted"], meta["lookup_kept"]) == (3, 2)

    # a GBNF string as the format, a per-call limit kept as given, stop strings
    gbnf = 'root ::= "Doc " [1-3]'
    m.invoke("Which?", output_format=gbnf, max_tokens=3, stop=["\n"])
    body = server.bodies[-1]
    assert body["grammar"] == gbnf and body["max_completion_tokens"] == 3
    assert body["stop"] == ["\n"]

    # no format: a plain chat completion
    m.invoke("hello")
    assert "grammar" not in server.bodies[-1] and server.bodies[-1]["max_completion_tokens"] == 5


def test_repetition_penalty_is_llamacpp_repeat_penalty(server):
    m = load_chat_model(f"llama-server:qwen@{server.url}", repetition_penalty=1.3)
    m.invoke("x", output_format="verdict")
    body = server.bodies[-1]
    assert body["repeat_penalty"] == 1.3 and "repetition_penalty" not in body
    assert body["grammar"] == grammars.grammar_for("verdict")


async def test_a_node_call_sends_the_roles_grammar_and_continues_assistant_turns(server):
    """Through the graph's own model call: the output format becomes the body's grammar, and a
    conversation ending with an assistant turn is sent as is (the server continues it)."""
    ctx = Context(observer_model=f"llama-server:qwen@{server.url}")
    resources = Resources()
    messages = [
        {"role": "user", "content": "Fill the blank."},
        {"role": "assistant", "content": "The tower was designed by"},
    ]
    text, meta = await call_model(
        ctx, "observer", messages, resources=resources, output_format="verdict", stop=["."]
    )
    body = server.bodies[-1]
    assert text == "<verdict>correct</verdict>"  # the continuation only, as in process
    assert body["grammar"] == grammars.grammar_for("verdict")
    assert body["messages"][-1] == {
        "role": "assistant",
        "content": "The tower was designed by",
    }
    assert body["stop"] == ["."] and body["temperature"] == 0.0
    assert meta["prompt_tokens"] == 57 and meta["completion_tokens"] == 4


def test_a_streamed_continuation_drops_the_repeated_turn():
    from langchain_core.messages import AIMessageChunk
    from langchain_core.outputs import ChatGenerationChunk

    def run(prefill: str, pieces: list[str]) -> str:
        cut = _StreamCut(prefill)
        out = []
        for p in pieces:
            out += [c.text for c in cut(ChatGenerationChunk(message=AIMessageChunk(content=p)))]
        return "".join(out)

    assert run("The tower was", ["The ", "tower", " was", " built", " in 1889"]) == " built in 1889"
    assert run("The tower was", ["The tower was built"]) == " built"
    assert run("", ["Hello", " there"]) == "Hello there"
    assert run("Doc ", ["Doc ", "2"]) == "2"
