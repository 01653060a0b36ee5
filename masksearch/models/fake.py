"""`ScriptedChatModel`: a deterministic chat model for tests, demos and fault injection.

Responses come from a list (consumed in order) or a function of the messages, so a test can
route by which prompt the model sees. A scripted item may be:
- a string (the reply; empty and malformed strings are fine),
- an exception instance (raised: e.g. `TimeoutError()`, `http_error(429)`, `http_error(500)`),
- a callable `f(messages) -> str | Exception` (called; an exception result is raised).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from masksearch.errors import ConfigError

Scripted = str | BaseException | Callable[[list[BaseMessage]], Any]


EXAMPLE_SCRIPT = Path(__file__).resolve().parents[1] / "data" / "examples" / "fake_agent.json"


class ScriptExhausted(ValueError):
    """The scripted model was called more times than it has responses."""


def http_error(status: int, message: str = "") -> Exception:
    """An `httpx.HTTPStatusError` with the given status (429/5xx are transient for the graph)."""
    import httpx

    request = httpx.Request("POST", "http://fake-llm.invalid/v1/chat/completions")
    response = httpx.Response(status, request=request, text=message or f"HTTP {status}")
    return httpx.HTTPStatusError(
        message or f"fake HTTP {status}", request=request, response=response
    )


def messages_text(messages: Sequence[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


def route_by_prompt(
    routes: Mapping[str, Sequence[Scripted]], default: Sequence[Scripted] = ()
) -> Callable[[list[BaseMessage]], Any]:
    """Respond from the first route whose key occurs in the messages' text (queues consumed in order)."""
    queues = {key: list(items) for key, items in routes.items()}
    fallback = list(default)
    lock = threading.Lock()

    def respond(messages: list[BaseMessage]) -> Any:
        text = messages_text(messages)
        with lock:
            for key, queue in queues.items():
                if key in text:
                    if not queue:
                        raise ScriptExhausted(f"no scripted response left for route {key!r}")
                    return queue.pop(0)
            if fallback:
                return fallback.pop(0)
        raise ScriptExhausted("no route matched the prompt and no default response is left")

    return respond


class ScriptedChatModel(BaseChatModel):
    """Chat model replaying scripted responses; records every call in `calls`."""

    responses: list[Any] = Field(default_factory=list)
    respond: Callable[[list[BaseMessage]], Any] | None = None
    model_name: str = "fake:scripted"
    cycle: bool = False
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[Any] = Field(default_factory=list)
    _index: int = PrivateAttr(default=0)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedChatModel:
        """Load a script: a JSON list of replies, or `{"routes": {substring: [...]}, "default": [...],
        "cycle": bool}`. A reply may be `{"error": 429}` / `{"error": "timeout"}` to inject failures.
        `example` names the shipped demo script (`masksearch/data/examples/fake_agent.json`)."""
        p = EXAMPLE_SCRIPT if str(path) == "example" else Path(path)
        if not p.is_file():
            raise ConfigError(f"fake model script not found: {p}")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: invalid JSON ({e.msg} at line {e.lineno})") from None
        name = f"fake:{p.name}"
        if isinstance(data, list):
            return cls(responses=[_decode(x) for x in data], model_name=name)
        if isinstance(data, dict) and isinstance(data.get("routes", {}), dict):
            cycle = bool(data.get("cycle", False))
            routes = {k: [_decode(x) for x in v] for k, v in data.get("routes", {}).items()}
            default = [_decode(x) for x in data.get("default", [])]
            if cycle:
                return cls(respond=_cycling_router(routes, default), model_name=name)
            return cls(respond=route_by_prompt(routes, default), model_name=name)
        raise ConfigError(f"{p}: expected a JSON list or an object with 'routes'")

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        self.bound_tools = list(tools)
        return self

    def _next(self, messages: list[BaseMessage]) -> Any:
        with self._lock:
            self.calls.append(list(messages))
        if self.respond is not None:  # called outside the lock: a slow reply must not block others
            return self.respond(list(messages))
        with self._lock:
            if self._index >= len(self.responses):
                if not (self.cycle and self.responses):
                    raise ScriptExhausted(
                        f"scripted model called {self._index + 1} times, "
                        f"only {len(self.responses)} responses"
                    )
                self._index = 0
            item = self.responses[self._index]
            self._index += 1
            return item

    def _reply(self, messages: list[BaseMessage], stop: list[str] | None) -> tuple[str, Any]:
        """The next scripted reply (cut at the first stop string) and its usage metadata."""
        item = self._next(messages)
        if callable(item) and not isinstance(item, BaseException):
            item = item(list(messages))
        if isinstance(item, BaseException):
            raise item
        text = str(item)
        for s in stop or []:
            if s and s in text:
                text = text[: text.index(s)]
        prompt_words = len(messages_text(messages).split())
        out_words = len(text.split())
        usage = {
            "input_tokens": prompt_words,
            "output_tokens": out_words,
            "total_tokens": prompt_words + out_words,
        }
        return text, usage

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        text, usage = self._reply(messages, stop)
        msg = AIMessage(content=text, usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Token streaming: the reply word by word (whitespace kept), usage on the last chunk."""
        for chunk in _chunks(*self._reply(messages, stop)):
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in _chunks(*self._reply(messages, stop)):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def _chunks(text: str, usage: Any) -> list[ChatGenerationChunk]:
    """A reply as word-sized chunks (whitespace kept); the usage rides on the last one."""
    pieces = _TOKEN.findall(text) or [""]
    return [
        ChatGenerationChunk(
            message=AIMessageChunk(
                content=piece, usage_metadata=usage if n == len(pieces) - 1 else None
            )
        )
        for n, piece in enumerate(pieces)
    ]


_TOKEN = re.compile(r"\s*\S+|\s+")


def _decode(item: Any) -> Any:
    if isinstance(item, dict) and "error" in item:
        err = item["error"]
        if err == "timeout":
            return TimeoutError("scripted timeout")
        if isinstance(err, int):
            return http_error(err)
        return RuntimeError(str(err))
    if isinstance(item, str):
        return item
    raise ConfigError(f"scripted reply must be a string or {{'error': ...}}, got {item!r}")


def _cycling_router(
    routes: dict[str, list[Any]], default: list[Any]
) -> Callable[[list[BaseMessage]], Any]:
    counters: dict[str, int] = {}
    lock = threading.Lock()

    def respond(messages: list[BaseMessage]) -> Any:
        text = messages_text(messages)
        with lock:
            for key, items in [*routes.items(), ("", default)]:
                if items and key in text:
                    i = counters.get(key, 0)
                    counters[key] = i + 1
                    return items[i % len(items)]
        raise ScriptExhausted("no route matched the prompt")

    return respond
