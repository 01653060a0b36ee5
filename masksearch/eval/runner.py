"""Evaluate methods on benchmarks on the worker pool (`workers.pool`), resumable per question.

`DIR/results.jsonl` gets one line per (label, method, dataset, id), appended as each question
finishes (a crash loses at most the questions in flight). The label names the model
configuration (`eval.config`), so several models share a directory. A re-run skips keys already
there (only when they ran with the same settings: rows carry their configuration fingerprint);
`retry_failed` re-runs failed ones and then compacts the file to one line per key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from masksearch.errors import ConfigError, InputError
from masksearch.eval.config import Variant, context_settings, row_label
from masksearch.eval.items import EvalItem
from masksearch.eval.judge import LLMJudge
from masksearch.eval.methods import Method, timed
from masksearch.eval.scoring import score_prediction, zero_scores
from masksearch.jsonl import JsonlAppender, iter_jsonl, write_jsonl
from masksearch.workers.pool import PoolSettings, run_pool

log = logging.getLogger(__name__)
RESULTS = "results.jsonl"
Key = tuple[str, str, str, str]


def result_key(row: Mapping[str, Any]) -> Key:
    """(label, method, dataset, id)."""
    return row_label(row), str(row["method"]), str(row["dataset"]), str(row["id"])


def variant_of(method: Method) -> Variant:
    """The method's `Variant` (set by `eval run`; else labelled by its model spec)."""
    variant = getattr(method, "variant", None)
    if variant is None:
        variant = Variant(method.name, method.model, context_settings(method.context))
    return variant


def read_results(out_dir: str | Path) -> dict[Key, dict[str, Any]]:
    """Rows of `results.jsonl`, last one per key. An unterminated last line (a crash mid-write)
    is ignored; any other bad line is a located error."""
    return read_result_file(Path(out_dir) / RESULTS)


def read_result_file(path: Path) -> dict[Key, dict[str, Any]]:
    """`read_results` of one file (`results.jsonl` or a Ray worker's part of it)."""
    rows: dict[Key, dict[str, Any]] = {}
    if not path.exists():
        return rows
    torn_line = _torn_last_line(path)
    try:
        for _, row in iter_jsonl(path, required=("method", "dataset", "id"), allow_empty=True):
            rows[result_key(row)] = row
    except InputError as e:
        if torn_line is None or e.line != torn_line:
            raise
    return rows


def _torn_last_line(path: Path) -> int | None:
    """Line number of an unterminated last line, or None when the file ends with a newline."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return None
        fh.seek(-1, 2)
        if fh.read(1) == b"\n":
            return None
        fh.seek(0)
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) + 1


@dataclass
class RunStats:
    done_before: int = 0
    ran: int = 0
    failed: int = 0
    skipped_failed: int = 0
    per_method: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False  # Ray workers stopped by a signal (rerun to resume)

    def add(self, other: RunStats) -> None:
        """Add a Ray worker's counts."""
        self.done_before += other.done_before
        self.ran += other.ran
        self.failed += other.failed
        self.skipped_failed += other.skipped_failed
        for name, n in other.per_method.items():
            self.per_method[name] = self.per_method.get(name, 0) + n


