"""The batched llama.cpp engine's scheduling (sequences, shared steps, cancellation) on a fake
context, and batched against one-at-a-time greedy decoding on SmolLM2-135M."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from masksearch.models.llamacpp_engine import REUSE_MARGIN, Engine, Request, Slot, choose_slot
from masksearch.models.llamacpp_sampling import Decoder

VOCAB = 50
EOG = np.array([0], dtype=np.int32)


class FakeContext:
    """A 'model' whose next token is the last one + 1 (token 0 ends the generation); it records
    each step's batch and each sequence's positions, like llama.cpp's KV cache."""

    def __init__(self, n_batch: int = 64) -> None:
        self.n_batch = n_batch
        self.batches: list[list[tuple[int, int, int, bool]]] = []
        self.kv: dict[int, dict[int, int]] = {}
        self._batch: list[tuple[int, int, int, bool]] = []
        self._rows: list[tuple[int, int, int, bool]] = []
        self.gate: threading.Event | None = None

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        self._batch.append((token, pos, seq, logits))
        return len(self._batch) - 1

    def decode(self) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        for token, pos, seq, _ in self._batch:
            cells = self.kv.setdefault(seq, {})
            assert pos == len(cells), "positions of a sequence must be contiguous"
            cells[pos] = token
        self.batches.append(self._batch)
        self._rows, self._batch = self._batch, []

    def logits(self, row: int) -> np.ndarray:
        out = np.zeros(VOCAB, dtype=np.float32)
        out[(self._rows[row][0] + 1) % VOCAB] = 1.0
        return out

    def forget(self, seq: int, start: int = 0) -> bool:
        cells = self.kv.setdefault(seq, {})
        for p in [p for p in cells if p >= start]:
            del cells[p]
        return True

    def clear(self) -> None:
        self.kv.clear()


def _request(prompt: list[int], max_new: int = 100) -> Request:
    return Request(prompt, Decoder(prompt, eog=EOG, lookup=False), max_new)


def _drain(req: Request) -> tuple[list[int], object]:
    tokens = []
    while True:
        kind, value = req.out.get(timeout=10)
        if kind == "token":
            tokens.append(value)
        else:
            return tokens, value


def test_running_generations_advance_together_in_shared_steps():
    ctx = FakeContext()
    engine = Engine(ctx, n_seq=3, parallel=3)  # type: ignore[arg-type]
    ctx.gate = threading.Event()  # hold the first step until all three are queued
    reqs = [engine.submit(_request([5, 6, start])) for start in (10, 20, 30)]
    ctx.gate.set()
    outs = [_drain(r) for r in reqs]
    engine.close()
    assert [o[0] for o in outs] == [
        list(range(11, VOCAB)),
        list(range(21, VOCAB)),
        list(range(31, VOCAB)),
    ]
    assert all(o[1] == "stop" for o in outs)  # token 0 (50 % 50) ends each generation
    # the 39 tokens of the longest took about 39 steps, not 39 + 29 + 19
    assert engine.steps <= 39 + 3
    assert max(len({seq for _, _, seq, _ in b}) for b in ctx.batches) == 3


def test_parallel_bounds_the_calls_in_a_batch_and_the_others_wait():
    ctx = FakeContext()
    engine = Engine(ctx, n_seq=2, parallel=1)  # type: ignore[arg-type]
    a, b = engine.submit(_request([1, 40])), engine.submit(_request([2, 45]))
    assert _drain(a)[0] == list(range(41, VOCAB)) and _drain(b)[0] == list(range(46, VOCAB))
    engine.close()
    assert all(len({seq for _, _, seq, _ in batch}) == 1 for batch in ctx.batches)


def test_a_cancelled_call_leaves_the_batch_and_frees_its_sequence():
    ctx = FakeContext()
    engine = Engine(ctx, n_seq=1, parallel=1)  # type: ignore[arg-type]
    ctx.gate = threading.Event()
    a = engine.submit(_request([1, 2], max_new=1000))
    b = engine.submit(_request([3, 4], max_new=3))  # waits for the only sequence
    a.cancel.set()
    ctx.gate.set()
    assert _drain(a)[1] == "cancelled"
    assert _drain(b) == ([5, 6, 7], "length")
    engine.close()
    assert not any(s.busy for s in engine.slots)


