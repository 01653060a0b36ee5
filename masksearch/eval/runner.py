"""Evaluate methods on benchmarks: bounded async concurrency, resumable per-question results.

`DIR/results.jsonl` gets one line per (method, dataset, id), appended as each question
finishes (a crash loses at most the questions in flight). A re-run skips keys already there;
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

from masksearch.eval.items import EvalItem
from masksearch.eval.judge import LLMJudge
from masksearch.eval.methods import Method, timed
from masksearch.eval.scoring import score_prediction, zero_scores
from masksearch.jsonl import JsonlAppender, iter_jsonl, write_jsonl

log = logging.getLogger(__name__)
RESULTS = "results.jsonl"
Key = tuple[str, str, str]


def result_key(row: Mapping[str, Any]) -> Key:
    return str(row["method"]), str(row["dataset"]), str(row["id"])


def read_results(out_dir: str | Path) -> dict[Key, dict[str, Any]]:
    """Rows of `results.jsonl`, last one per key (skipping a torn last line from a crash)."""
    path = Path(out_dir) / RESULTS
    rows: dict[Key, dict[str, Any]] = {}
    if not path.exists():
        return rows
    for _, row in iter_jsonl(path, required=("method", "dataset", "id"), allow_empty=True):
        rows[result_key(row)] = row
    return rows


@dataclass
class RunStats:
    done_before: int = 0
    ran: int = 0
    failed: int = 0
    skipped_failed: int = 0
    per_method: dict[str, int] = field(default_factory=dict)


def result_row(
    method: Method, item: EvalItem, out: Any, latency: float, *, save_messages: bool = True
) -> dict[str, Any]:
    failed = out.status == "failed"
    row: dict[str, Any] = {
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
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if save_messages and out.messages is not None:
        row["messages"] = out.messages
    return row


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
) -> RunStats:
    """Run every method on every item not yet in `out_dir/results.jsonl`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS
    stats = RunStats()
    with JsonlAppender(path) as appender:  # opening repairs a torn last line first
        done = read_results(out_dir)
        queue: asyncio.Queue[tuple[Method, EvalItem]] = asyncio.Queue()
        for method in methods:
            for items in datasets.values():
                for item in items:
                    prev = done.get((method.name, item.dataset, item.id))
                    if prev is not None and not (retry_failed and prev.get("status") == "failed"):
                        stats.done_before += 1
                        stats.skipped_failed += prev.get("status") == "failed"
                        continue
                    queue.put_nowait((method, item))
        total = queue.qsize()
        if stats.skipped_failed:
            log.info(
                "%d earlier failures kept (use --retry-failed to re-run them)", stats.skipped_failed
            )
        bar = _progress(total, progress)

        async def worker() -> None:
            while True:
                try:
                    method, item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                out, latency = await timed(method, item)
                row = result_row(method, item, out, latency, save_messages=save_messages)
                if judge is not None and out.status == "failed":
                    row["scores"]["judge"] = 0.0  # a failed question is not correct
                elif judge is not None:
                    verdict = await judge.grade(item.question, item.golden_answers, out.prediction)
                    row["scores"]["judge"] = verdict.score  # None (no clear verdict) is left out
                    row["judge"] = {"model": judge.name, "raw": verdict.raw, "error": verdict.error}
                appender.write(row)
                stats.ran += 1
                stats.failed += out.status == "failed"
                stats.per_method[method.name] = stats.per_method.get(method.name, 0) + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(failed=stats.failed, refresh=False)

        try:
            await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, total or 1)))))
        finally:
            if bar is not None:
                bar.close()
    if retry_failed and stats.ran:
        compact_results(out_dir)
    return stats


def compact_results(out_dir: str | Path) -> int:
    """Rewrite `results.jsonl` atomically with one line per key (the last)."""
    rows = read_results(out_dir)
    return write_jsonl(Path(out_dir) / RESULTS, rows.values())


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="eval", unit="q", dynamic_ncols=True)
