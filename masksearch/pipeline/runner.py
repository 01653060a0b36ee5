"""Command-line driver around `generate`: signals (graceful Ctrl-C), export, printed summary."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from masksearch.context import Context
from masksearch.errors import MaskSearchError
from masksearch.fileio import OutputKind, atomic_write_text
from masksearch.jsonl import SkipCounter
from masksearch.pipeline.generate import Durability, GenerateSettings, generate
from masksearch.pipeline.inputs import count_lines, iter_examples
from masksearch.pipeline.ratelimit import (
    Limiter,
    LocalLimiter,
    RateLimits,
    RayLimiter,
    start_shared_limiter,
)
from masksearch.pipeline.summary import Summary, merge
from masksearch.redact import redact
from masksearch.resources import Resources
from masksearch.store.trajectories import (
    RecordStore,
    check_is_trajectory_store,
    is_postgres,
    open_store,
    store_label,
)
from masksearch.types import MaskedExample
from masksearch.workers.cluster import (
    EXIT_INTERRUPTED,
    ClusterSettings,
    connect,
    run_sharded,
    take_shard,
    throttled,
)

T = TypeVar("T")


def echo(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` on uvloop when it is installed (as Ray's async actors do; opt out with
    `MASKSEARCH_UVLOOP=0`): the event loop's own share of an example's CPU (task switches, timer
    and callback scheduling, about 24 tasks per example) is cheaper there (docs/pipeline.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    if os.environ.get("MASKSEARCH_UVLOOP", "1") == "0":
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def generate_with_signals(
    examples: Iterable[MaskedExample],
    context: Context,
    store: RecordStore,
    settings: GenerateSettings,
    summary: Summary,
    **kwargs: Any,
) -> None:
    """`generate` with SIGINT/SIGTERM handling.

    First Ctrl-C: start nothing new, let in-flight examples finish and be written.
    Second Ctrl-C or SIGTERM: cancel in-flight examples (their checkpoints let the next run resume).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.current_task()
    assert task is not None  # called from a coroutine
    presses = 0

    def on_interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            stop.set()
            echo(
                "\ninterrupt: finishing the examples in flight (Ctrl-C again to stop now; "
                "they resume on the next run)"
            )
        else:
            echo("\ninterrupt: stopping now")
            task.cancel()

    def on_term() -> None:
        nonlocal presses
        presses = 1
        on_interrupt()

    installed = []
    for sig, handler in ((signal.SIGINT, on_interrupt), (signal.SIGTERM, on_term)):
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
            pass
    try:
        await generate(
            examples,
            context,
            store,
            settings,
            stop=stop,
            summary=summary,
            **kwargs,
        )
    except asyncio.CancelledError:
        summary.interrupted = True
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@dataclass(frozen=True)
class GenerateShard:
    """One worker's share of a `generate` run (picklable: it travels to Ray actors)."""

    input: Path
    store: str  # SQLite path or postgresql:// DSN
    context: Context
    checkpointer_url: str
    concurrency: int  # examples in flight in this worker
    limit: int | None = None  # the first N input examples (before sharding)
    skip_bad: bool = False
    retry_failed: bool = False
    durability: Durability = "exit"
    resources: Callable[[], Resources] = Resources  # makes the worker's Resources (runs there)
    limits: RateLimits | None = None  # limits for this worker alone (no shared limiter)
    limiter_actor: Any = None  # the run's shared Ray limiter actor (a handle)

    def limiter(self) -> Limiter | None:
        if self.limiter_actor is not None:
            return RayLimiter(self.limiter_actor)
        return LocalLimiter(self.limits) if self.limits else None

    async def __call__(self, shard: int, shards: int, stop: asyncio.Event) -> Summary:
        counter = SkipCounter()
        examples: Iterable[MaskedExample] = iter_examples(
            self.input, skip_bad=self.skip_bad, counter=counter
        )
        if self.limit is not None:
            examples = islice(examples, self.limit)
        summary = Summary()
        with open_store(self.store) as store, store.worker_lock():
            await generate(
                take_shard(examples, shard, shards),
                self.context,
                store,
                GenerateSettings(
                    checkpointer_url=self.checkpointer_url,
                    concurrency=self.concurrency,
                    retry_failed=self.retry_failed,
                    progress=False,
                    durability=self.durability,
                ),
                stop=stop,
                summary=summary,
                limiter=self.limiter(),
                resources=self.resources(),  # one per actor: an actor runs one shard job
            )
        summary.skipped_bad = counter.skipped
        return summary