def test_prompts_are_read_in_chunks_and_a_cached_prefix_is_not_read_again():
    ctx = FakeContext(n_batch=16)
    engine = Engine(ctx, n_seq=1, parallel=1, chunk=8)  # type: ignore[arg-type]
    prompt = list(range(1, 21))  # 20 tokens: 8 + 8 + 4 per step
    first = engine.submit(_request(prompt, max_new=2))
    assert _drain(first) == ([21, 22], "length")
    assert [len(b) for b in ctx.batches[:3]] == [8, 8, 4]
    again = engine.submit(_request([*prompt, 30], max_new=1))
    assert _drain(again) == ([31], "length")
    engine.close()
    assert again.cached == 20 and len(ctx.batches[-1]) == 1  # only the new token was read
    assert ctx.kv[0] == dict(enumerate([*prompt, 30]))  # the unused reply token was dropped


def test_a_call_goes_to_the_sequence_holding_its_conversation_else_to_a_spare_one():
    head = list(range(30))  # what every prompt shares (the chat template, a system prompt)
    question_a = [*head, *range(100, 100 + 2 * REUSE_MARGIN)]
    slots = [Slot(0, question_a, used=1), Slot(1), Slot(2)]
    planner_b = [*head, *range(1000, 1200)]  # a second conversation starts: a spare sequence
    b = choose_slot(slots, planner_b)
    assert b is not slots[0]
    b.tokens, b.used = planner_b, 2
    observer_a = [*question_a, *range(500, 900)]  # less than half of it is cached, but its own
    assert choose_slot(slots, observer_a) is slots[0]
    slots[0].tokens, slots[0].used = observer_a, 3
    spare = slots[1] if b is slots[2] else slots[2]
    third = [*head, 7, *range(2000, 2100)]
    assert choose_slot([s for s in slots if s is not b], third) is spare


@pytest.fixture(scope="module")
def small():
    pytest.importorskip("llama_cpp")
    from masksearch.models import load_chat_model

    return load_chat_model("local:smollm2-135m", max_tokens=32)


PROMPTS = [
    "Name three colours and say which is warmest.",
    "Write one sentence about the Eiffel Tower and the year it opened.",
    "Count from one to ten in words.",
    "What is the capital of Italy? Explain briefly.",
]


@pytest.mark.parametrize("lookup", [False, True])
def test_batched_decoding_gives_the_unbatched_greedy_tokens_exactly(small, lookup):
    """Four greedy calls decoded together in shared steps (one sequence each, prompts read while
    others decode) give token for token what each call gives alone in a one-sequence context
    (`exact`: the same llama.cpp kernels whatever the batch; without it, llama.cpp's batched and
    one-row kernels round differently and a near-tie can flip)."""
    from langchain_core.messages import HumanMessage

    alone = small.model_copy(update={"pool_size": 1, "prompt_lookup": lookup, "exact": True})
    together = small.model_copy(update={"pool_size": 4, "prompt_lookup": lookup, "exact": True})
    expected = []
    for p in PROMPTS:
        alone.load().recent.clear()  # no earlier completion to draft from
        expected.append(alone.invoke([HumanMessage(p)]).content)

    async def batch() -> list[str]:
        together.load().recent.clear()
        outs = await asyncio.gather(*(together.ainvoke([HumanMessage(p)]) for p in PROMPTS))
        return [o.content for o in outs]

    rt = together.load()
    steps = rt.engine.steps
    got = asyncio.run(batch())
    assert got == expected
    assert all(len(e) > 20 for e in expected)
    # shared steps: far fewer than the four calls' steps one after another
    assert rt.engine.steps - steps < 2 * 32


def test_a_reply_near_the_end_of_the_context_leaves_room_for_its_drafts():
    """A prompt that nearly fills `n_ctx`: the reply is capped so that the prompt, the reply and
    a prompt-lookup draft fit the sequence (a draft past the end failed `llama_decode` with a
    full KV cache); a prompt with no room left is refused with a ConfigError."""
    pytest.importorskip("llama_cpp")
    from langchain_core.messages import HumanMessage

    from masksearch.errors import ConfigError
    from masksearch.models import load_chat_model

    model = load_chat_model("local:smollm2-135m", max_tokens=64)
    model = model.model_copy(update={"n_ctx": 256})
    rt = model.load()
    words = "the tower stands in the city and the tower is tall " * 40
    base = len(rt.format([{"role": "user", "content": ""}]))
    text = " ".join(words.split()[: 256 - base - 20])
    while len(rt.format([{"role": "user", "content": text}])) > 256 - 8:
        text = text.rsplit(" ", 1)[0]
    out = model.invoke([HumanMessage(text)])  # repetitive: prompt lookup drafts all the way
    assert out.usage_metadata["input_tokens"] + out.usage_metadata["output_tokens"] <= 256 - 3
    with pytest.raises(ConfigError, match="does not fit"):
        model.invoke([HumanMessage(words)])
