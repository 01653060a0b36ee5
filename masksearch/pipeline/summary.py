"""Run summary for batch generation: counts, accept rate, failure reasons, per-k, usage, throughput."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from masksearch.quality import QualityReport
from masksearch.records import TrajectoryRecord


def failure_reason(error: str | None) -> str:
    """A short, groupable reason: the error's first line, at most 120 characters."""
    first = (
        (error or "unknown error").strip().splitlines()[0]
        if (error or "").strip()
        else "unknown error"
    )
    return first[:120]


def reject_reason(record: TrajectoryRecord) -> str:
    """Why a finished trajectory was not accepted: no answer, or how many masked spans it got."""
    if record.get("status") != "answered":
        return f"no answer ({record.get('status', '?')})"
    scores = record.get("scores") or {}
    k = len(record.get("answers") or [])
    if "span_recall" in scores and k:
        return f"answer judged wrong: {round(float(scores['span_recall']) * k)}/{k} spans right"
    if "judge" in scores:
        return "rejected by the LLM judge"
    return "answer judged wrong"


def count_turns(record: TrajectoryRecord) -> int:
    """Agent turns in a record: `meta.turns` when the graph sets it, else assistant messages."""
    turns = (record.get("meta") or {}).get("turns")
    if isinstance(turns, int):
        return turns
    return sum(1 for m in record.get("messages", []) if m.get("role") == "assistant")


@dataclass
class Summary:
    """What one `generate` call did (only records written by this call are counted)."""

    done: int = 0
    accepted: int = 0
    failed: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_k: dict[int, list[int]] = field(default_factory=dict)  # k -> [done, accepted]
    fail_reasons: Counter[str] = field(default_factory=Counter)
    reject_reasons: Counter[str] = field(default_factory=Counter)  # finished but not accepted
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    search_calls: int = 0
    skipped_existing: int = 0  # already in the store (resume)
    skipped_duplicate: int = 0  # same id twice in the input
    skipped_bad: int = 0  # bad input lines skipped with --skip-bad
    not_written: int = 0  # a finished record for the id was already stored (kept)
    elapsed_s: float = 0.0
    interrupted: bool = False
    # while every worker slot was busy: from the moment the first `concurrency` examples had
    # finished (each slot started over once) to the last example's start (the input ran out)
    steady_done: int = 0  # examples finished in that window
    steady_s: float = 0.0  # its length
    quality: QualityReport = field(default_factory=QualityReport)  # data quality by task and k

    def add(self, record: TrajectoryRecord) -> None:
        self.done += 1
        acc = bool(record.get("accepted"))
        self.accepted += acc
        status = record.get("status", "failed")
        self.by_status[status] += 1
        if status == "failed":
            self.failed += 1
            self.fail_reasons[failure_reason(record.get("error"))] += 1
        elif not acc:
            self.reject_reasons[reject_reason(record)] += 1
        k = int((record.get("meta") or {}).get("k", 0) or 0)
        slot = self.by_k.setdefault(k, [0, 0])
        slot[0] += 1
        slot[1] += acc
        self.turns += count_turns(record)
        usage = record.get("usage") or {}
        self.prompt_tokens += int(usage.get("prompt_tokens", 0) or 0)
        self.completion_tokens += int(usage.get("completion_tokens", 0) or 0)
        self.search_calls += int(usage.get("search_calls", 0) or 0)
        self.quality.add(record)

    @property
    def accept_rate(self) -> float:
        return self.accepted / self.done if self.done else 0.0

    @property
    def mean_turns(self) -> float:
        return self.turns / self.done if self.done else 0.0

    @property
    def throughput(self) -> float:
        """Examples per second of wall time."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def steady_throughput(self) -> float:
        """Examples per second while every slot was busy (no start-up or end-of-input tail);
        0 when the run was too short to have such a window."""
        return self.steady_done / self.steady_s if self.steady_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "accepted": self.accepted,
            "accept_rate": round(self.accept_rate, 4),
            "failed": self.failed,
            "by_status": dict(self.by_status),
            "by_k": {str(k): {"done": d, "accepted": a} for k, (d, a) in sorted(self.by_k.items())},
            "fail_reasons": dict(self.fail_reasons.most_common(10)),
            "reject_reasons": dict(self.reject_reasons.most_common(10)),
            "mean_turns": round(self.mean_turns, 3),
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "search_calls": self.search_calls,
            "skipped": {
                "existing": self.skipped_existing,
                "duplicate": self.skipped_duplicate,
                "bad_input": self.skipped_bad,
                "already_stored": self.not_written,
            },
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_per_s": round(self.throughput, 4),
            "steady_throughput_per_s": round(self.steady_throughput, 4),
            "interrupted": self.interrupted,
            "quality": self.quality.to_dict(),
        }

    def format(self) -> str:
        """Human-readable multi-line summary."""
        lines = [
            f"done {self.done}  accepted {self.accepted} ({self.accept_rate:.1%})  failed {self.failed}"
            + ("  [interrupted]" if self.interrupted else ""),
            f"status: {', '.join(f'{s} {n}' for s, n in sorted(self.by_status.items())) or '-'}",
            "by k: "
            + (", ".join(f"k={k} {a}/{d}" for k, (d, a) in sorted(self.by_k.items())) or "-"),
            f"mean turns (search rounds) {self.mean_turns:.2f}  tokens {self.prompt_tokens} prompt + "
            f"{self.completion_tokens} completion  searches {self.search_calls}",
            f"time {self.elapsed_s:.1f}s  throughput {self.throughput:.3f} examples/s",
        ]
        skipped = [
            (n, what)
            for n, what in (
                (self.skipped_existing, "already in store"),
                (self.skipped_duplicate, "duplicate ids in input"),
                (self.skipped_bad, "bad input lines"),
                (self.not_written, "finished record already stored"),
            )
            if n
        ]
        if skipped:
            lines.append("skipped: " + ", ".join(f"{n} {what}" for n, what in skipped))
        if self.quality.groups:
            lines.append("data quality (masksearch.quality):")
            lines += self.quality.format()
        if self.fail_reasons:
            lines.append("top failure reasons:")
            lines += [f"  {n} x {reason}" for reason, n in self.fail_reasons.most_common(5)]
        if self.reject_reasons:
            lines.append("not accepted:")
            lines += [f"  {n} x {reason}" for reason, n in self.reject_reasons.most_common(5)]
        if self.done and self.accept_rate < 0.2:
            lines.append(
                "note: few trajectories passed the acceptance filter (every masked span right, in order; "
                "then the LLM judge if set). Small local models often name the wrong passage or "
                "copy the wrong words; the reasons above say which. A stronger model (--model) "
                "raises the rate."
            )
        return "\n".join(lines)


def merge(summaries: list[Summary]) -> Summary:
    """Add up per-worker summaries (elapsed = the longest)."""
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
        out.quality.merge(s.quality)
        for k, (d, a) in s.by_k.items():
            slot = out.by_k.setdefault(k, [0, 0])
            slot[0] += d
            slot[1] += a
        out.elapsed_s = max(out.elapsed_s, s.elapsed_s)
        out.interrupted = out.interrupted or s.interrupted
    # steady throughput: the workers' rates add up
    rate = sum(s.steady_throughput for s in summaries)
    out.steady_done = sum(s.steady_done for s in summaries)
    out.steady_s = out.steady_done / rate if rate > 0 else 0.0
    if summaries:
        out.skipped_bad = summaries[0].skipped_bad  # every worker reads every line
    return out
