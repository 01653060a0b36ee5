"""Shared node helpers: one timed, time-limited model call; transient-error classification;
the chat messages each node adds to the `messages` channel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.types import RetryPolicy

from masksearch.context import Context
from masksearch.errors import ContextOverflow
from masksearch.models import output_format_kwargs
from masksearch.models.invoke import ainvoke_chat, is_context_overflow
from masksearch.redact import redact_exception
from masksearch.resources import Resources
from masksearch.state import GraphState
from masksearch.tagformat import parse_action, strip_tags

TRANSIENT_STATUS = {408, 409, 425, 429}
_TRANSIENT_CLASS_NAMES = {
    "APIConnectionError",
    "APITimeoutError",
    "TimeoutException",
    "TransportError",
    "NetworkError",
    "RemoteProtocolError",
    "NodeTimeoutError",
}


def is_transient(exc: BaseException) -> bool:
    """Retry timeouts, connection errors, HTTP 408/409/425/429 and 5xx; never parse/config errors."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError):
        return True
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_STATUS or 500 <= status < 600
    return any(cls.__name__ in _TRANSIENT_CLASS_NAMES for cls in type(exc).__mro__)


def default_retry_policy(max_attempts: int = 3, initial_interval: float = 1.0) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=max_attempts,
        initial_interval=initial_interval,
        backoff_factor=2.0,
        max_interval=60.0,
        jitter=True,
        retry_on=is_transient,
    )


def to_lc_messages(messages: Sequence[dict[str, str]]) -> list[BaseMessage]:
    """Record-style dicts → LangChain messages (tool turns go back to the model as user turns)."""
    out: list[BaseMessage] = []
    for m in messages:
        role, content = m["role"], m["content"]
        if role == "system":
            out.append(SystemMessage(content))
        elif role == "assistant":
            out.append(AIMessage(content))
        else:
            out.append(HumanMessage(content))
    return out


def message_text(msg: Any) -> str:
    content = getattr(msg, "content", msg)
    if isinstance(content, str):
        return content
    return getattr(msg, "text", "") or ""


async def call_model(
    ctx: Context,
    role: str,
    messages: Sequence[dict[str, str]],
    *,
    resources: Resources,
    stop: list[str] | None = None,
    output_format: str | None = None,
    max_tokens: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Call the role's model with a per-call timeout; return (text, step metadata).

    `output_format` (a `masksearch.grammars` name or GBNF grammar) is decoded under its grammar by
    models that support it (local llama.cpp), sent as JSON mode to APIs for the JSON formats, and
    otherwise only guides the caller's parser. The time limit is `ctx.timeout_for(spec)` (by
    default none for a local model); a timeout cancels a local generation between tokens, and its
    retry reuses the prompt tokens already evaluated (llama.cpp's cached prefix).
    `max_tokens` caps this call (default: the Context's limit, raised to what the format needs).
    A conversation ending with an assistant turn is continued from it by models that can
    (llama.cpp): the reply is the continuation.

    The metadata holds `model`, `latency_s`, token counts and `message_id` (the reply's id, so
    the node's chat message matches the tokens streamed under `stream_mode="messages"`).
    """
    spec = ctx.model_for(role)
    model = await resources.amodel(spec, **ctx.model_settings())
    start = time.perf_counter()
    kwargs: dict[str, Any] = {"stop": stop} if stop else {}
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    kwargs.update(output_format_kwargs(model, output_format))
    limit = ctx.timeout_for(spec)
    try:
        async with asyncio.timeout(limit):  # no extra task, unlike wait_for
            msg = await ainvoke_chat(model, to_lc_messages(messages), **kwargs)
    except TimeoutError:  # a local generation is cancelled between tokens; retried (transient)
        raise TimeoutError(f"{role} model call exceeded llm_timeout_s={limit:g}s") from None
    except ContextOverflow:
        raise
    except Exception as e:  # an upstream error may echo the API key: scrub it before it is stored
        redact_exception(e)
        if is_context_overflow(e):  # one type for every provider's "prompt too long"
            raise ContextOverflow(f"{role} prompt does not fit {spec}'s context window") from e
        raise
    meta: dict[str, Any] = {"model": spec, "latency_s": round(time.perf_counter() - start, 4)}
    usage = getattr(msg, "usage_metadata", None) or {}
    if usage:
        meta["prompt_tokens"] = int(usage.get("input_tokens", 0))
        meta["completion_tokens"] = int(usage.get("output_tokens", 0))
    if getattr(msg, "id", None):
        meta["message_id"] = msg.id
    return message_text(msg), meta


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def context_of(runtime: Any) -> Context:
    """The run's Context (a plain dict from an API client is validated into one)."""
    ctx = getattr(runtime, "context", None)
    if ctx is None:
        return Context()
    if isinstance(ctx, dict):
        return Context.from_dict(ctx)
    context: Context = ctx  # LangGraph's `Runtime[Context]`
    return context


def step(agent: str, turn: int, output: str, meta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A `records.Step` dict (empty extras and the chat message id are left out)."""
    return {
        "agent": agent,
        "turn": turn,
        "output": output,
        **{k: v for k, v in meta.items() if k != "message_id"},
        **{k: v for k, v in extra.items() if v not in (None, "")},
    }


def ai_message(
    name: str, text: str, meta: dict[str, Any], queries: Sequence[str] | None = None, turn: int = 0
) -> AIMessage:
    """A node's model turn for the `messages` channel; a search decision carries a `search`
    tool call whose id the search node's tool message answers."""
    tool_calls = (
        [{"name": "search", "args": {"queries": list(queries)}, "id": search_call_id(turn)}]
        if queries
        else []
    )
    return AIMessage(content=text, name=name, id=meta.get("message_id"), tool_calls=tool_calls)


def search_call_id(turn: int) -> str:
    return f"search-{turn}"


def answered(action: Any, agent: str, turn: int, text: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The update of a node whose model answered."""
    return {
        "decision": "answer",
        "final_think": action.think,
        "final_answer": action.answer,
        "status": "answered",
        "pending": None,
        "steps": [step(agent, turn, text, meta)],
        "messages": [ai_message(agent, text, meta)],
    }


def overflow_update(ctx: Context, role: str, turn: int, error: ContextOverflow) -> dict[str, Any]:
    """The update of a node whose prompt did not fit the context window: on to the forced answer,
    which answers from what was gathered."""
    meta = {"model": ctx.model_for(role)}
    return {
        "decision": "force",
        "pending": None,
        "steps": [step(role, turn, "", meta, parse_error=str(error))],
    }


def forced_answer_update(text: str, meta: dict[str, Any], turn: int) -> dict[str, Any]:
    """The last, must-answer generation; no usable answer ends the run as `max_turns`."""
    action = parse_action(text)
    if action.kind == "answer":
        return {**answered(action, "answer", turn, text, meta), "forced": True}
    return {
        "decision": "force",
        "final_think": action.think or strip_tags(text),
        "final_answer": "",
        "status": "max_turns",
        "forced": True,
        "pending": None,
        "steps": [step("answer", turn, text, meta, parse_error=action.error)],
        "messages": [ai_message("answer", text, meta)],
    }


def question_of(state: GraphState) -> str:
    return state.get("question") or ""


def context_and_question(state: GraphState, runtime: Any) -> tuple[Context, str]:
    """What a model node starts from: the run's Context and the example's question."""
    return context_of(runtime), question_of(state)