@dataclass(frozen=True)
class RunSettings:
    """How `run_generate` runs (the options of `masksearch generate` that are neither data nor
    collaborators)."""

    concurrency: int = 8  # examples in flight (shared among the Ray workers)
    limit: int | None = None  # use only the first N input examples
    skip_bad: bool = False  # skip (and count) bad input lines instead of stopping
    retry_failed: bool = False  # redo examples whose stored record failed
    export: Path | None = None  # also write accepted records to this JSONL (atomic)
    export_all: bool = False  # export rejected and failed records too
    summary_json: Path | None = None  # write the run summary as JSON here
    progress: bool = True  # tqdm bar
    durability: Durability = "exit"  # when checkpoints are written (`GenerateSettings`)
    limits: RateLimits | None = None  # requests/s and tokens/min for the whole run


def run_generate(
    input: Path,
    store_path: Path | str,
    context: Context,
    checkpointer_url: str,
    settings: RunSettings | None = None,
    *,
    cluster: ClusterSettings | None = None,
    resources: Resources | None = None,
    worker_resources: Callable[[], Resources] = Resources,
) -> int:
    """Generate for a masked-data file into a store; print the summary; return an exit code.

    `store_path`: a SQLite file or a `postgresql://` DSN. `cluster`: run on Ray workers (the
    examples split by id hash, each worker running `ceil(concurrency / workers)` at a time;
    see `parallel`); None runs in this process. `settings.limits`: requests/s and tokens/min for
    the whole run (with `cluster`, one limiter actor shared by every worker). `resources` serves the
    models and retriever of a run in this process (default a fresh `Resources`);
    `worker_resources` (picklable) makes each Ray worker's own.
    """
    settings = settings or RunSettings()
    check_generate_args(
        input, store_path, checkpointer_url, settings.export, settings.summary_json, settings.limit
    )
    counter = SkipCounter()
    summary = Summary()
    error: Exception | None = None
    store_spec = str(store_path)
    where = ""
    if cluster is not None:
        where = f" over {cluster.workers} Ray workers" + (
            f" at {cluster.address}" if cluster.address else ""
        )
    echo(
        f"generate: {input} -> {store_label(store_spec)} (concurrency {settings.concurrency}{where}, "
        f"checkpoint {_redact(checkpointer_url)})"
    )
    if cluster is not None and cluster.address is not None and not is_postgres(store_spec):
        echo(
            "note: a SQLite store is a file on each node; if the workers run on more than one "
            "machine, use a postgresql:// store (docs/scale.md)"
        )
    try:
        with open_store(store_spec) as lock_store, lock_store.run_lock():
            if cluster is not None:
                summary = _run_cluster(
                    GenerateShard(
                        input=input,
                        store=store_spec,
                        context=context,
                        checkpointer_url=checkpointer_url,
                        concurrency=-(-settings.concurrency // cluster.workers),
                        limit=settings.limit,
                        skip_bad=settings.skip_bad,
                        retry_failed=settings.retry_failed,
                        durability=settings.durability,
                        limits=settings.limits,
                        resources=worker_resources,
                    ),
                    cluster,
                    settings.progress,
                )
            else:
                with open_store(store_spec) as store, store.worker_lock():
                    examples = iter_examples(input, skip_bad=settings.skip_bad, counter=counter)
                    total = count_lines(input) if settings.progress else None
                    run_async(
                        generate_with_signals(
                            examples,
                            context,
                            store,
                            GenerateSettings(
                                checkpointer_url=checkpointer_url,
                                concurrency=settings.concurrency,
                                limit=settings.limit,
                                retry_failed=settings.retry_failed,
                                total=total,
                                progress=settings.progress,
                                durability=settings.durability,
                            ),
                            summary,
                            limiter=LocalLimiter(settings.limits) if settings.limits else None,
                            resources=resources,
                        )
                    )
                summary.skipped_bad = counter.skipped
    except MaskSearchError as e:  # bad input or config: report after saying what was kept
        error = e
        summary.skipped_bad = summary.skipped_bad or counter.skipped
    exported = None
    stats: dict[str, Any] = {}
    try:
        with open_store(store_spec) as store:
            stats = store.stats()
            if settings.export is not None:
                exported = store.export_jsonl(
                    settings.export, accepted_only=not settings.export_all
                )
    except MaskSearchError as e:  # the store keeps what it holds; report the first error
        error = error or e
    for line in counter.examples:
        echo(f"skipped bad input: {line}")
    echo(summary.format())
    if stats:
        echo(
            f"store: {store_label(store_spec)}  ({stats['count']} records, "
            f"{stats['accepted']} accepted, {', '.join(f'{s} {n}' for s, n in stats['by_status'].items()) or 'empty'})"
        )
    if exported is not None:
        echo(
            f"export: {settings.export}  ({exported} {'records' if settings.export_all else 'accepted records'})"
        )
    if settings.summary_json is not None:
        try:
            atomic_write_text(
                settings.summary_json,
                redact(json.dumps({"run": summary.to_dict(), "store": stats}, indent=2)) + "\n",
            )
        except MaskSearchError as e:
            error = error or e
    if error is not None:
        raise error
    if summary.interrupted:
        echo("interrupted: rerun the same command to resume (finished records are kept).")
        return EXIT_INTERRUPTED
    return 0


def check_generate_args(
    input: Path,
    store_path: Path | str,
    checkpointer_url: str,
    export: Path | None,
    summary_json: Path | None,
    limit: int | None,
) -> None:
    """Refuse a missing input, unwritable or non-regular outputs and impossible limits before
    any work starts (nothing is created for a command that cannot run)."""
    from masksearch.errors import ConfigError
    from masksearch.fileio import check_input_file, check_output_file

    check_input_file(input, what="--input")

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1 (got {limit}); leave it out for no limit")
    outputs: dict[str, Path | str | None] = {
        "--store": None if is_postgres(store_path) else store_path,
        "--checkpoint": None,
        "--export": export,
        "--summary-json": summary_json,
    }
    if checkpointer_url.startswith("sqlite:"):
        from masksearch.graph.checkpoint import sqlite_path

        outputs["--checkpoint"] = sqlite_path(checkpointer_url)
    kinds: dict[str, OutputKind] = {
        "--store": "sqlite",
        "--checkpoint": "sqlite",
        "--export": "jsonl",
        "--summary-json": "json",
    }
    for what, path in outputs.items():
        if path is None:
            continue
        others = {k: v for k, v in outputs.items() if k != what and v is not None}
        check_output_file(path, what=what, inputs={"--input": input, **others}, kind=kinds[what])
    if outputs["--store"] is not None:
        check_is_trajectory_store(outputs["--store"])
    if outputs["--checkpoint"] is not None:
        from masksearch.graph.checkpoint import check_is_checkpoint_db

        check_is_checkpoint_db(outputs["--checkpoint"])


def _run_cluster(job: GenerateShard, cluster: ClusterSettings, progress: bool) -> Summary:
    """Run `job` on Ray workers with a progress bar fed from the store's row count (and the
    run's shared rate limiter, when it has limits)."""
    started = connect(cluster)
    try:
        if job.limits:
            job = replace(job, limiter_actor=start_shared_limiter(job.limits))
        return _run_cluster_connected(job, cluster, progress)
    finally:
        if started:
            import ray

            ray.shutdown()


def _run_cluster_connected(job: GenerateShard, cluster: ClusterSettings, progress: bool) -> Summary:
    if job.checkpointer_url != "memory":  # create the tables before the workers race to
        from masksearch.graph.checkpoint import open_checkpointer

        async def _create() -> None:
            async with open_checkpointer(job.checkpointer_url):
                pass

        asyncio.run(_create())
    with open_store(job.store) as store:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            total = count_lines(job.input)
            bar = tqdm(
                total=min(total, job.limit) if (total and job.limit) else (job.limit or total),
                unit="ex",
                desc="generate",
                initial=len(store),
                dynamic_ncols=True,
            )

        def poll() -> None:
            if bar is not None:
                bar.n = len(store)
                bar.refresh()

        try:
            result = run_sharded(job, cluster, on_poll=throttled(poll), echo=echo)
        finally:
            if bar is not None:
                poll()
                bar.close()
    summary = merge(list(result.values.values()))
    summary.interrupted = summary.interrupted or result.interrupted
    if result.restarts:
        echo(f"workers restarted after dying: {result.restarts}")
    return summary


_redact = store_label  # a checkpointer URL is printed the same way
