"""`generate`'s worker pool with an injected per-example runner: counting, resume, concurrency,
bad input mid-stream, stop event, and runner exceptions."""

from __future__ import annotations

import asyncio

import pytest

from masksearch.context import Context
from masksearch.errors import InputError
from masksearch.graph.records import failed_record
from masksearch.pipeline.generate import GenerateSettings, generate
from masksearch.store.trajectories import TrajectoryStore
from masksearch.types import MaskedExample, Span


def examples(n: int, start: int = 0) -> list[MaskedExample]:
    return [
        MaskedExample(
            id=f"ex{i}",
            question=f"q{i}",
            answers=["a"] * (1 + i % 3),
            spans=[Span(0, 1, "a")] * (1 + i % 3),
        )
        for i in range(start, start + n)
    ]


def fake_runner(
    accept=lambda ex: int(ex.id[2:]) % 2 == 0,
    fail=lambda ex: False,
    delay=0.0,
    calls=None,
    active=None,
):
    state = {"now": 0, "peak": 0}

    async def run_one(ex: MaskedExample):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        try:
            if calls is not None:
                calls.append(ex.id)
            await asyncio.sleep(delay)
            rec = failed_record(ex, Context(), "scripted failure")
            if not fail(ex):
                rec.update(
                    status="answered",
                    error=None,
                    accepted=accept(ex),
                    final_answer="a",
                    messages=[{"role": "assistant", "content": "<answer>a</answer>"}],
                    usage={"prompt_tokens": 10, "completion_tokens": 2, "search_calls": 1},
                    meta={**rec["meta"], "turns": 1},
                )
            return rec
        finally:
            state["now"] -= 1

    run_one.state = state
    return run_one


async def test_counts_and_summary(tmp_path):
    run = fake_runner(fail=lambda ex: ex.id == "ex3")
    s = await generate(
        examples(10),
        Context(),
        tmp_path / "t.sqlite",
        GenerateSettings(concurrency=3, progress=False),
        run_one=run,
    )
    assert (s.done, s.accepted, s.failed) == (10, 5, 1)  # even ids accepted; ex3 failed
    assert s.by_status == {"answered": 9, "failed": 1}
    assert s.fail_reasons == {"scripted failure": 1}
    assert s.by_k == {1: [4, 2], 2: [3, 1], 3: [3, 2]}
    assert s.prompt_tokens == 90 and s.search_calls == 9 and s.mean_turns == pytest.approx(0.9)
    assert "accepted 5 (50.0%)" in s.format() and "1 x scripted failure" in s.format()
    with TrajectoryStore(tmp_path / "t.sqlite") as st:
        assert st.stats()["count"] == 10 and st.stats()["accepted"] == 5


async def test_resume_skips_done_and_retry_failed(tmp_path):
    path = tmp_path / "t.sqlite"
    calls: list[str] = []
    await generate(
        examples(6),
        Context(),
        path,
        GenerateSettings(progress=False),
        run_one=fake_runner(fail=lambda ex: ex.id == "ex1"),
    )
    s = await generate(
        examples(10),
        Context(),
        path,
        GenerateSettings(progress=False),
        run_one=fake_runner(calls=calls),
    )
    assert sorted(calls) == [f"ex{i}" for i in range(6, 10)]
    assert s.skipped_existing == 6 and s.done == 4
    calls.clear()
    s = await generate(
        examples(10),
        Context(),
        path,
        GenerateSettings(retry_failed=True, progress=False),
        run_one=fake_runner(calls=calls),
    )
    assert calls == ["ex1"] and s.done == 1
    with TrajectoryStore(path) as st:
        assert len(st) == 10 and st.get("ex1")["status"] == "answered"


