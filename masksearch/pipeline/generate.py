"""Batch trajectory generation: a fixed pool of async workers pulling examples from a bounded queue.

Resume: ids already in the store are skipped (failed ones are redone with `retry_failed`); an
example that was in flight when the process died has the same deterministic thread id on the
next run, so the graph resumes it from the checkpointer. Finished records are committed to the
store in small batches (`WRITE_BATCH` records or `FLUSH_S` seconds), then their checkpoint
threads are deleted (failed threads are kept so a retry can resume from the last good step); a
record finished but not yet committed when the process dies is rebuilt from its final checkpoint
on the next run, without a model call. The store's primary key makes duplicates impossible.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TypeVar

from masksearch.context import Context
from masksearch.errors import InputError, OutputError
from masksearch.graph.records import failed_record
from masksearch.jsonl import utf8_safe
from masksearch.pipeline.failfast import DEFAULT_THRESHOLD, FailureStreak
from masksearch.pipeline.ratelimit import Limiter
from masksearch.pipeline.store import RecordStore, open_store
from masksearch.pipeline.summary import Summary
from masksearch.records import TrajectoryRecord
from masksearch.resources import Resources
from masksearch.types import MaskedExample

log = logging.getLogger(__name__)
FORGET_BATCH = 32  # finished checkpoint threads deleted per transaction
WRITE_BATCH = 16  # finished records committed per store transaction...
FLUSH_S = 0.2  # ...or after this long, whichever comes first
CHECK_BATCH = 64  # input ids looked up in the store per query

RunOne = Callable[[MaskedExample], Awaitable[TrajectoryRecord]]
Durability = Literal["sync", "async", "exit"]
T = TypeVar("T")


async def generate(
    examples: Iterable[MaskedExample],
    context: Context | None,
    store: RecordStore | str | Path,
    checkpointer_url: str | None = "memory",
    concurrency: int = 8,
    *,
    limit: int | None = None,
    retry_failed: bool = False,
    total: int | None = None,
    progress: bool = True,
    stop: asyncio.Event | None = None,
    run_one: RunOne | None = None,
    keep_checkpoints: bool = False,
    summary: Summary | None = None,
    graph_options: dict[str, Any] | None = None,
    durability: Durability = "exit",
    limiter: Limiter | None = None,
    resources: Resources | None = None,
) -> Summary:
    """Run the graph over `examples` with `concurrency` workers; write each record to `store`.

    - `limit`: take only the first `limit` input examples (so rerunning the same command
      resumes the same set instead of starting new ones).
    - `retry_failed`: redo ids whose stored record is `failed` (others in the store are skipped).
    - `stop`: when set, no new example is started; in-flight ones finish and are written.
    - `run_one`: override the per-example runner (tests, benchmarks); by default the graph from
      `masksearch.graph.build_graph` with the checkpointer opened from `checkpointer_url`.
    - `graph_options`: keyword arguments for `build_graph` (e.g. `retry_policy`, `node_timeout_s`;
      the graph is compiled for the Context's `agent_mode` alone, without the `messages` chat
      view, and without the review node unless the Context has `review_queries`).
    - `resources`: the `Resources` serving the Context's model and retriever specs (the caller's:
      one per CLI invocation or Ray worker); default a fresh one for this call.
    - `durability`: when LangGraph writes each example's checkpoints (docs/pipeline.md,
      "Durability"): `exit` (default: once, when the example ends; cheapest; an example killed
      mid-run restarts from its first step), `sync` (after every step, before the next: a
      killed example resumes at its last step), `async` (every step, overlapped with the next).
    - `limiter`: rate limits every model call goes through (`pipeline.ratelimit`: this
      process's, or the run's shared Ray actor).
    Returns a `Summary`; a `summary` passed in is filled in place (so a caller sees partial
    counts even if this coroutine is cancelled).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    own_store = isinstance(store, str | Path)
    st: RecordStore = open_store(store) if isinstance(store, str | Path) else store
    summary = summary if summary is not None else Summary()
    settings = PoolSettings(
        concurrency=concurrency,
        limit=limit,
        retry_failed=retry_failed,
        total=total,
        progress=progress,
        keep_checkpoints=keep_checkpoints,
    )
    stop = stop or asyncio.Event()
    try:
        if run_one is not None:
            await _run_pool(examples, st, run_one, settings, stop, summary)
            return summary
        if context is None:
            raise ValueError("generate needs a Context to run the graph (or a run_one)")
        from masksearch.graph import build_graph
        from masksearch.graph.checkpoint import open_checkpointer
        from masksearch.graph.runner import run_example

        res = resources if resources is not None else Resources()
        models = await res.warm_up(context)
        detach = _limit_models(models, limiter, context) if limiter is not None else None
        async with open_checkpointer(checkpointer_url or "memory") as saver:
            options = {
                "agent_mode": context.agent_mode,
                "review": context.review_queries,
                "chat": False,  # records come from rounds and steps: no chat view to keep
                **(graph_options or {}),
            }
            graph = build_graph(checkpointer=saver, resources=res, **options)
            if not keep_checkpoints:
                await sweep_finished_threads(saver, st)

            async def _graph_run(ex: MaskedExample) -> TrajectoryRecord:
                return await run_example(graph, ex, context, durability=durability)

            try:
                await _run_pool(examples, st, _graph_run, settings, stop, summary, saver, context)
            finally:
                if detach is not None:
                    detach()
        return summary
    finally:
        if own_store:
            st.close()


