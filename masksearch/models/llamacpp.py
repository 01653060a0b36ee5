"""GGUF chat models on llama.cpp, in process, behind LangChain's `BaseChatModel`.

- token streaming (`stream`/`astream`), usage and timing metadata on every message;
- grammar-constrained decoding: `invoke(..., output_format="action")` (a name from
  `masksearch.grammars` or any GBNF string) decodes under that grammar, so the output always parses;
- batched generation (`masksearch.models.llamacpp_engine`): the calls running at once share one
  llama.cpp context, one KV sequence each, and advance together in one decode step per round
  (`exact=True`: a call's tokens do not depend on what is batched with it);
- real cancellation (`masksearch.models.llamacpp_live`, `tests/test_llamacpp_cancel.py`): a
  cancelled or timed-out call, or one whose task ended, leaves the batch at the next step and
  returns only once the engine dropped it; sync callers can pass a `threading.Event` as `cancel=`;
- KV prefix reuse: each sequence keeps the tokens it last held; a call whose prompt starts the
  same way evaluates only the new suffix (`prompt_cached_tokens` in `response_metadata`);
- prompt-lookup drafting for greedy decoding (`masksearch.models.llamacpp_sampling`);
- `n_threads` = physical cores (those this process may run on).

Everything that touches llama.cpp itself is in `masksearch.models.llamacpp_capi`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from masksearch.errors import ConfigError, ContextOverflow
from masksearch.models.llamacpp_capi import Context, GrammarCheck, Model
from masksearch.models.llamacpp_engine import Engine, Request, Slot
from masksearch.models.llamacpp_live import (
    cancel_all,
    generation,
    wait_idle,
    worker_stopped,
)
from masksearch.models.llamacpp_live import live_generations as live_generations
from masksearch.models.llamacpp_sampling import LOOKUP_DRAFT, Decoder

_ROLE = {"system": "system", "human": "user", "ai": "assistant", "tool": "user"}
N_BATCH = 512  # tokens per llama.cpp step (prompt chunks of every call plus the decoding tokens)
# exact mode: llama.cpp's CPU attention takes a tiled path (another rounding) for 64+ query rows
EXACT_UBATCH = 63


class GenerationCancelled(Exception):
    """The caller cancelled the generation (timeout or task cancellation)."""


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads don't speed up llama.cpp decoding)."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover - not Linux
        allowed = set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    try:
        cpu, phys = None, "0"
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    phys = value
                elif key == "core id" and cpu in allowed:
                    cores.add((phys, value))
    except (OSError, ValueError):
        cores = set()
    return max(1, min(len(cores) or len(allowed), len(allowed)))


@dataclass
class Runtime:
    """A loaded model: its weights, its batched engine (one context, `pool_size` sequences) and
    its chat template."""

    path: Path
    n_ctx: int
    n_threads: int
    model: Model
    engine: Engine
    load_s: float = 0.0
    _formatter: Any = field(default=None, repr=False)

    @property
    def slots(self) -> list[Slot]:
        return self.engine.slots

    @property
    def recent(self) -> Any:
        return self.engine.recent

    def format(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt tokens of a conversation. One that ends with an assistant turn is continued
        (prefill): the reply goes on from that turn's text instead of starting a new turn."""
        prefill = ""
        if messages and messages[-1]["role"] == "assistant":
            messages, prefill = messages[:-1], messages[-1]["content"]
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = self.model.meta("tokenizer.chat_template")
            if not template:
                raise ConfigError(f"GGUF model {self.path} has no chat template")
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=self.model.token_text(self.model.eos),
                bos_token=self.model.token_text(self.model.bos),
            )
        text = self._formatter(messages=messages).prompt + prefill
        return self.model.tokenize(text, special=True)

    def detokenize(self, tokens: list[int]) -> bytes:
        return self.model.detokenize(tokens)


_models: dict[tuple[str, bool], Model] = {}
_runtimes: dict[tuple[str, int, int, int, bool, bool], Runtime] = {}
_runtimes_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Stop every generation, then the engines, then free the contexts and weights before
    interpreter teardown. A context is never freed under a running decode: if a generation does
    not stop in time, everything is left to the OS."""
    cancel_all()
    if not wait_idle(timeout=60):
        return
    for rt in list(_runtimes.values()):
        try:
            rt.engine.close()
            rt.engine.ctx.close()
        except Exception:  # noqa: BLE001, S110 - best effort at exit
            pass
    for model in list(_models.values()):
        try:
            model.close()
        except Exception:  # noqa: BLE001, S110 - best effort at exit
            pass
    _runtimes.clear()
    _models.clear()


def engines_busy() -> int:
    """Calls running or waiting in this process's llama.cpp engines (0: no core works for them)."""
    return sum(rt.engine.busy for rt in list(_runtimes.values()))


