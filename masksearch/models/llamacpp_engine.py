"""Batched generation on llama.cpp: the running generations of a model advance together, one shared
decode step at a time.

An `Engine` owns one llama.cpp context holding `n_seq` KV sequences (one per cached
conversation) and a scheduler thread. Each step it puts into one `llama_decode` batch every
running generation's next token (with its prompt-lookup draft) and as much of the waiting prompts
as the batch holds (`chunk` tokens per prompt per step), then lets each generation's `Decoder`
choose its tokens from its own logits under its own grammar. Where decoding is bound by reading
the weights, tokens of several sequences in one step share that read; on the 2-core AVX-512 box
the project is measured on, a step's cost grows about linearly with its rows up to 8
(benchmarks/RESULTS.md), so the batch mostly saves threads and switching, not weight reads.

- **prompt-prefix reuse**: a sequence keeps the tokens it last held; a call goes to the free
  sequence holding the longest prefix of its prompt if that is half the prompt or `REUSE_MARGIN`
  tokens more than the least recently used one would give, else to the least recently used one
  (`choose_slot`), and evaluates only the rest;
- **cancellation**: a call whose `cancel` event is set leaves the batch at the next step (between
  two tokens, or two prompt chunks) and frees its sequence at once;
- **one step at a time over every model** (`DECODE_LOCK`): each step runs on every core;
  llama.cpp's threads spin at barriers, so two steps side by side on the same cores slow each
  other down several times over.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from masksearch.models.llamacpp_capi import Context
from masksearch.models.llamacpp_sampling import LOOKUP_HISTORY, Decoder

REUSE_MARGIN = 32  # prompt tokens a sequence must hold beyond the others' to be picked for them
CHUNK = 256  # prompt tokens of one call evaluated per step (the cancellation granularity)
DECODE_LOCK = threading.Lock()  # one llama.cpp step at a time in this process, over every model


@dataclass
class Slot:
    """One KV sequence of the context and the tokens it holds."""

    seq: int
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    used: int = 0


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def choose_slot(free: Sequence[Slot], prompt: Sequence[int]) -> Slot:
    """The free sequence for `prompt`: the one holding its longest prefix if that is half the
    prompt or `REUSE_MARGIN` tokens more than the least recently used sequence would give, else
    that least recently used one (as llama.cpp's server picks slots). Every prompt shares the
    chat template's first tokens and often a system prompt; an empty sequence counts as sharing
    what the least of the others share. So a new conversation goes to a spare sequence instead of
    evicting one whose conversation is still going on, and a conversation's next call finds its
    own sequence."""
    shared = {s.seq: common_prefix(s.tokens, prompt) for s in free}
    best = max(free, key=lambda s: (shared[s.seq], -s.used))
    lru = min(free, key=lambda s: s.used)
    head = min((shared[s.seq] for s in free if s.tokens), default=0)
    lead = shared[best.seq] - (shared[lru.seq] if lru.tokens else head)
    return best if lead >= REUSE_MARGIN or 2 * shared[best.seq] >= len(prompt) else lru


class Request:
    """One generation: its prompt, its decoder, and the queue its tokens go to.

    The queue receives ("token", id) items, then one ("end", finish_reason) or ("error", exc)."""

    def __init__(
        self,
        prompt: Sequence[int],
        decoder: Decoder,
        max_new: int,
        cancel: threading.Event | None = None,
    ) -> None:
        self.prompt = list(prompt)
        self.decoder = decoder
        self.max_new = max_new
        self.cancel = cancel if cancel is not None else threading.Event()
        self.stop = threading.Event()  # set by the consumer when it needs no more tokens
        self.out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.slot: Slot | None = None
        self.todo: list[int] = []
        self.completion: list[int] = []
        self.cached = 0
        self.finish: str | None = None  # why the engine ended the call (`tokens`)
        self.t_admit = self.t_first = self.t_end = 0.0

    @property
    def done(self) -> bool:
        """Cancelled by the caller, or no more tokens wanted."""
        return self.cancel.is_set() or self.stop.is_set()

    def tokens(self) -> Iterator[int]:
        """The generated ids as the engine sends them, until it ends the call: then `finish`
        holds why ("stop", "length" or "cancelled"); an engine error is raised. A consumer that
        stops early sets `stop` so the call leaves the batch."""
        while True:
            kind, value = self.out.get()
            if kind == "error":
                raise value
            if kind == "end":
                self.finish = str(value)
                return
            yield int(value)


class Engine:
    """One llama.cpp context with `n_seq` sequences, generating up to `parallel` calls at once."""

    def __init__(
        self, ctx: Context, *, n_seq: int, parallel: int, chunk: int = CHUNK, exact: bool = False
    ) -> None:
        self.ctx = ctx
        self.slots = [Slot(i) for i in range(n_seq)]
        self.exact = exact
        """Keep every step on the kernels a call alone would use (see `_step`); the context then
        has one more sequence (`n_seq`, a scratch row) and ubatches of fewer than 64 tokens."""
        self.parallel = max(1, min(parallel, n_seq))
        self.chunk = chunk
        self.recent: deque[list[int]] = deque(maxlen=LOOKUP_HISTORY)
        """The latest completions, newest first: prompt lookup drafts from them when the prompt
        has no match (a role repeats its own phrasing from one example to the next)."""
        self.steps = 0
        self._cond = threading.Condition()
        self._waiting: deque[Request] = deque()
        self._running: list[Request] = []
        self._clock = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="llamacpp-engine", daemon=True)
        self._thread.start()

    def submit(self, req: Request) -> Request:
        with self._cond:
            if self._closed:
                raise RuntimeError("the llama.cpp engine is closed")
            self._waiting.append(req)
            self._cond.notify_all()
        return req

    @property
    def busy(self) -> int:
        """Calls running or waiting (0: the scheduler thread sleeps)."""
        with self._cond:
            return len(self._running) + len(self._waiting)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    # --- the scheduler thread --------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._running and not self._waiting:
                    self._cond.wait()
                if self._closed:
                    for r in [*self._waiting, *self._running]:
                        r.out.put(("error", RuntimeError("the llama.cpp engine was closed")))
                    return
                self._admit()
            try:
                self._step()
                os.sched_yield()  # let the callers' threads (and the event loop) run between steps
            except Exception as e:  # noqa: BLE001 - handed to every running call
                for r in list(self._running):
                    self._finish(r, ("error", e))
                self.ctx.clear()
                for s in self.slots:
                    s.tokens = []

    def _admit(self) -> None:
        """Start waiting calls on free sequences (call with the condition held)."""
        for r in [r for r in self._waiting if r.done]:
            self._waiting.remove(r)
            r.out.put(("end", "cancelled"))
        while self._waiting and len(self._running) < self.parallel:
            free = [s for s in self.slots if not s.busy]
            if not free:
                return
            r = self._waiting.popleft()
            slot = choose_slot(free, r.prompt)
            keep = min(common_prefix(slot.tokens, r.prompt), len(r.prompt) - 1)
            if keep < len(slot.tokens):
                if keep == 0 or not self.ctx.forget(slot.seq, keep):
                    self.ctx.forget(slot.seq, 0)
                    keep = 0
                del slot.tokens[keep:]
            self._clock += 1
            slot.busy, slot.used = True, self._clock
            r.slot, r.cached, r.todo = slot, keep, r.prompt[keep:]
            r.t_admit = time.perf_counter()
            self._running.append(r)

    def _step(self) -> None:
        """One llama_decode over every running call: decoding calls first (their next token and
        draft), then prompt chunks in the room left."""
        ctx = self.ctx
        for r in [r for r in self._running if r.done]:
            self._finish(r, ("end", "cancelled"))
        if not self._running:
            return
        room = ctx.n_batch
        plan: list[tuple[Request, int, list[int]]] = []  # call, tokens taken, logits rows
        decoding = [r for r in self._running if len(r.todo) <= len(r.decoder.feed)]
        reading = [r for r in self._running if len(r.todo) > len(r.decoder.feed)]
        for r in [*decoding, *reading]:
            take = min(len(r.todo), room, self.chunk) if r in reading else len(r.todo)
            if take <= 0 or take > room:
                continue
            assert r.slot is not None
            start = len(r.slot.tokens)
            last = take == len(r.todo)  # this step ends the call's todo: its logits are needed
            first_out = take - len(r.decoder.feed) if last else take
            rows = [
                ctx.add(t, start + i, r.slot.seq, i >= first_out)
                for i, t in enumerate(r.todo[:take])
            ]
            plan.append((r, take, rows[first_out:] if last else []))
            room -= take
        if self.exact:
            self._pad(plan)
        with DECODE_LOCK:
            ctx.decode()
            if self.exact:
                ctx.forget(len(self.slots), 0)
        self.steps += 1
        for r, take, rows in plan:
            slot = r.slot
            assert slot is not None
            slot.tokens.extend(r.todo[:take])
            del r.todo[:take]
            if r.todo:
                continue
            if not r.t_first:
                r.t_first = time.perf_counter()
            out, drop = r.decoder.advance([ctx.logits(i) for i in rows])
            if drop:
                keep = len(slot.tokens) - drop
                ctx.forget(slot.seq, keep)
                del slot.tokens[keep:]
            self._emit(r, out)

    def _pad(self, plan: list[tuple[Request, int, list[int]]]) -> None:
        """In exact mode, no ubatch of a step holds a single token: llama.cpp's CPU attention
        splits one query over the threads along the KV cache (another rounding than the per-row
        path) when it is alone and the cache holds 512+ cells. So a lone token gets a scratch
        token beside it (sequence `n_seq`, dropped after the step); a prompt chunk that would
        leave one token in the last ubatch gives that token back to the next step."""
        ctx, ub = self.ctx, self.ctx.n_ubatch
        if ctx.pending % ub != 1:
            return
        r, take, rows = plan[-1]
        if ctx.pending > 1 and not rows and take > 1:  # the last chunk reads one token less
            ctx.unadd(1)
            plan[-1] = (r, take - 1, rows)
        else:
            ctx.add(0, 0, len(self.slots), False)

    def _emit(self, r: Request, tokens: list[int]) -> None:
        for t in tokens:
            if t < 0:
                self._finish(r, ("end", "stop"))
                return
            r.completion.append(t)
            r.out.put(("token", t))
            if len(r.completion) >= r.max_new:
                self._finish(r, ("end", "length"))
                return
        r.todo = list(r.decoder.feed)

    def _finish(self, r: Request, item: tuple[str, Any]) -> None:
        with self._cond:
            if r in self._running:
                self._running.remove(r)
            if r.slot is not None:
                r.slot.busy = False
            r.decoder.close()
            r.t_end = time.perf_counter()
            if item[0] == "end" and item[1] != "cancelled" and r.completion:
                self.recent.appendleft(list(r.completion))
            r.out.put(item)
            self._cond.notify_all()
