"""llama.cpp's own `llama-server` behind LangChain, with the project's grammars.

`llama-server:<model>@<base_url>` is an OpenAI-compatible endpoint (`langchain_openai.ChatOpenAI`)
that also decodes under GBNF grammars, so it gets what the in-process runtime gets:

- `output_format` (a `masksearch.grammars` name or a GBNF string) goes into the request body as
  llama.cpp's `grammar`, so the reply always parses; the call's token limit is raised to what the
  format needs (`grammars.token_budget`) unless the call gives its own, as in
  `masksearch.models.llamacpp`;
- a conversation ending with an assistant turn is continued from it (the server's
  `prefill_assistant`, on by default); the server's reply repeats that turn's text before the
  continuation, so it is cut off here: the reply is the continuation, as in process;
- a repetition penalty other than 1 is sent as llama.cpp's `repeat_penalty`;
- the server's per-request `timings` land in `response_metadata` under the in-process names
  (`prompt_cached_tokens`, `prompt_eval_s`, `decode_s`, `lookup_drafted`, `lookup_kept`).

The server applies the GGUF's chat template itself (start it with `--jinja`), so the prompt is the
one the in-process runtime builds. How to start it: docs/offline-teacher.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI


class LlamaServerChatModel(ChatOpenAI):
    """A model served by llama.cpp's `llama-server` (OpenAI-compatible API plus GBNF grammars)."""

    supports_output_format: ClassVar[bool] = True

    def _get_request_payload(
        self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        from masksearch.grammars import grammar_for, token_budget

        output_format = kwargs.pop("output_format", None)
        per_call_limit = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens")
        payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
        if output_format:
            extra = dict(payload.get("extra_body") or {})
            extra["grammar"] = grammar_for(output_format)
            payload["extra_body"] = extra
            if not per_call_limit:  # a per-call limit is kept as given
                default = payload.get("max_completion_tokens") or self.max_tokens or 0
                payload["max_completion_tokens"] = token_budget(output_format, int(default))
        return payload

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, *args: Any, **kwargs: Any
    ) -> ChatResult:
        result = super()._generate(messages, stop, *args, **kwargs)
        return result if self.streaming else _cut_prefill(result, _prefill(messages))

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, *args: Any, **kwargs: Any
    ) -> ChatResult:
        result = await super()._agenerate(messages, stop, *args, **kwargs)
        return result if self.streaming else _cut_prefill(result, _prefill(messages))

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, *args: Any, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        cut = _StreamCut(_prefill(messages))
        for chunk in super()._stream(messages, stop, *args, **kwargs):
            yield from cut(chunk)

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, *args: Any, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        cut = _StreamCut(_prefill(messages))
        async for chunk in super()._astream(messages, stop, *args, **kwargs):
            for out in cut(chunk):
                yield out

    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        raw = response if isinstance(response, dict) else (response.model_extra or {})
        timings = raw.get("timings") or {}
        if timings and result.generations:
            meta = result.generations[0].message.response_metadata
            meta.update(server_timings(timings))
        return result


def server_timings(timings: dict[str, Any]) -> dict[str, Any]:
    """llama-server's `timings` of one request under the in-process runtime's metadata names."""
    out: dict[str, Any] = {
        "prompt_cached_tokens": int(timings.get("cache_n", 0)),
        "prompt_eval_s": round(float(timings.get("prompt_ms", 0.0)) / 1000, 4),
        "decode_s": round(float(timings.get("predicted_ms", 0.0)) / 1000, 4),
    }
    if "predicted_per_second" in timings:
        out["decode_tok_s"] = round(float(timings["predicted_per_second"]), 2)
    if "draft_n" in timings:
        out["lookup_drafted"] = int(timings["draft_n"])
        out["lookup_kept"] = int(timings.get("draft_n_accepted", 0))
    return out


def _prefill(messages: list[BaseMessage]) -> str:
    """The text of a final assistant turn (which the server continues), else ""."""
    if messages and messages[-1].type == "ai" and isinstance(messages[-1].content, str):
        return messages[-1].content
    return ""


def _cut_prefill(result: ChatResult, prefill: str) -> ChatResult:
    """The continuation only: the server's content starts with the continued turn's text."""
    if not prefill:
        return result
    generations = []
    for gen in result.generations:
        text = gen.message.content
        if isinstance(text, str) and text.startswith(prefill):
            message = gen.message.model_copy(update={"content": text[len(prefill) :]})
            gen = ChatGeneration(message=message, generation_info=gen.generation_info)
        generations.append(gen)
    return ChatResult(generations=generations, llm_output=result.llm_output)


class _StreamCut:
    """Drops the continued turn's text from the start of a streamed reply."""

    def __init__(self, prefill: str) -> None:
        self.prefill: str | None = prefill or None
        self.seen = ""  # content held back while it may still be the repeated text

    def __call__(self, chunk: ChatGenerationChunk) -> Iterator[ChatGenerationChunk]:
        content = chunk.message.content
        if self.prefill is None or not isinstance(content, str) or not content:
            yield chunk
            return
        self.seen += content
        if self.prefill.startswith(self.seen):  # all of it may be the repeated text: hold it
            return
        rest = self.seen[len(self.prefill) :] if self.seen.startswith(self.prefill) else self.seen
        self.prefill, self.seen = None, ""
        yield ChatGenerationChunk(
            message=chunk.message.model_copy(update={"content": rest}),
            generation_info=chunk.generation_info,
        )