def load_runtime(
    path: Path,
    *,
    n_ctx: int,
    n_threads: int | None,
    pool_size: int,
    parallel: int | None = None,
    exact: bool = False,
    repack: bool = False,
) -> Runtime:
    """Load (once per process) the GGUF at `path` and an engine with `pool_size` KV sequences of
    `n_ctx` tokens each, of which `parallel` (default: all) generate at the same time.

    `exact`: every step runs on the kernels a call alone would use (`Engine.exact`), so a call's
    tokens do not depend on what else is batched with it. `repack`: llama.cpp's repacked weight
    layouts (`Model`)."""
    threads = n_threads or physical_cores()
    key = (str(path), n_ctx, threads, pool_size, exact, repack)
    with _runtimes_lock:
        rt = _runtimes.get(key)
        if rt is None:
            start = time.perf_counter()
            model = _models.get((str(path), repack))
            if model is None:
                model = _models[(str(path), repack)] = Model(path, repack=repack)
            ctx = Context(
                model,
                n_ctx=n_ctx * (pool_size + exact),
                n_seq=pool_size + exact,  # exact: a scratch sequence (`Engine._pad`)
                n_batch=N_BATCH,
                n_ubatch=EXACT_UBATCH if exact else N_BATCH,
                n_threads=threads,
            )
            engine = Engine(ctx, n_seq=pool_size, parallel=parallel or pool_size, exact=exact)
            rt = Runtime(path, n_ctx, threads, model, engine, time.perf_counter() - start)
            _runtimes[key] = rt
        rt.engine.parallel = min(pool_size, max(rt.engine.parallel, parallel or pool_size))
        return rt


