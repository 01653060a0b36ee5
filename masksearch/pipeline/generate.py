"""Batch trajectory generation on the worker pool (`workers.pool`): bounded concurrency, resume.

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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from masksearch.context import Context
from masksearch.errors import InputError, OutputError, RunStopped
from masksearch.graph.records import failed_record
from masksearch.jsonl import utf8_safe
from masksearch.pipeline.failfast import DEFAULT_THRESHOLD, FailureStreak
from masksearch.pipeline.ratelimit import Limiter
from masksearch.pipeline.summary import Summary
from masksearch.records import TrajectoryRecord
from masksearch.resources import Resources
from masksearch.store.trajectories import RecordStore, open_store
from masksearch.types import MaskedExample
from masksearch.workers.pool import PoolSettings, run_pool

log = logging.getLogger(__name__)
FORGET_BATCH = 32  # finished checkpoint threads deleted per transaction
WRITE_BATCH = 16  # finished records committed per store transaction...
FLUSH_S = 0.2  # ...or after this long, whichever comes first
CHECK_BATCH = 64  # input ids looked up in the store per query

RunOne = Callable[[MaskedExample], Awaitable[TrajectoryRecord]]
Durability = Literal["sync", "async", "exit"]


@dataclass(frozen=True)
class GenerateSettings:
    """How `generate` runs a batch (its options that are neither data nor collaborators)."""

    concurrency: int = 8  # examples run at the same time
    limit: int | None = None  # take only the first N input examples (a rerun resumes the same set)
    retry_failed: bool = False  # redo ids whose stored record failed (others stored are skipped)
    total: int | None = None  # input size, for the progress bar
    progress: bool = True  # tqdm bar
    keep_checkpoints: bool = False  # keep finished examples' checkpoint threads
    # the checkpointer (`graph.checkpoint.open_checkpointer`): sqlite:///…, postgres://…, memory
    checkpointer_url: str | None = "memory"
    # when LangGraph writes each example's checkpoints (docs/pipeline.md, "Durability"): `exit`
    # (once, when the example ends; cheapest; an example killed mid-run restarts from its first
    # step), `sync` (after every step, before the next: a killed example resumes at its last
    # step), `async` (every step, overlapped with the next)
    durability: Durability = "exit"
    # keyword arguments for `build_graph` (e.g. `retry_policy`, `node_timeout_s`; the graph is
    # compiled for the Context's `agent_mode` alone, without the `messages` chat view, and
    # without the review node unless the Context has `review_queries`)
    graph_options: Mapping[str, Any] = field(default_factory=dict)
    # `FailureStreak`: stop when the first N finished examples all failed the same way (a wrong
    # key, an unknown model, no server); 0 never stops early
    stop_after_failures: int = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")

    def pool(self) -> PoolSettings:
        return PoolSettings(
            concurrency=self.concurrency,
            limit=self.limit,
            total=self.total,
            progress=self.progress,
            desc="generate",
            unit="ex",
            write_batch=WRITE_BATCH,
            flush_s=FLUSH_S,
            check_batch=CHECK_BATCH,
        )


async def generate(
    examples: Iterable[MaskedExample],
    context: Context | None,
    store: RecordStore | str | Path,
    settings: GenerateSettings | None = None,
    *,
    stop: asyncio.Event | None = None,
    run_one: RunOne | None = None,
    summary: Summary | None = None,
    limiter: Limiter | None = None,
    resources: Resources | None = None,
) -> Summary:
    """Run the graph over `examples` on the worker pool; write each record to `store`.

    - `settings`: concurrency, limit, retries, checkpointer, durability, … (`GenerateSettings`).
    - `stop`: when set, no new example is started; in-flight ones finish and are written.
    - `run_one`: override the per-example runner (tests, benchmarks); by default the graph from
      `masksearch.graph.build_graph` with the checkpointer opened from the settings' URL.
    - `resources`: the `Resources` serving the Context's model and retriever specs (the caller's:
      one per CLI invocation or Ray worker); default a fresh one for this call.
    - `limiter`: rate limits every model call goes through (`pipeline.ratelimit`: this
      process's, or the run's shared Ray actor).
    Returns a `Summary`; a `summary` passed in is filled in place (so a caller sees partial
    counts even if this coroutine is cancelled).
    """
    settings = settings or GenerateSettings()
    own_store = isinstance(store, str | Path)
    st: RecordStore = open_store(store) if isinstance(store, str | Path) else store
    summary = summary if summary is not None else Summary()
    stop = stop or asyncio.Event()
    try:
        if run_one is not None:
            await _run_batch(examples, st, run_one, settings, stop, summary)
            return summary
        if context is None:
            raise ValueError("generate needs a Context to run the graph (or a run_one)")
        from masksearch.graph import build_graph
        from masksearch.graph.checkpoint import open_checkpointer
        from masksearch.graph.runner import run_example

        res = resources if resources is not None else Resources()
        models = await res.warm_up(context)
        detach = _limit_models(models, limiter, context) if limiter is not None else None
        async with open_checkpointer(settings.checkpointer_url or "memory") as saver:
            options = {
                "agent_mode": context.agent_mode,
                "review": context.review_queries,
                "chat": False,  # records come from rounds and steps: no chat view to keep
                **settings.graph_options,
            }
            graph = build_graph(checkpointer=saver, resources=res, **options)
            if not settings.keep_checkpoints:
                await sweep_finished_threads(saver, st)

            async def _graph_run(ex: MaskedExample) -> TrajectoryRecord:
                return await run_example(graph, ex, context, durability=settings.durability)

            try:
                await _run_batch(examples, st, _graph_run, settings, stop, summary, saver, context)
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


async def _run_batch(
    examples: Iterable[MaskedExample],
    store: RecordStore,
    run_one: RunOne,
    settings: GenerateSettings,
    stop: asyncio.Event,
    summary: Summary,
    saver: Any = None,
    context: Context | None = None,
) -> None:
    """The pool over `examples`: each record is encoded by the worker that made it, committed
    to the store in batches, then its checkpoint thread is deleted (failed threads are kept so
    that a retry can resume from the last good step). A kill before the commit loses nothing:
    the next run rebuilds each finished record from its final checkpoint, with no model call."""
    forget = saver is not None and not settings.keep_checkpoints
    streak = FailureStreak(settings.stop_after_failures)  # a wrong key or model: stop early
    stopped: list[RunStopped] = []
    finished_threads: list[str | None] = []

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

    async def work(ex: MaskedExample) -> tuple[TrajectoryRecord, dict[str, Any]]:
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
        if not stopped:
            try:
                streak.observe(record)
            except RunStopped as e:  # the run stops: nothing new starts, this record is kept
                stopped.append(e)
                stop.set()
        return record, encode(ex, record)

    async def commit(
        batch: list[tuple[MaskedExample, tuple[TrajectoryRecord, dict[str, Any]]]],
    ) -> None:
        written = store.write_rows([row for _, (_, row) in batch])
        for (_, (record, _)), ok in zip(batch, written, strict=True):
            if ok:
                summary.add(record)
            else:
                summary.not_written += 1
            if forget and record["status"] != "failed":
                finished_threads.append(record.get("thread_id"))
        if len(finished_threads) >= FORGET_BATCH:
            threads, finished_threads[:] = list(finished_threads), []
            await _forget_threads(saver, threads)

    def postfix() -> dict[str, Any]:
        return {"accept": f"{summary.accept_rate:.0%}", "failed": summary.failed}

    try:
        await run_pool(
            examples,
            work,
            commit,
            settings.pool(),
            key=lambda ex: ex.id,
            done_among=lambda ids: store.done_among(ids, retry_failed=settings.retry_failed),
            stop=stop,
            counts=summary,
            postfix=postfix,
        )
    finally:
        if finished_threads and saver is not None:
            await _forget_threads(saver, finished_threads)
    if stopped:
        raise stopped[0]


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