def result_row(
    method: Method, item: EvalItem, out: Any, latency: float, *, save_messages: bool = True
) -> dict[str, Any]:
    failed = out.status == "failed"
    variant = variant_of(method)
    row: dict[str, Any] = {
        "label": variant.label,
        **variant.tags,
        "method": method.name,
        "dataset": item.dataset,
        "id": item.id,
        "question": item.question,
        "golden_answers": item.golden_answers,
        "prediction": out.prediction,
        "response": out.response,
        "status": out.status,
        "error": out.error,
        "scores": zero_scores(item) if failed else score_prediction(out.prediction, item),
        "turns": out.turns,
        "search_calls": out.search_calls,
        "latency_s": latency,
        "usage": out.usage,
        "model": method.model,
        "config": variant.fingerprint,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if isinstance(item.metadata.get("answerable"), bool):  # the answerable-subset tables
        row["answerable"] = item.metadata["answerable"]
    if save_messages and out.messages is not None:
        row["messages"] = out.messages
    if save_messages and getattr(out, "calls", None) is not None:
        row["calls"] = out.calls
    return row


def pending_work(
    methods: Sequence[Method],
    datasets: Mapping[str, Sequence[EvalItem]],
    done: Mapping[Key, Mapping[str, Any]],
    *,
    retry_failed: bool = False,
    shard: tuple[int, int] | None = None,
) -> tuple[list[tuple[Method, EvalItem]], int, int]:
    """(questions to run, done before, failures kept); refuses a done row of other settings.
    `shard` (i, n): only the questions of Ray worker i of n (`key_shard`)."""
    todo: list[tuple[Method, EvalItem]] = []
    done_before = skipped_failed = 0
    for method in methods:
        variant = variant_of(method)
        for items in datasets.values():
            for item in items:
                key = (variant.label, method.name, item.dataset, item.id)
                if shard is not None and key_shard(key, shard[1]) != shard[0]:
                    continue
                prev = done.get(key)
                if prev is not None and prev.get("config") != variant.fingerprint:
                    raise ConfigError(
                        f"{method.name} [{variant.label}] {item.dataset}/{item.id} was run with "
                        "other settings; use another output directory or label"
                    )
                if prev is not None and not (retry_failed and prev.get("status") == "failed"):
                    done_before += 1
                    skipped_failed += prev.get("status") == "failed"
                    continue
                todo.append((method, item))
    return todo, done_before, skipped_failed


def key_shard(key: Key, shards: int) -> int:
    """The Ray worker (of `shards`) that runs a question: a stable hash of its key."""
    from masksearch.workers.cluster import shard_of

    return shard_of("\x1f".join(key), shards)


async def run_eval(
    methods: Sequence[Method],
    datasets: Mapping[str, Sequence[EvalItem]],
    out_dir: str | Path,
    *,
    concurrency: int = 8,
    judge: LLMJudge | None = None,
    retry_failed: bool = False,
    save_messages: bool = True,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    stop: asyncio.Event | None = None,
) -> RunStats:
    """Run every method on every item not yet in `out_dir/results.jsonl`.

    `shard` (i, n): run as Ray worker i of n: only its questions, appended to its own part file
    (`workers.cluster.part_path`) that the driver merges into `results.jsonl`. `stop` set:
    start no new question."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS
    done = read_results(out_dir)
    if shard is not None:
        from masksearch.workers.cluster import part_path

        path = part_path(path, shard[0])
        if path.exists():  # a restarted worker: what it wrote before counts as done
            done.update(read_result_file(path))
    stats = RunStats()
    with JsonlAppender(path) as appender:  # opening repairs a torn last line first
        todo, stats.done_before, stats.skipped_failed = pending_work(
            methods, datasets, done, retry_failed=retry_failed, shard=shard
        )
        if stats.skipped_failed:
            log.info(
                "%d earlier failures kept (use --retry-failed to re-run them)", stats.skipped_failed
            )

        async def work(job: tuple[Method, EvalItem]) -> dict[str, Any]:
            method, item = job
            out, latency = await timed(method, item)
            row = result_row(method, item, out, latency, save_messages=save_messages)
            if judge is not None and out.status == "failed":
                row["scores"]["judge"] = 0.0  # a failed question is not correct
            elif judge is not None:
                verdict = await judge.grade(item.question, item.golden_answers, out.prediction)
                row["scores"]["judge"] = verdict.score  # None (no clear verdict) is left out
                row["judge"] = {"model": judge.name, "raw": verdict.raw, "error": verdict.error}
            return row

        async def commit(batch: list[tuple[tuple[Method, EvalItem], dict[str, Any]]]) -> None:
            for (method, _), row in batch:
                appender.write(row)
                stats.ran += 1
                stats.failed += row["status"] == "failed"
                stats.per_method[method.name] = stats.per_method.get(method.name, 0) + 1

        settings = PoolSettings(
            concurrency=max(1, min(concurrency, len(todo) or 1)),
            total=len(todo),
            progress=progress,
            desc="eval",
            unit="q",
            write_batch=1,  # each row appended as its question finishes
        )
        await run_pool(
            todo, work, commit, settings, stop=stop, postfix=lambda: {"failed": stats.failed}
        )
    if retry_failed and stats.ran and shard is None:  # sharded: the driver, after merging
        compact_results(out_dir)
    return stats


def compact_results(out_dir: str | Path) -> int:
    """Rewrite `results.jsonl` atomically with one line per key (the last)."""
    rows = read_results(out_dir)
    return write_jsonl(Path(out_dir) / RESULTS, rows.values())