class LlamaCppChatModel(BaseChatModel):
    """A GGUF model on llama.cpp (greedy by default; stop strings; grammar-constrained formats)."""

    model_path: str
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = 0
    top_p: float = 0.95
    top_k: int = 40
    repeat_penalty: float = 1.0
    n_ctx: int = 4096
    n_threads: int | None = None
    pool_size: int = 6
    """KV sequences kept: more than the calls in flight, so a conversation's next call finds
    its prompt still cached after other conversations' calls."""
    parallel: int | None = None
    """Generations that may run at once (default: `pool_size`), batched into shared llama.cpp
    steps; the other sequences keep their prompts cached. 1: one after another."""
    exact: bool = False
    """Batch-independent output: each step runs on the kernels a call alone would use (smaller
    ubatches; see `llamacpp_engine.Engine._pad`), so a call's tokens do not depend on the calls
    batched with it. Off: faster, and greedy tokens can differ where two logits are within
    llama.cpp's rounding differences between its batched and one-row kernels."""
    repack: bool = False
    """llama.cpp's repacked CPU weight layouts (faster small batches, slower prompt reading than
    its tiled K-quant kernels on AVX-512 CPUs: benchmarks/RESULTS.md)."""
    prompt_lookup: bool = True
    """Greedy decoding drafts tokens by prompt lookup (`llamacpp_sampling.Decoder`)."""
    supports_output_format: ClassVar[bool] = True

    @property
    def _llm_type(self) -> str:
        return "masksearch-llamacpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def load(self) -> Runtime:
        """Load the weights now (otherwise the first call does)."""
        from masksearch.models import embedded

        known = embedded.lookup(self.model_path)
        path = embedded.gguf_path(self.model_path) if known else Path(self.model_path).expanduser()
        return load_runtime(
            path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            pool_size=self.pool_size,
            parallel=self.parallel,
            exact=self.exact,
            repack=self.repack,
        )

    # --- the token loop (runs in a worker thread for async callers) -----------------------------

    def _tokens(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        cancel: threading.Event | None,
        **kwargs: Any,
    ) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """Yield text deltas, then ("", metadata) once finished; `cancel` (set by another thread)
        stops it with `GenerationCancelled` once the engine has dropped the call."""
        with generation(cancel) as event:
            yield from self._generate_tokens(messages, stop, event, **kwargs)

    def _generate_tokens(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        cancel: threading.Event,
        **kwargs: Any,
    ) -> Iterator[tuple[str, dict[str, Any] | None]]:
        from masksearch.grammars import grammar_for, token_budget

        rt = self.load()
        chat = [{"role": _ROLE.get(m.type, "user"), "content": _text(m)} for m in messages]
        prompt = rt.format(chat)
        output_format = kwargs.get("output_format")
        max_new = int(kwargs.get("max_tokens") or self.max_tokens)
        if output_format and not kwargs.get("max_tokens"):  # a per-call limit is kept as given
            max_new = token_budget(output_format, max_new)
        room = rt.n_ctx - len(prompt) - 1 - LOOKUP_DRAFT  # a draft's tokens need cells too
        if room < 1:
            raise ContextOverflow(f"prompt of {len(prompt)} tokens does not fit n_ctx={rt.n_ctx}")
        max_new = min(max_new, room)
        temperature = float(kwargs.get("temperature", self.temperature))
        seed = kwargs.get("seed", self.seed)
        stops = [s for s in (stop or []) if s]
        hold = max((len(s) for s in stops), default=1) - 1
        check = GrammarCheck(rt.model, grammar_for(output_format)) if output_format else None
        decoder = Decoder(
            prompt,
            eog=rt.model.eog,
            check=check,
            temperature=temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            repeat_penalty=self.repeat_penalty,
            seed=None if seed is None else int(seed),
            lookup=self.prompt_lookup,
            history=list(rt.recent),
        )
        req = rt.engine.submit(Request(prompt, decoder, max_new, cancel))
        text, emitted, finish = "", 0, "length"
        completion: list[int] = []
        try:
            for value in req.tokens():
                completion.append(value)
                raw = rt.detokenize(completion)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:  # a multi-byte character is not complete yet
                    continue
                cut = min((text.find(s) for s in stops if s in text), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
                    break
                safe = len(text) - hold
                if safe > emitted:
                    yield text[emitted:safe], None
                    emitted = safe
            else:  # the engine ended the call
                if req.finish == "cancelled":
                    raise GenerationCancelled()
                finish = req.finish or finish
        finally:
            req.stop.set()  # a stop string or a consumer that went away: leave the batch
        text = rt.detokenize(completion).decode("utf-8", errors="ignore")
        if stops:
            cut = min((text.find(s) for s in stops if s in text), default=-1)
            text = text[:cut] if cut >= 0 else text
        if len(text) > emitted:
            yield text[emitted:], None
        end = req.t_end or time.perf_counter()
        first = req.t_first or end
        decode_s = end - first
        yield (
            "",
            {
                "usage": {
                    "input_tokens": len(prompt),
                    "output_tokens": len(completion),
                    "total_tokens": len(prompt) + len(completion),
                },
                "finish_reason": finish,
                "prompt_cached_tokens": req.cached,
                "prompt_eval_s": round(first - req.t_admit, 4),
                "decode_s": round(decode_s, 4),
                "decode_tok_s": round(len(completion) / decode_s, 2) if decode_s > 0 else None,
                "lookup_drafted": decoder.drafted,
                "lookup_kept": decoder.kept,
                "output_format": output_format,
            },
        )

    # --- LangChain interface --------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        cancel: threading.Event | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        parts: list[str] = []
        meta: dict[str, Any] = {}
        for delta, info in self._tokens(messages, stop, cancel, **kwargs):
            parts.append(delta)
            if info is not None:
                meta = info
        return ChatResult(generations=[ChatGeneration(message=_message("".join(parts), meta))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        cancel: threading.Event | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for delta, info in self._tokens(messages, stop, cancel, **kwargs):
            chunk = _chunk(delta, info)
            if run_manager is not None and delta:
                run_manager.on_llm_new_token(delta, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Tokens from a worker thread. Closing or cancelling the stream, or the end of the task
        that opened it, stops the worker between tokens; the stream's close returns once the
        worker has stopped (a cancellation meanwhile is raised after it)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()
        stopped = asyncio.Event()

        def work() -> None:
            try:
                for item in self._tokens(messages, stop, cancel, **kwargs):
                    loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
                loop.call_soon_threadsafe(queue.put_nowait, ("done", None))
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
                if not cancel.is_set():
                    with contextlib.suppress(RuntimeError):  # the loop is closed
                        loop.call_soon_threadsafe(queue.put_nowait, ("error", e))
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(stopped.set)

        # a consumer cancelled while this stream is suspended at a `yield` (LangChain's stream
        # loop, a LangGraph node task) may never close it: the end of its task stops the worker
        task = asyncio.current_task()

        def on_task_done(_: Any) -> None:
            cancel.set()

        if task is not None:
            task.add_done_callback(on_task_done)
        worker = threading.Thread(target=work, name="llamacpp-generate", daemon=True)
        worker.start()
        try:
            while True:
                kind, payload = await queue.get()
                if kind == "done":
                    return
                if kind == "error":
                    raise payload
                delta, info = payload
                chunk = _chunk(delta, info)
                if run_manager is not None and delta:
                    await run_manager.on_llm_new_token(delta, chunk=chunk)
                yield chunk
        finally:
            cancel.set()  # normal end: no-op; cancellation/timeout: the worker stops at once
            if task is not None:
                task.remove_done_callback(on_task_done)
            await worker_stopped(worker, stopped)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        parts: list[str] = []
        meta: dict[str, Any] = {}
        stream = self._astream(messages, stop, None, **kwargs)
        try:
            async for chunk in stream:
                parts.append(chunk.text)
                usage = getattr(chunk.message, "usage_metadata", None)
                if usage:
                    meta = dict(chunk.message.response_metadata, usage=usage)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        return ChatResult(generations=[ChatGeneration(message=_message("".join(parts), meta))])


def _text(m: BaseMessage) -> str:
    return m.content if isinstance(m.content, str) else m.text


def _message(text: str, meta: dict[str, Any]) -> AIMessage:
    usage = meta.get("usage")
    rest = {k: v for k, v in meta.items() if k != "usage"}
    return AIMessage(content=text, usage_metadata=usage, response_metadata=rest)


def _chunk(delta: str, info: dict[str, Any] | None) -> ChatGenerationChunk:
    if info is None:
        return ChatGenerationChunk(message=AIMessageChunk(content=delta))
    rest = {k: v for k, v in info.items() if k != "usage"}
    return ChatGenerationChunk(
        message=AIMessageChunk(content=delta, usage_metadata=info["usage"], response_metadata=rest)
    )
