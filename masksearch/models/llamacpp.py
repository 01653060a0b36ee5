"""GGUF chat models on llama.cpp (llama-cpp-python), in process, behind LangChain's `BaseChatModel`.

- token streaming (`stream`/`astream`), usage and timing metadata on every message;
- grammar-constrained decoding: `invoke(..., output_format="action")` (a name from
  `masksearch.grammars` or a GBNF string) decodes under that grammar, so the output always parses;
- real cancellation (the contract, `tests/test_llamacpp_cancel.py`): a cancelled or timed-out async
  call stops generating between two tokens (prompt evaluation is chunked for the same reason),
  and the call returns only once its worker thread has left llama.cpp, so the cores are free and
  the model can be used or freed; the call's task ending in any way (a LangGraph node task
  cancelled while the model's stream is suspended) stops it too. Sync callers can pass a
  `threading.Event` as `cancel=`. `cancel_all()` + `wait_idle()` stop every generation of the
  process; at exit they run before the contexts are freed (never under a running decode);
- `n_threads` = physical cores (those this process may run on);
- KV prefix reuse: each llama.cpp context keeps the tokens it last evaluated; a call whose prompt
  starts the same way (the system prompt, a role's instructions, a passage already read) evaluates
  only the new suffix;
- prompt caches and concurrency: `pool_size` contexts (default 3) share the memory-mapped weights,
  each keeping the prompt it last read; a call goes to the context holding its conversation, or to
  the least recently used one (`Runtime.acquire`), so the roles of a trajectory (planner,
  rewriter, observer) find their context warm while another trajectory uses its own;
- cores shared step by step (`Runtime.cores`): up to `parallel` calls (default `pool_size`)
  generate at once, over every loaded model; a generation running alone steps on every core, two
  running at once step on half the cores each (llama.cpp's threads wait for each other at spinning
  barriers, so two thread pools on the same cores slow each other down several times over);
- prompt-lookup drafting for greedy decoding (`_sample`), from the prompt, the reply so far and
  the latest completions.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from masksearch.errors import ConfigError

_ROLE = {"system": "system", "human": "user", "ai": "assistant", "tool": "user"}
EVAL_CHUNK = 128  # prompt tokens evaluated between two cancellation checks
REUSE_MARGIN = 32  # prompt tokens a context must hold beyond the others' to be picked for them


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
class _Slot:
    llm: Any
    busy: bool = False
    used: int = 0


# one condition for every loaded model: `parallel` bounds the generations running at once across
# all of them, and `Runtime.cores` shares the cores among them, step by step
_CPU = threading.Condition()
_cores_used = 0  # threads of the llama.cpp steps running now (guarded by _CPU)


@dataclass
class Runtime:
    """The loaded model: a small pool of llama.cpp contexts over one GGUF file."""

    path: Path
    n_ctx: int
    n_threads: int
    slots: list[_Slot] = field(default_factory=list)
    load_s: float = 0.0
    parallel: int = 1
    clock: int = 0
    recent: deque[list[int]] = field(default_factory=lambda: deque(maxlen=LOOKUP_HISTORY))
    """The latest completions, newest first: prompt-lookup drafts from them when the prompt has
    no match (a role repeats its own phrasing from one example to the next)."""

    @property
    def llm(self) -> Any:
        return self.slots[0].llm

    def acquire(self, prompt: Sequence[int]) -> _Slot:
        """A free context, once fewer than `parallel` calls are running (counted over every
        loaded model; their steps share the cores, `cores`): the one holding the
        longest prefix of `prompt` if that is half the prompt or `REUSE_MARGIN` tokens more than
        the least recently used context would give, else that least recently used one (as
        llama.cpp's server picks slots). Every prompt shares the chat template's first tokens
        and often a system prompt; an empty context counts as sharing what the least of the
        others share. So a new conversation goes to a spare context instead of evicting one whose
        conversation is still going on, and a conversation's next call finds its own context."""
        with _CPU:
            while _running(self) >= self.parallel or all(s.busy for s in self.slots):
                _CPU.wait()
            free = [s for s in self.slots if not s.busy]
            shared = {id(s): _common_prefix(s.llm, prompt) for s in free}
            best = max(free, key=lambda s: (shared[id(s)], -s.used))
            lru = min(free, key=lambda s: s.used)
            head = min((shared[id(s)] for s in free if s.llm.n_tokens), default=0)
            lead = shared[id(best)] - (shared[id(lru)] if lru.llm.n_tokens else head)
            slot = best if lead >= REUSE_MARGIN or 2 * shared[id(best)] >= len(prompt) else lru
            slot.busy = True
            self.clock += 1
            slot.used = self.clock
            return slot

    def release(self, slot: _Slot) -> None:
        with _CPU:
            slot.busy = False
            _CPU.notify_all()  # waiters of other models wait for other slots

    @contextmanager
    def cores(self, llm: Any) -> Iterator[int]:
        """Run one llama.cpp step (a prompt chunk, a token, a draft) on a fair share of the cores:
        all `n_threads` when this is the only generation running, else `n_threads` divided among
        the running ones, waiting until the others' current steps leave that many free.

        llama.cpp's threads wait for each other at spinning barriers: two 2-thread steps on two
        cores (or one next to any other busy thread) run several times slower than one, while
        two 1-thread steps run side by side at full speed each — and decoding, bound by memory
        reads, gets more done per second that way than one 2-thread step at a time."""
        global _cores_used
        with _CPU:
            while True:
                want = max(1, self.n_threads // max(1, _running(self)))
                if _cores_used == 0 or _cores_used + want <= self.n_threads:
                    break
                _CPU.wait()
            _cores_used += want
        try:
            _set_threads(llm, want)
            yield want
        finally:
            with _CPU:
                _cores_used -= want
                _CPU.notify_all()

    def format(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt tokens of a conversation. One that ends with an assistant turn is continued
        (prefill): the reply goes on from that turn's text instead of starting a new turn."""
        prefill = ""
        if messages and messages[-1]["role"] == "assistant":
            messages, prefill = messages[:-1], messages[-1]["content"]
        text = _formatter(str(self.path), self.llm)(messages=messages).prompt + prefill
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def _set_threads(llm: Any, n: int) -> None:
    if getattr(llm, "_masksearch_threads", None) != n:
        from llama_cpp import llama_cpp as capi

        capi.llama_set_n_threads(llm._ctx.ctx, n, n)
        llm._masksearch_threads = n


def _running(rt: Runtime) -> int:
    """Generations running now, over every loaded model and `rt` (call with `_CPU` held)."""
    runtimes = list(_runtimes.values())
    if not any(r is rt for r in runtimes):
        runtimes.append(rt)
    return sum(s.busy for r in runtimes for s in r.slots)


def _common_prefix(llm: Any, tokens: Sequence[int]) -> int:
    n = 0
    for a, b in zip(llm.input_ids[: llm.n_tokens], tokens, strict=False):
        if a != b:
            break
        n += 1
    return n


_runtimes: dict[tuple[str, int, int], Runtime] = {}
_runtimes_lock = threading.Lock()

# generations running now (id -> their cancel event), from the call's start (model load, waiting
# for a context) to its end; guarded by _LIVE
_live: dict[int, threading.Event] = {}
_LIVE = threading.Condition()


@contextmanager
def _generation(cancel: threading.Event | None) -> Iterator[threading.Event]:
    """Register one generation (with `cancel`, or a new event) for `cancel_all`/`wait_idle`."""
    event = cancel if cancel is not None else threading.Event()
    key = id(event)
    with _LIVE:
        _live[key] = event
    try:
        yield event
    finally:
        with _LIVE:
            _live.pop(key, None)
            _LIVE.notify_all()


def live_generations() -> int:
    """Generations running now in this process (any thread)."""
    with _LIVE:
        return len(_live)


def cancel_all() -> None:
    """Ask every running generation to stop (each stops at its next token or prompt chunk)."""
    with _LIVE:
        for event in _live.values():
            event.set()


def wait_idle(timeout: float | None = None) -> bool:
    """Wait until no generation runs (True), or `timeout` seconds passed (False)."""
    with _LIVE:
        return _LIVE.wait_for(lambda: not _live, timeout)


@atexit.register
def _close_all() -> None:
    """Stop every generation, then free the contexts before interpreter teardown
    (llama-cpp-python's own finalizers then run with half-destroyed modules and print a TypeError
    traceback at exit). A context is never freed under a running decode: if a generation does not
    stop in time, the contexts are left to the OS."""
    cancel_all()
    if not wait_idle(timeout=60):
        return
    for rt in list(_runtimes.values()):
        for slot in rt.slots:
            try:
                slot.llm.close()
            except Exception:  # noqa: BLE001, S110 - best effort at exit
                pass
    _runtimes.clear()


def load_runtime(
    path: Path, *, n_ctx: int, n_threads: int | None, pool_size: int, parallel: int | None = None
) -> Runtime:
    """Load (once per process) `pool_size` llama.cpp contexts for the GGUF at `path`, of which
    `parallel` (default: all) may generate at the same time, sharing the cores (`Runtime.cores`)."""
    try:
        from llama_cpp import Llama
    except ImportError as e:
        raise ConfigError(
            f"local GGUF models need llama-cpp-python (pip install llama-cpp-python==0.3.36): {e}"
        ) from None
    threads = n_threads or physical_cores()
    key = (str(path), n_ctx, threads)
    with _runtimes_lock:
        rt = _runtimes.get(key)
        if rt is None:
            rt = Runtime(path=path, n_ctx=n_ctx, n_threads=threads, parallel=parallel or pool_size)
            _runtimes[key] = rt
        rt.parallel = max(rt.parallel, parallel or pool_size)
        while len(rt.slots) < pool_size:
            start = time.perf_counter()
            try:
                llm = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_batch=512,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as e:
                raise ConfigError(f"cannot load GGUF model {path}: {e}") from None
            rt.load_s += time.perf_counter() - start
            with _CPU:
                rt.slots.append(_Slot(llm))
                _CPU.notify_all()
        return rt


@lru_cache(maxsize=8)
def _formatter(path: str, llm: Any) -> Any:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise ConfigError(f"GGUF model {path} has no chat template")

    def text(token: int) -> str:
        return llm._model.token_get_text(token) if token != -1 else ""

    return Jinja2ChatFormatter(
        template=template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos())
    )


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
CHECK_FIRST = 64  # candidates checked against the grammar before the whole vocabulary


class _GrammarCheck:
    """A llama.cpp grammar sampler used as a filter: which of these tokens may come next?

    llama-cpp-python's sampler chain runs the grammar over the whole vocabulary at every step (cost
    ~ vocabulary × grammar stacks: seconds per token for a span grammar over many passages). Here
    the sampler asks only about the few tokens it is about to pick, as llama.cpp's own
    `common_sampler` does, and falls back to the whole vocabulary only when none of them fits."""

    def __init__(self, llm: Any, gbnf: str) -> None:
        from llama_cpp import llama_cpp as capi

        self._capi = capi
        self._ptr = capi.llama_sampler_init_grammar(llm._model.vocab, gbnf.encode("utf-8"), b"root")
        if not self._ptr:
            raise ConfigError(f"invalid output grammar: {gbnf[:200]!r}")

    def allowed(self, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """The logits of `ids`, -inf where the grammar rejects the token."""
        data = np.zeros(len(ids), dtype=_TOKEN_DATA)
        data["id"], data["logit"] = ids, logits
        capi = self._capi
        arr = capi.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(capi.llama_token_data)),
            size=len(ids),
            selected=-1,
            sorted=False,
        )
        capi.llama_sampler_apply(self._ptr, ctypes.byref(arr))
        return data["logit"].copy()

    def accept(self, token: int) -> None:
        self._capi.llama_sampler_accept(self._ptr, token)

    def close(self) -> None:
        if self._ptr:
            self._capi.llama_sampler_free(self._ptr)
            self._ptr = None


def _sample(
    llm: Any,
    prompt: Sequence[int],
    *,
    grammar: str | None,
    temperature: float,
    top_k: int,
    top_p: float,
    repeat_penalty: float,
    seed: int | None,
    lookup: bool = True,
    history: Sequence[Sequence[int]] = (),
    stats: dict[str, int] | None = None,
    cores: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> Generator[int, None, None]:
    """Yield sampled tokens (then -1 at end of generation), evaluating each one; the context must
    hold `prompt[:-1]` (see `_eval_prompt`).

    Greedy at temperature 0, else top-k / top-p / temperature sampling. Under a grammar, the
    token about to be picked is checked first, then the `CHECK_FIRST` most likely ones, then the
    whole vocabulary, so a constrained step costs about what an unconstrained one does.

    Greedy decoding also drafts by prompt lookup (`lookup`): when the text so far ends with an
    n-gram seen earlier in prompt or reply (else in one of `history`, earlier completions), the
    `LOOKUP_DRAFT` tokens that followed it there are evaluated in one batch after the model's own
    next token and kept as far as they are what greedy decoding picks anyway (the output is the
    same token for token, up to the rounding differences between a batched and a one-token
    evaluation). A teacher copies a lot — the question's words into its queries, a passage's
    words into its summary and spans — and a batch of a few tokens costs about one. `stats`
    counts the tokens drafted and kept."""
    from llama_cpp import llama_cpp as capi

    n_vocab = llm.n_vocab()
    vocab = llm._model.vocab
    eog = _eog_tokens(llm)
    rng = np.random.default_rng(seed)
    check = _GrammarCheck(llm, grammar) if grammar else None
    seq = list(prompt)  # prompt + reply so far
    n_prompt = len(seq)
    lookup = lookup and temperature <= 0
    stats = stats if stats is not None else {}
    stats.setdefault("drafted", 0)
    stats.setdefault("kept", 0)

    def pick(row: np.ndarray) -> int:
        if repeat_penalty != 1.0 and len(seq) > n_prompt:
            row = row.copy()
            ids = np.array(seq[max(n_prompt, len(seq) - 64) :], dtype=np.int32)
            vals = row[ids]
            row[ids] = np.where(vals > 0, vals / repeat_penalty, vals * repeat_penalty)
        token = _pick(row, check, eog, rng, temperature, top_k, top_p)
        return -1 if token < 0 or capi.llama_vocab_is_eog(vocab, token) else token

    def take(token: int) -> None:
        if check is not None:
            check.accept(token)
        seq.append(token)

    def evaluate(token: int) -> np.ndarray:
        """Evaluate one token; the logits after it (a view into llama.cpp's buffer)."""
        with cores():
            llm.eval([token])
        return np.ctypeslib.as_array(capi.llama_get_logits_ith(llm._ctx.ctx, -1), (n_vocab,))

    try:
        logits = evaluate(prompt[-1])
        while True:
            token = pick(logits)
            if token < 0:
                yield -1
                return
            take(token)
            yield token
            draft = _lookup_draft(seq, LOOKUP_DRAFT, history=history) if lookup else []
            if not draft:
                logits = evaluate(token)
                continue
            with cores():
                rows = _eval_rows(llm, [token, *draft])  # row i: the logits after draft[:i]
            stats["drafted"] += len(draft)
            kept = 0
            for i, guess in enumerate(draft):
                token = pick(rows[i])
                if token != guess:
                    break
                take(token)
                kept += 1
                stats["kept"] += 1
                yield token
            else:
                logits = rows[len(draft)]
                continue
            # draft[kept] was not greedy's pick: drop it and what follows from the context; the
            # pick made from rows[kept] is the next token (it is evaluated like any other)
            llm.n_tokens -= len(draft) - kept
            llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
            if token < 0:
                yield -1
                return
            take(token)
            yield token
            logits = evaluate(token)
    finally:
        if check is not None:
            check.close()


LOOKUP_NGRAM = 3  # tokens that must repeat before the reply drafts what followed them
# tokens drafted per lookup: on a 2-core CPU a batch of 4 tokens costs ~1.3 single-token steps, a
# batch of 7 ~2.1 (docs/offline-teacher.md), so short drafts pay off at lower hit rates
LOOKUP_DRAFT = 3
LOOKUP_HISTORY = 32  # earlier completions searched when the prompt and reply have no match


def _lookup_draft(
    seq: Sequence[int],
    n_draft: int,
    ngram: int = LOOKUP_NGRAM,
    history: Iterable[Sequence[int]] = (),
) -> list[int]:
    """The tokens that followed the latest earlier occurrence of `seq`'s last `ngram` tokens in
    `seq`, else in the first of `history` (earlier completions, newest first) that has one."""
    if len(seq) <= ngram:
        return []
    tail = list(seq[-ngram:])
    first = tail[0]
    for source in (seq, *history):  # `seq`'s own tail starts after the range: never matched
        for start in range(len(source) - ngram - 1, -1, -1):
            if source[start] == first and list(source[start : start + ngram]) == tail:
                draft = list(source[start + ngram : start + ngram + n_draft])
                if draft:
                    return draft
    return []


def _eval_rows(llm: Any, tokens: Sequence[int]) -> np.ndarray:
    """Evaluate `tokens` in one batch; return the logits after each of them (a copy)."""
    from llama_cpp import llama_cpp as capi

    llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
    n_past, n = llm.n_tokens, len(tokens)
    llm._batch.set_batch(batch=list(tokens), n_past=n_past, logits_all=True)
    llm._ctx.decode(llm._batch)
    llm.input_ids[n_past : n_past + n] = tokens
    llm.n_tokens += n
    n_vocab = llm.n_vocab()
    ptr = capi.llama_get_logits(llm._ctx.ctx)
    return np.ctypeslib.as_array(ptr, shape=(n, n_vocab)).copy()


_eog_cache: dict[int, np.ndarray] = {}


def _eog_tokens(llm: Any) -> np.ndarray:
    """The model's end-of-generation tokens (EOS, EOT, `<|im_end|>`, …), found once per model."""
    key = id(llm._model)
    if key not in _eog_cache:
        from llama_cpp import llama_cpp as capi

        vocab = llm._model.vocab
        ids = [t for t in range(llm.n_vocab()) if capi.llama_vocab_is_eog(vocab, t)]
        _eog_cache[key] = np.array(ids, dtype=np.int32)
    return _eog_cache[key]


def _pick(
    logits: np.ndarray,
    check: _GrammarCheck | None,
    eog: np.ndarray,
    rng: np.random.Generator,
    temperature: float,
    top_k: int,
    top_p: float,
) -> int:
    """One token: the first of (the sampler's own pick, its `CHECK_FIRST` best candidates, the
    whole vocabulary) that leaves a candidate the grammar allows. -1: nothing is allowed."""
    n = len(logits)
    k = n if top_k <= 0 else min(top_k, n)
    if temperature <= 0:
        first = np.array([int(np.argmax(logits))], dtype=np.int32)
    else:
        first = _truncate(logits, k, top_p, temperature)
    stages = [first]
    if check is not None:
        m = min(max(CHECK_FIRST, k if k < n else 0), n)
        top = np.argpartition(-logits, m - 1)[:m].astype(np.int32) if m < n else None
        if top is not None:
            stages.append(np.union1d(top, eog).astype(np.int32))
        stages.append(np.arange(n, dtype=np.int32))
    for ids in stages:
        vals = logits[ids].astype(np.float32)
        if check is not None:
            vals = check.allowed(ids, vals)
        ok = np.isfinite(vals)
        if not ok.any():
            continue
        ids, vals = ids[ok], vals[ok]
        if temperature <= 0:
            return int(ids[int(np.argmax(vals))])
        if len(ids) > k:  # the truncation the sampler applies, over the allowed tokens
            keep = np.argpartition(-vals, k - 1)[:k]
            ids, vals = ids[keep], vals[keep]
        ids, probs = _nucleus(ids, _softmax(vals / temperature), top_p)
        return int(rng.choice(ids, p=probs / probs.sum()))
    return -1


def _truncate(logits: np.ndarray, k: int, top_p: float, temperature: float) -> np.ndarray:
    """The candidates top-k / top-p sampling may pick (the sampler's first guess)."""
    ids = np.argpartition(-logits, k - 1)[:k].astype(np.int32) if k < len(logits) else None
    if ids is None:
        ids = np.arange(len(logits), dtype=np.int32)
    return _nucleus(ids, _softmax(logits[ids] / temperature), top_p)[0]


def _nucleus(ids: np.ndarray, probs: np.ndarray, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """The most likely `ids` whose probabilities first reach `top_p` (all of them at 1.0)."""
    if top_p >= 1.0:
        return ids, probs
    order = np.argsort(-probs)
    cut = int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1
    return ids[order[:cut]], probs[order[:cut]]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()


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
    pool_size: int = 3
    parallel: int | None = None
    """Generations that may run at once (default: `pool_size`); they share the cores step by step
    (`Runtime.cores`). 1: one after another, each on every core."""
    prompt_lookup: bool = True
    """Greedy decoding drafts tokens by prompt lookup (see `_sample`)."""
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
        stops it with `GenerationCancelled` at the next token or prompt chunk."""
        with _generation(cancel) as event:
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
        if len(prompt) + 1 >= rt.n_ctx:
            raise ConfigError(f"prompt of {len(prompt)} tokens does not fit n_ctx={rt.n_ctx}")
        max_new = min(max_new, rt.n_ctx - len(prompt) - 1)
        temperature = float(kwargs.get("temperature", self.temperature))
        stops = [s for s in (stop or []) if s]
        hold = max((len(s) for s in stops), default=1) - 1

        slot = rt.acquire(prompt)
        try:
            llm = slot.llm
            t0 = time.perf_counter()
            cores = partial(rt.cores, llm)
            cached = _eval_prompt(llm, prompt, cancel, cores)
            t1 = time.perf_counter()
            seed = kwargs.get("seed", self.seed)
            completion: list[int] = []
            text, emitted, finish = "", 0, "length"
            lookup: dict[str, int] = {}
            gen = _sample(
                llm,
                prompt,
                grammar=grammar_for(output_format) if output_format else None,
                temperature=temperature,
                top_k=self.top_k,
                top_p=self.top_p,
                repeat_penalty=self.repeat_penalty,
                seed=None if seed is None else int(seed),
                lookup=self.prompt_lookup,
                history=list(rt.recent),
                stats=lookup,
                cores=cores,
            )
            for token in gen:
                if cancel.is_set():
                    raise GenerationCancelled()
                if token < 0:  # end of generation (EOS, or the grammar is complete)
                    finish = "stop"
                    break
                completion.append(token)
                raw = llm.detokenize(completion, prev_tokens=prompt)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:  # a multi-byte character is not complete yet
                    continue
                cut = min((text.find(s) for s in stops if s in text), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
                    break
                if len(completion) >= max_new:
                    break
                safe = len(text) - hold
                if safe > emitted:
                    yield text[emitted:safe], None
                    emitted = safe
            gen.close()
            t2 = time.perf_counter()
            if completion:
                rt.recent.appendleft(completion)
        finally:
            rt.release(slot)
        text = llm.detokenize(completion, prev_tokens=prompt).decode("utf-8", errors="ignore")
        if stops:
            cut = min((text.find(s) for s in stops if s in text), default=-1)
            text = text[:cut] if cut >= 0 else text
        if len(text) > emitted:
            yield text[emitted:], None
        decode_s = t2 - t1
        yield (
            "",
            {
                "usage": {
                    "input_tokens": len(prompt),
                    "output_tokens": len(completion),
                    "total_tokens": len(prompt) + len(completion),
                },
                "finish_reason": finish,
                "prompt_cached_tokens": cached,
                "prompt_eval_s": round(t1 - t0, 4),
                "decode_s": round(decode_s, 4),
                "decode_tok_s": round(len(completion) / decode_s, 2) if decode_s > 0 else None,
                "lookup_drafted": lookup.get("drafted", 0),
                "lookup_kept": lookup.get("kept", 0),
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
            await _stopped(worker, stopped)

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


def _eval_prompt(
    llm: Any,
    prompt: Sequence[int],
    cancel: threading.Event | None,
    cores: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> int:
    """Bring the context to `prompt[:-1]` evaluated, reusing the longest cached prefix and checking
    `cancel` between chunks (a cancelled call leaves the chunks it read cached, so its retry
    resumes there); return how many prompt tokens were reused. `generate` then finds the
    prompt cached and evaluates only its last token."""
    keep = min(_common_prefix(llm, prompt), len(prompt) - 1)
    if keep < llm.n_tokens:
        if keep == 0 or not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.reset()
            keep = 0
        else:
            llm.n_tokens = keep
    todo = list(prompt[keep:-1])
    for i in range(0, len(todo), EVAL_CHUNK):
        if cancel is not None and cancel.is_set():
            # the chunks read so far are a prefix of `prompt`: a retry of this call (after a
            # timeout) finds them cached and evaluates only the rest
            raise GenerationCancelled()
        with cores():
            llm.eval(todo[i : i + EVAL_CHUNK])
    return keep


async def _stopped(worker: threading.Thread, stopped: asyncio.Event) -> None:
    """Wait, without blocking the event loop, until `worker` has left llama.cpp (one token or
    prompt chunk after its cancel event was set). A cancellation meanwhile does not cut the wait
    short (the caller would free or reuse the model under a running decode): it is raised after."""
    cancelled = False
    while worker.is_alive() and not stopped.is_set():
        try:
            await asyncio.shield(stopped.wait())
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


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
