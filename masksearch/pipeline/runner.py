"""Command-line driver around `generate`: signals (graceful Ctrl-C), export, printed summary."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from masksearch.errors import MaskSearchError
from masksearch.fileio import atomic_write_text
from masksearch.jsonl import SkipCounter
from masksearch.pipeline.generate import generate
from masksearch.pipeline.inputs import count_lines, iter_examples
from masksearch.pipeline.store import TrajectoryStore
from masksearch.pipeline.summary import Summary
from masksearch.redact import redact
from masksearch.types import MaskedExample

EXIT_INTERRUPTED = 130


def echo(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


async def generate_with_signals(
    examples: Iterable[MaskedExample],
    context: Any,
    store: TrajectoryStore,
    checkpointer_url: str,
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
            examples, context, store, checkpointer_url, stop=stop, summary=summary, **kwargs
        )
    except asyncio.CancelledError:
        summary.interrupted = True
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_generate(
    input: Path,
    store_path: Path,
    context: Any,
    checkpointer_url: str,
    *,
    concurrency: int = 8,
    limit: int | None = None,
    skip_bad: bool = False,
    retry_failed: bool = False,
    export: Path | None = None,
    export_all: bool = False,
    summary_json: Path | None = None,
    progress: bool = True,
    processes: int = 1,
) -> int:
    """Generate for a masked-data file into a store; print the summary; return an exit code.

    `processes` > 1 splits the examples by id hash over that many processes (see `parallel`),
    each running `ceil(concurrency / processes)` examples at a time.
    """
    check_generate_args(input, store_path, checkpointer_url, export, summary_json, limit)
    counter = SkipCounter()
    summary = Summary()
    error: Exception | None = None
    echo(
        f"generate: {input} -> {store_path} (concurrency {concurrency}"
        f"{f' over {processes} processes' if processes > 1 else ''}, checkpoint "
        f"{_redact(checkpointer_url)})"
    )
    try:
        if processes > 1:
            summary = _run_processes(
                input,
                store_path,
                context,
                checkpointer_url,
                concurrency,
                limit,
                skip_bad,
                retry_failed,
                progress,
                processes,
            )
        else:
            with TrajectoryStore(store_path) as store:
                examples = iter_examples(input, skip_bad=skip_bad, counter=counter)
                total = count_lines(input) if progress else None
                asyncio.run(
                    generate_with_signals(
                        examples,
                        context,
                        store,
                        checkpointer_url,
                        summary,
                        concurrency=concurrency,
                        limit=limit,
                        retry_failed=retry_failed,
                        total=total,
                        progress=progress,
                    )
                )
            summary.skipped_bad = counter.skipped
    except MaskSearchError as e:  # bad input or config: report after saying what was kept
        error = e
        summary.skipped_bad = summary.skipped_bad or counter.skipped
    exported = None
    stats: dict[str, Any] = {}
    try:
        with TrajectoryStore(store_path) as store:
            stats = store.stats()
            if export is not None:
                exported = store.export_jsonl(export, accepted_only=not export_all)
    except MaskSearchError as e:  # the store keeps what it holds; report the first error
        error = error or e
    for line in counter.examples:
        echo(f"skipped bad input: {line}")
    echo(summary.format())
    if stats:
        echo(
            f"store: {store_path}  ({stats['count']} records, {stats['accepted']} accepted, "
            f"{', '.join(f'{s} {n}' for s, n in stats['by_status'].items()) or 'empty'})"
        )
    if exported is not None:
        echo(f"export: {export}  ({exported} {'records' if export_all else 'accepted records'})")
    if summary_json is not None:
        try:
            atomic_write_text(
                summary_json,
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
    store_path: Path,
    checkpointer_url: str,
    export: Path | None,
    summary_json: Path | None,
    limit: int | None,
) -> None:
    """Refuse a missing input, unwritable or non-regular outputs and impossible limits before
    any work starts (nothing is created for a command that cannot run)."""
    from masksearch.errors import ConfigError, InputError
    from masksearch.fileio import check_output_file

    if not Path(input).exists():
        raise InputError("file not found", path=str(input), field="--input")
    if Path(input).is_dir():
        raise InputError("is a directory, not a file", path=str(input), field="--input")

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1 (got {limit}); leave it out for no limit")
    check_output_file(store_path, what="--store")
    if checkpointer_url.startswith("sqlite:///"):
        from masksearch.graph.checkpoint import sqlite_path

        check_output_file(sqlite_path(checkpointer_url), what="--checkpoint")
    for path, what in ((export, "--export"), (summary_json, "--summary-json")):
        if path is not None:
            check_output_file(path, what=what)


def _run_processes(
    input: Path,
    store_path: Path,
    context: Any,
    checkpointer_url: str,
    concurrency: int,
    limit: int | None,
    skip_bad: bool,
    retry_failed: bool,
    progress: bool,
    processes: int,
) -> Summary:
    from masksearch.pipeline.parallel import generate_sharded, store_count

    per_process = -(-concurrency // processes)
    TrajectoryStore(store_path).close()  # create the tables before the children race to
    if checkpointer_url.startswith("sqlite:///"):
        from masksearch.graph.checkpoint import open_checkpointer

        async def _create() -> None:
            async with open_checkpointer(checkpointer_url):
                pass

        asyncio.run(_create())
    start = store_count(store_path)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = count_lines(input)
        bar = tqdm(
            total=min(total, limit) if (total and limit) else (limit or total),
            unit="ex",
            desc="generate",
            initial=start,
            dynamic_ncols=True,
        )

    def poll() -> None:
        if bar is not None:
            bar.n = store_count(store_path)
            bar.refresh()

    def run_shard(examples, shard: int, shards: int) -> Summary:
        summary = Summary()
        asyncio.run(
            generate_with_signals(
                examples,
                context,
                store_path,
                checkpointer_url,
                summary,
                concurrency=per_process,
                retry_failed=retry_failed,
                progress=False,
            )
        )
        summary.skipped_bad = counters["c"].skipped if "c" in counters else 0
        return summary

    counters: dict[str, SkipCounter] = {}

    def make_examples():
        counters["c"] = SkipCounter()
        return iter_examples(input, skip_bad=skip_bad, counter=counters["c"])

    try:
        return generate_sharded(
            make_examples, run_shard, processes=processes, limit=limit, on_poll=poll
        )
    finally:
        if bar is not None:
            poll()
            bar.close()


def _redact(url: str) -> str:
    """Hide a password in a postgres URL before printing it."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
