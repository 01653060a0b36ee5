"""The one async worker pool: `generate`, `eval run` and the LLM masking strategies run on it.

A producer reads the items (the first `limit`), skips those already done (`done_among`, asked
for a chunk of keys at a time) and those already in flight under the same key, and feeds a queue
bounded by the concurrency; `concurrency` workers take items from it and `await work(item)`.
Finished results are handed to `commit` in batches (`write_batch` results or every `flush_s`
seconds, whichever comes first; `write_batch=1` commits each as it finishes), and a key stays
"in flight" until its result is committed, so nothing runs twice within a run and memory is
bounded by the concurrency, the queue and one batch, not by the input.

Stopping: `stop` set, no new item starts (queued ones are left for the next run) and what is in
flight finishes and is committed. A bad input (the item iterator raises) lets the workers finish
what they hold, commits it, then raises. A failing `work` or `commit` stops everything (in-flight
items are cancelled) and raises. Cancelled (a second Ctrl-C, a Ray hard stop): the in-flight items
are cancelled, what had finished is committed, `interrupted` is set. Whatever happens, the
results that finished are committed before `run_pool` returns or raises.

Ray sharding (`workers.cluster`) runs one pool per worker process over its shard of the items.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "PoolCounts",
    "PoolSettings",
    "PoolStats",
    "chunks",
    "pool_map",
    "pool_map_sync",
    "run_pool",
]


@dataclass(frozen=True)
class PoolSettings:
    """How a batch runs on the pool."""

    concurrency: int = 8  # items run at the same time
    limit: int | None = None  # take only the first N input items
    total: int | None = None  # input size, for the progress bar
    progress: bool = True  # tqdm bar
    desc: str = "run"  # the bar's label...
    unit: str = "item"  # ...and unit
    write_batch: int = 16  # finished results committed together...
    flush_s: float = 0.2  # ...or after this long, whichever comes first
    check_batch: int = 64  # input keys looked up per `done_among` call

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")


class PoolCounts(Protocol):
    """What the pool counts as it runs (`PoolStats`, or a caller's summary with these fields,
    filled in place so that a caller sees partial counts even if the pool is cancelled)."""

    skipped_existing: int
    skipped_duplicate: int
    elapsed_s: float
    steady_s: float
    steady_done: int
    interrupted: bool


@dataclass
class PoolStats:
    skipped_existing: int = 0  # already done (`done_among`)
    skipped_duplicate: int = 0  # the same key again while the first copy was in flight
    elapsed_s: float = 0.0
    # the steady window: from when the first `concurrency` items had finished to the latest
    # start, and how many finished in it (throughput without the ramp-up and the tail)
    steady_s: float = 0.0
    steady_done: int = 0
    interrupted: bool = False


class _Run(Generic[T, R]):
    """One `run_pool` call's state: the queue, the in-flight keys, the unwritten results."""

    def __init__(
        self,
        settings: PoolSettings,
        work: Callable[[T], Awaitable[R]],
        commit: Callable[[list[tuple[T, R]]], Awaitable[None]],
        key: Callable[[T], Hashable] | None,
        done_among: Callable[[list[Any]], set[Any]] | None,
        stop: asyncio.Event,
        counts: PoolCounts,
        postfix: Callable[[], dict[str, Any]] | None,
    ) -> None:
        self.s, self.work, self.commit, self.key = settings, work, commit, key
        self.done_among, self.stop, self.counts, self.postfix = done_among, stop, counts, postfix
        self.queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize=settings.concurrency)
        self.in_flight: set[Hashable] = set()
        self.unwritten: list[tuple[T, R]] = []
        self.bar = _progress_bar(settings)
        self.t0 = time.perf_counter()
        self.finished = 0
        self.all_turned: tuple[float, int] | None = None
        self.last_start: tuple[float, int] = (0.0, 0)

    async def produce(self, items: Iterable[T]) -> None:
        try:
            source = items if self.s.limit is None else islice(items, self.s.limit)
            for chunk in chunks(source, self.s.check_batch):
                if self.stop.is_set():
                    break
                done: set[Any] = set()
                if self.done_among is not None and self.key is not None:
                    keys = {self.key(item) for item in chunk}
                    done = self.done_among(list(keys - self.in_flight))
                for item in chunk:
                    if self.stop.is_set():
                        break
                    k = self.key(item) if self.key is not None else None
                    if k is not None and k in self.in_flight:
                        self.counts.skipped_duplicate += 1
                        continue
                    if k is not None and k in done:
                        self.counts.skipped_existing += 1
                        if self.bar is not None:
                            self.bar.update(1)
                        continue
                    if k is not None:
                        self.in_flight.add(k)
                    await self.queue.put(item)
        except asyncio.CancelledError:  # workers are being cancelled too: no sentinels needed
            raise
        except BaseException:
            await self.finish()
            raise
        await self.finish()

    async def finish(self) -> None:
        for _ in range(self.s.concurrency):
            await self.queue.put(None)

    async def flush(self) -> None:
        if not self.unwritten:
            return
        batch, self.unwritten[:] = list(self.unwritten), []
        await self.commit(batch)
        if self.key is not None:
            for item, _ in batch:
                self.in_flight.discard(self.key(item))
        if self.bar is not None:
            self.bar.update(len(batch))
            if self.postfix is not None:
                self.bar.set_postfix(**self.postfix(), refresh=False)
        self.counts.elapsed_s = time.perf_counter() - self.t0

    async def flush_every(self) -> None:
        while True:
            await asyncio.sleep(self.s.flush_s)
            await self.flush()

    async def run_worker(self) -> None:
        while (item := await self.queue.get()) is not None:
            if self.stop.is_set():  # queued but not started: left for the next run
                if self.key is not None:
                    self.in_flight.discard(self.key(item))
                continue
            self.last_start = (time.perf_counter(), self.finished)
            result = await self.work(item)
            self.finished += 1
            if self.finished == self.s.concurrency:
                self.all_turned = (time.perf_counter(), self.finished)
            self.unwritten.append((item, result))
            if len(self.unwritten) >= self.s.write_batch:
                await self.flush()

    def close(self) -> None:
        c = self.counts
        c.elapsed_s = time.perf_counter() - self.t0
        c.interrupted = c.interrupted or self.stop.is_set()
        if self.all_turned is not None and self.last_start[0] > self.all_turned[0]:
            c.steady_s = self.last_start[0] - self.all_turned[0]
            c.steady_done = self.last_start[1] - self.all_turned[1]
        if self.bar is not None:
            self.bar.close()


