"""Sharded multi-process generation: P processes, each running `generate` on its share of ids.

One Python process runs every example's graph on one event loop. LangGraph spends ~5 ms of CPU
per example, and with many examples in flight each `await` waits behind the others' callbacks:
per-example latency grows with concurrency even below 50 % CPU (docs/pipeline.md). Splitting the
same total concurrency over processes keeps each loop short and uses every core.

Each process streams the whole input (so `limit` means the first N input examples, as in one
process) and keeps the ids whose stable hash falls in its shard; all write the same SQLite store
and checkpoint database (WAL; SQLite serialises the short write transactions). The shard of an id
never depends on timing, so a resumed run, even with another process count, finds every stored id
and every checkpoint thread.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

from masksearch.errors import MaskSearchError
from masksearch.pipeline.summary import Summary
from masksearch.types import MaskedExample


def shard_of(example_id: str, shards: int) -> int:
    """Stable shard index of an id (blake2b, independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b(example_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def take_shard(
    examples: Iterable[MaskedExample], shard: int, shards: int
) -> Iterator[MaskedExample]:
    return (ex for ex in examples if shard_of(ex.id, shards) == shard)


def merge(summaries: list[Summary]) -> Summary:
    """Add up per-process summaries (elapsed = the longest)."""
    out = Summary()
    for s in summaries:
        for name in (
            "done",
            "accepted",
            "failed",
            "turns",
            "prompt_tokens",
            "completion_tokens",
            "search_calls",
            "skipped_existing",
            "skipped_duplicate",
            "not_written",
        ):
            setattr(out, name, getattr(out, name) + getattr(s, name))
        out.by_status.update(s.by_status)
        out.fail_reasons.update(s.fail_reasons)
        for k, (d, a) in s.by_k.items():
            slot = out.by_k.setdefault(k, [0, 0])
            slot[0] += d
            slot[1] += a
        out.elapsed_s = max(out.elapsed_s, s.elapsed_s)
        out.interrupted = out.interrupted or s.interrupted
    if summaries:
        out.skipped_bad = summaries[0].skipped_bad  # every process reads every line
    return out


def generate_sharded(
    make_examples: Callable[[], Iterable[MaskedExample]],
    run_shard: Callable[[Iterable[MaskedExample], int, int], Summary],
    *,
    processes: int,
    limit: int | None = None,
    on_poll: Callable[[], None] | None = None,
) -> Summary:
    """Fork `processes` children; child i runs `run_shard(its examples, i, processes)`.

    `make_examples()` must return a fresh iterator in each child. `on_poll` is called about twice
    a second in the parent (e.g. to refresh a progress bar). A child's `MaskSearchError` (bad
    input) is re-raised here after every child has finished.
    """
    ctx = mp.get_context("fork")
    results = ctx.Queue()

    def child(shard: int) -> None:
        try:
            examples = make_examples()
            if limit is not None:
                examples = islice(examples, limit)
            results.put(
                (shard, run_shard(take_shard(examples, shard, processes), shard, processes), None)
            )
        except MaskSearchError as e:
            results.put((shard, None, (type(e).__name__, str(e))))
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises
            results.put((shard, None, ("RuntimeError", f"{type(e).__name__}: {e}")))

    procs = [ctx.Process(target=child, args=(i,), daemon=False) for i in range(processes)]
    for p in procs:
        p.start()
    got: dict[int, tuple[Summary | None, tuple[str, str] | None]] = {}
    try:
        while len(got) < processes:
            try:
                shard, summary, err = results.get(timeout=0.5)
                got[shard] = (summary, err)
            except Exception:  # queue.Empty
                if on_poll is not None:
                    on_poll()
                if all(not p.is_alive() for p in procs) and results.empty():
                    time.sleep(0.2)
                    if results.empty():
                        break
    except KeyboardInterrupt:  # children handle their own SIGINT (finish in-flight work)
        pass
    for p in procs:
        p.join()
    while not results.empty() and len(got) < processes:
        shard, summary, err = results.get()
        got[shard] = (summary, err)
    summaries = [s for s, _ in got.values() if s is not None]
    merged = merge(summaries)
    if len(got) < processes:  # a child died without reporting (killed)
        merged.interrupted = True
    errors = [e for _, e in got.values() if e is not None]
    if errors:
        from masksearch.errors import InputError

        name, message = errors[0]
        raise (InputError(message) if name == "InputError" else MaskSearchError(message))
    return merged


def store_count(path: str | Path) -> int:
    """Rows in a trajectory store (read-only; 0 before it exists)."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


__all__ = ["generate_sharded", "merge", "shard_of", "store_count", "take_shard"]
