"""One chat-model call: `model.ainvoke(messages)`, without langchain-core's run bookkeeping
when nothing would observe it.

`BaseChatModel.ainvoke` opens a callback run for every call (run ids, serialized invocation
params, `on_chat_model_start`/`on_llm_end` events, an `LLMResult`, one extra asyncio task from
`asyncio.gather`, an `inspect.signature` of `_agenerate`). With no handler attached that work has
no reader, yet it was ~0.25 ms of CPU per call in a batch run (`benchmarks/generation.py`: ~0.75
of the ~4.3 ms of CPU per example, three calls each).

`ainvoke_chat` calls the model's own `_agenerate` directly only when the result cannot differ
and no one is listening: a plain `BaseChatModel` (not a binding or wrapper) with no callbacks,
no tracing or callback hook in the run's configuration (`AsyncCallbackManager.configure` finds no
handler: LangSmith tracing, LangGraph's `stream_mode="messages"`, `get_usage_metadata_callback`,
a rate-limit callback all make one), no cache, no rate limiter, no streaming, the default
output format and plain-text messages. The reply gets the same `response_metadata` as through
`ainvoke`. Anything else goes through `model.ainvoke` unchanged.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManager
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables.config import ensure_config

# the generation-info key langchain-core keeps out of `response_metadata`
_GATEWAY_KEY = "lc_gateway_metadata"


def direct_call_ok(model: Any, messages: list[BaseMessage], kwargs: dict[str, Any]) -> bool:
    """Whether `model._agenerate` gives what `model.ainvoke` would, with nothing unobserved."""
    if not isinstance(model, BaseChatModel):  # a RunnableBinding, fallbacks, configurable, ...
        return False
    if model.rate_limiter is not None or getattr(model, "output_version", None) == "v1":
        return False
    if model.cache is not False and (model.cache is not None or get_llm_cache() is not None):
        return False
    if getattr(model, "streaming", False) or kwargs.get("stream") or "callbacks" in kwargs:
        return False
    if not all(isinstance(m.content, str) for m in messages):  # content blocks get normalized
        return False
    config = ensure_config()
    manager = AsyncCallbackManager.configure(
        config.get("callbacks"), model.callbacks, model.verbose, None, model.tags
    )
    return not manager.handlers and not manager.inheritable_handlers


async def ainvoke_chat(
    model: Any, messages: list[BaseMessage], *, stop: list[str] | None = None, **kwargs: Any
) -> BaseMessage:
    """`await model.ainvoke(messages, stop=stop, **kwargs)`, the same reply (see the module doc)."""
    if not direct_call_ok(model, messages, kwargs):
        return await model.ainvoke(messages, stop=stop, **kwargs)
    result = await model._agenerate(messages, stop=stop, **kwargs)
    generation = result.generations[0]
    info = generation.generation_info or {}
    metadata = {
        **{k: v for k, v in info.items() if k != _GATEWAY_KEY},
        **generation.message.response_metadata,
    }
    if len(result.generations) == 1 and result.llm_output is not None:
        metadata = {**result.llm_output, **metadata}
    generation.message.response_metadata = metadata
    return generation.message


# how servers say a prompt is longer than the context window (OpenAI `context_length_exceeded`,
# llama-server `exceed_context_size_error`, vLLM "maximum context length", Ollama/others)
_OVERFLOW_MARKS = (
    "context_length_exceeded",
    "exceed_context_size",
    "maximum context length",
    "exceeds the available context size",
    "context window",
    "too many tokens",
)


def is_context_overflow(error: BaseException) -> bool:
    """Whether a provider refused a call because the prompt does not fit the context window."""
    from masksearch.errors import ContextOverflow

    if isinstance(error, ContextOverflow):
        return True
    status = getattr(error, "status_code", None)
    if status not in (400, 413, None):
        return False
    text = f"{getattr(error, 'code', '') or ''} {error}".lower()
    return any(mark in text for mark in _OVERFLOW_MARKS)