def _limit_models(models: list[Any], limiter: Limiter, context: Context) -> Callable[[], None]:
    """Route every model call through `limiter`; returns the undo (models are shared objects)."""
    from masksearch.pipeline.ratelimit import RateLimitCallback, attach

    handler = RateLimitCallback(limiter, max_tokens=context.max_tokens)
    saved = [(m, getattr(m, "callbacks", None)) for m in models]
    for m in models:
        attach(m, handler)

    def undo() -> None:
        for m, callbacks in saved:
            if hasattr(m, "callbacks"):
                m.callbacks = callbacks

    return undo


@dataclass(frozen=True)
class PoolSettings:
    """How `_run_pool` runs a batch (the `generate` options that are not data)."""

    concurrency: int = 8  # examples run at the same time
    limit: int | None = None  # take only the first N input examples
    retry_failed: bool = False  # redo ids whose stored record failed
    total: int | None = None  # input size, for the progress bar
    progress: bool = True  # tqdm bar
    keep_checkpoints: bool = False  # keep finished examples' checkpoint threads
    stop_after_failures: int = DEFAULT_THRESHOLD  # `FailureStreak`: 0 never stops early


async def _run_pool(
    examples: Iterable[MaskedExample],
    store: RecordStore,
    run_one: RunOne,
    settings: PoolSettings,
    stop: asyncio.Event,
    summary: Summary,
    saver: Any = None,
    context: Context | None = None,
) -> None:
    concurrency, limit = settings.concurrency, settings.limit
    retry_failed, keep_checkpoints = settings.retry_failed, settings.keep_checkpoints
    queue: asyncio.Queue[MaskedExample | None] = asyncio.Queue(maxsize=concurrency)
    bar = _progress_bar(settings.total, limit, settings.progress)
    t0 = time.perf_counter()
    streak = FailureStreak(settings.stop_after_failures)  # a wrong key or model: stop early

    # ids queued, running, or finished but not yet committed: bounded by concurrency, the
    # queue and one write batch (no per-input memory)
    in_flight: set[str] = set()
    # the steady window (`Summary.steady_throughput`): examples finished so far, and
    # (time, finished) when the first `concurrency` had finished and at the latest start
    finished = 0
    all_turned: tuple[float, int] | None = None
    last_start: tuple[float, int] = (0.0, 0)

    async def produce() -> None:
        try:
            source = examples if limit is None else islice(examples, limit)
            for chunk in _chunks(source, CHECK_BATCH):
                if stop.is_set():
                    break
                done = store.done_among(
                    list({ex.id for ex in chunk if ex.id not in in_flight}),
                    retry_failed=retry_failed,
                )
                for ex in chunk:
                    if stop.is_set():
                        break
                    if ex.id in in_flight:  # same id again while the first copy is running
                        summary.skipped_duplicate += 1
                        continue
                    if ex.id in done:
                        summary.skipped_existing += 1
                        if bar is not None:
                            bar.update(1)
                        continue
                    in_flight.add(ex.id)
                    await queue.put(ex)
        except asyncio.CancelledError:  # workers are being cancelled too: no sentinels needed
            raise
        except BaseException:
            await finish()
            raise
        await finish()

    async def finish() -> None:
        for _ in range(concurrency):
            await queue.put(None)

    finished_threads: list[str | None] = []
    # finished records not yet committed: written WRITE_BATCH at a time (or every FLUSH_S) in
    # one transaction. Their checkpoint threads are deleted only after the commit, so a kill
    # before it loses nothing: the next run rebuilds each from its final checkpoint, with no
    # model call.
    unwritten: list[tuple[TrajectoryRecord, dict[str, Any]]] = []

    async def flush() -> None:
        if not unwritten:
            return
        batch, unwritten[:] = list(unwritten), []
        written = store.write_rows([row for _, row in batch])
        for (record, _), ok in zip(batch, written, strict=True):
            in_flight.discard(record["id"])
            if ok:
                summary.add(record)
            else:
                summary.not_written += 1
            if saver is not None and not keep_checkpoints and record["status"] != "failed":
                finished_threads.append(record.get("thread_id"))
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix(
                accept=f"{summary.accept_rate:.0%}", failed=summary.failed, refresh=False
            )
        summary.elapsed_s = time.perf_counter() - t0
        if len(finished_threads) >= FORGET_BATCH:
            threads, finished_threads[:] = list(finished_threads), []
            await _forget_threads(saver, threads)

    async def flush_every() -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await flush()

    def encode(ex: MaskedExample, record: TrajectoryRecord) -> dict[str, Any]:
        try:
            return store.encode(record)
        except (InputError, TypeError, ValueError) as e:
            if isinstance(e, OutputError):  # the store itself cannot be written: stop
                raise
            # this record cannot be stored (invalid, unencodable text): keep the example, as
            # failed, and go on with the batch
            failed = utf8_safe(
                failed_record(ex, context, f"invalid record: {e}", record.get("thread_id", ""))
            )
            record.clear()  # type: ignore[attr-defined]  # the caller's dict, refilled in place
            record.update(failed)
            return store.encode(record)

    async def work() -> None:
        nonlocal finished, all_turned, last_start
        while (ex := await queue.get()) is not None:
            if stop.is_set():  # queued but not started: left for the next run
                in_flight.discard(ex.id)
                continue
            last_start = (time.perf_counter(), finished)
            try:
                record = await run_one(ex)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug outside the graph's own handling: record, don't crash
                log.warning("example %s raised %s: %s", ex.id, type(e).__name__, e)
                record = failed_record(ex, context, e)
            if not isinstance(record, dict) or record.get("id") != ex.id:
                record = failed_record(
                    ex,
                    context,
                    f"runner returned a record for another id: "
                    f"{record.get('id') if isinstance(record, dict) else record!r}",
                )
            finished += 1
            if finished == concurrency:
                all_turned = (time.perf_counter(), finished)
            row = encode(ex, record)
            unwritten.append((record, row))
            if len(unwritten) >= WRITE_BATCH:
                await flush()
            streak.observe(record)  # raises RunStopped: the batch stops, the record is kept

    flusher = asyncio.create_task(flush_every())
    producer = asyncio.create_task(produce())
    workers = [asyncio.create_task(work()) for _ in range(concurrency)]
    tasks = [producer, *workers]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        broken = [t for t in done if t is not producer and t.exception() is not None]
        if broken:  # a worker hit a fatal error (e.g. the store's disk is full): stop everything
            stop.set()
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise broken[0].exception() or RuntimeError("worker failed")
        if pending:  # the producer stopped on bad input: let the workers finish what they hold
            await asyncio.gather(*pending)
        if (error := producer.exception()) is not None:
            raise error
    except asyncio.CancelledError:
        summary.interrupted = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await flush()  # what finished before a stop, an error or a cancel is committed
        if finished_threads and saver is not None:
            await _forget_threads(saver, finished_threads)
        summary.elapsed_s = time.perf_counter() - t0
        summary.interrupted = summary.interrupted or stop.is_set()
        if all_turned is not None and last_start[0] > all_turned[0]:
            summary.steady_s = last_start[0] - all_turned[0]
            summary.steady_done = last_start[1] - all_turned[1]
        if bar is not None:
            bar.close()


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to `size` items; if the source raises (bad input), the items read before
    the error are still yielded, then the error is raised."""
    chunk: list[T] = []
    try:
        for item in items:
            chunk.append(item)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except Exception:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


async def sweep_finished_threads(saver: Any, store: RecordStore) -> int:
    """Delete leftover checkpoint threads of examples already finished in the store (a process
    killed between writing a record and deleting its thread leaves one). Failed examples keep
    their threads so a retry resumes them. Returns the number of threads deleted."""
    seen: set[str] = set()
    finished: list[str] = []
    try:
        async for tup in saver.alist(None):
            thread_id = tup.config["configurable"]["thread_id"]
            if thread_id in seen:
                continue
            seen.add(thread_id)
            values = (tup.checkpoint or {}).get("channel_values") or {}
            example_id = values.get("example_id")
            if isinstance(example_id, str) and store.is_done(example_id, retry_failed=True):
                finished.append(thread_id)
    except Exception as e:  # housekeeping only
        log.debug("checkpoint sweep skipped: %s", e)
        return 0
    await _forget_threads(saver, finished)
    return len(finished)


async def _forget_threads(saver: Any, thread_ids: Sequence[str | None]) -> None:
    """Drop finished examples' checkpoints (their records are safely in the store), in one
    transaction when the saver supports it. A crash before this runs leaves threads that the
    next run's sweep removes."""
    ids = [t for t in thread_ids if t]
    try:
        if hasattr(saver, "delete_threads"):
            saver.delete_threads(ids)
            return
        for thread_id in ids:
            await saver.adelete_thread(thread_id)
    except Exception as e:  # housekeeping only; the records are already stored
        log.debug("could not delete %d checkpoint threads: %s", len(ids), e)


def _progress_bar(total: int | None, limit: int | None, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    if limit is not None:
        total = min(total, limit) if total is not None else limit
    return tqdm(total=total, unit="ex", desc="generate", dynamic_ncols=True)