async def run_pool(
    items: Iterable[T],
    work: Callable[[T], Awaitable[R]],
    commit: Callable[[list[tuple[T, R]]], Awaitable[None]],
    settings: PoolSettings,
    *,
    key: Callable[[T], Hashable] | None = None,
    done_among: Callable[[list[Any]], set[Any]] | None = None,
    stop: asyncio.Event | None = None,
    counts: PoolCounts | None = None,
    postfix: Callable[[], dict[str, Any]] | None = None,
) -> PoolCounts:
    """Run `work` over `items` with `settings.concurrency` workers; `commit` the results.

    - `key`: an item's identity: an item whose key is in flight is skipped as a duplicate, and
      `done_among(keys)` (needs `key`) names the keys already done, which are skipped.
    - `commit(batch)`: make a batch of (item, result) durable; an error in it stops the run.
    - `stop`: when set, no new item starts; in-flight ones finish and are committed.
    - `counts`: filled in place (default a fresh `PoolStats`); returned.
    - `postfix`: the progress bar's postfix after each commit (e.g. accept rate, failures).
    """
    counts = counts if counts is not None else PoolStats()
    run = _Run(settings, work, commit, key, done_among, stop or asyncio.Event(), counts, postfix)
    flusher = asyncio.create_task(run.flush_every())
    producer = asyncio.create_task(run.produce(items))
    workers = [asyncio.create_task(run.run_worker()) for _ in range(settings.concurrency)]
    tasks = [producer, *workers]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        broken = [t for t in done if t is not producer and t.exception() is not None]
        if broken:  # a worker hit a fatal error (e.g. the store's disk is full): stop everything
            run.stop.set()
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise broken[0].exception() or RuntimeError("worker failed")
        if pending:  # the producer stopped on bad input: let the workers finish what they hold
            await asyncio.gather(*pending)
        if (error := producer.exception()) is not None:
            raise error
    except asyncio.CancelledError:
        counts.interrupted = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        try:
            await run.flush()  # what finished before a stop, an error or a cancel is committed
        finally:
            run.close()
    return counts


async def pool_map(
    items: Iterable[T], work: Callable[[T], Awaitable[R]], settings: PoolSettings
) -> list[R]:
    """`[await work(item) for item in items]` on the pool: `settings.concurrency` at a time,
    results in input order."""
    indexed = list(enumerate(items))
    results: dict[int, R] = {}

    async def run_one(pair: tuple[int, T]) -> R:
        return await work(pair[1])

    async def keep(batch: list[tuple[tuple[int, T], R]]) -> None:
        for (i, _), result in batch:
            results[i] = result

    await run_pool(indexed, run_one, keep, settings)
    return [results[i] for i, _ in indexed]


def pool_map_sync(
    items: Iterable[T], work: Callable[[T], Awaitable[R]], settings: PoolSettings
) -> list[R]:
    """`pool_map` from synchronous code (on a thread of its own when this one runs a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(pool_map(items, work, settings))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as executor:
        return executor.submit(asyncio.run, pool_map(items, work, settings)).result()


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
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


def _progress_bar(settings: PoolSettings) -> Any:
    if not settings.progress:
        return None
    from tqdm.auto import tqdm

    total = settings.total
    if settings.limit is not None:
        total = min(total, settings.limit) if total is not None else settings.limit
    return tqdm(total=total, unit=settings.unit, desc=settings.desc, dynamic_ncols=True)