async def test_limit_means_first_n_inputs_and_duplicates_skipped(tmp_path):
    path = tmp_path / "t.sqlite"
    calls: list[str] = []
    data = examples(5) + examples(2)  # ex0, ex1 repeated
    s = await generate(
        data,
        Context(),
        path,
        GenerateSettings(limit=3, progress=False),
        run_one=fake_runner(calls=calls),
    )
    assert calls == ["ex0", "ex1", "ex2"] and s.done == 3
    s = await generate(
        data, Context(), path, GenerateSettings(progress=False), run_one=fake_runner(calls=calls)
    )
    assert s.done == 2 and s.skipped_existing == 5  # ex0..ex2 stored before; the repeats too
    calls.clear()
    dup = examples(3, start=10) * 2  # the repeats arrive while the first copies are running
    s = await generate(
        dup,
        Context(),
        path,
        GenerateSettings(concurrency=4, progress=False),
        run_one=fake_runner(calls=calls, delay=0.05),
    )
    assert sorted(calls) == ["ex10", "ex11", "ex12"] and s.done == 3 and s.skipped_duplicate == 3


async def test_concurrency_bound_is_reached_and_respected(tmp_path):
    run = fake_runner(delay=0.05)
    s = await generate(
        examples(24),
        Context(),
        tmp_path / "t.sqlite",
        GenerateSettings(concurrency=8, progress=False),
        run_one=run,
    )
    assert run.state["peak"] == 8 and s.done == 24
    assert s.elapsed_s < 24 * 0.05 / 2  # clearly parallel


async def test_runner_exception_is_recorded_not_raised(tmp_path):
    base = fake_runner()

    async def flaky(ex):
        if ex.id == "ex2":
            raise KeyError("bug in a node")
        return await base(ex)

    s = await generate(
        examples(4),
        Context(),
        tmp_path / "t.sqlite",
        GenerateSettings(progress=False),
        run_one=flaky,
    )
    assert s.done == 4 and s.failed == 1
    assert "KeyError" in next(iter(s.fail_reasons))


async def test_bad_input_mid_stream_keeps_written_records(tmp_path):
    def stream():
        yield from examples(3)
        raise InputError("invalid JSON", path="in.jsonl", line=4)

    path = tmp_path / "t.sqlite"
    with pytest.raises(InputError, match="in.jsonl:4"):
        await generate(
            stream(),
            Context(),
            path,
            GenerateSettings(concurrency=2, progress=False),
            run_one=fake_runner(delay=0.01),
        )
    with TrajectoryStore(path) as st:
        assert st.ids() == {"ex0", "ex1", "ex2"}


async def test_stop_event_finishes_in_flight_and_starts_nothing_new(tmp_path):
    stop = asyncio.Event()
    calls: list[str] = []
    base = fake_runner(delay=0.02, calls=calls)

    async def run(ex):
        if ex.id == "ex3":
            stop.set()
        return await base(ex)

    s = await generate(
        examples(50),
        Context(),
        tmp_path / "t.sqlite",
        GenerateSettings(concurrency=2, progress=False),
        run_one=run,
        stop=stop,
    )
    assert s.interrupted and s.done == len(calls) and s.done < 10
    with TrajectoryStore(tmp_path / "t.sqlite") as st:
        assert len(st) == s.done


async def test_cancel_loses_nothing_written(tmp_path):
    path = tmp_path / "t.sqlite"
    task = asyncio.create_task(
        generate(
            examples(100),
            Context(),
            path,
            GenerateSettings(concurrency=4, progress=False),
            run_one=fake_runner(delay=0.01),
        )
    )
    await asyncio.sleep(0.08)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with TrajectoryStore(path) as st:
        written = len(st)
    assert 0 < written < 100
    s = await generate(
        examples(100), Context(), path, GenerateSettings(progress=False), run_one=fake_runner()
    )
    assert s.skipped_existing == written and s.done == 100 - written


async def test_after_a_stop_queued_examples_are_not_started(tmp_path):
    """Issue 11 'Signals': a stop used to let the workers drain the queue (up to 2x the
    concurrency more examples); now only the examples already running finish."""
    stop = asyncio.Event()
    calls: list[str] = []
    base = fake_runner(delay=0.05, calls=calls)

    async def run(ex):
        if ex.id == "ex0":
            stop.set()
        return await base(ex)

    s = await generate(
        examples(100),
        Context(),
        tmp_path / "t.sqlite",
        GenerateSettings(concurrency=8, progress=False),
        run_one=run,
        stop=stop,
    )
    assert s.interrupted and s.done == len(calls)
    assert len(calls) <= 8, calls  # the queue (8 more) was not drained
    with TrajectoryStore(tmp_path / "t.sqlite") as st:
        assert len(st) == s.done
