"""docs/results.md for the cpu-small recipe: the paper-layout table with sample sizes and
bootstrap 95 % intervals, the held-out RAMP accuracy per k, the diagnostics that explain a row
(format failures, searches per question), the commit and the exact commands that ran.

    python recipes/cpu-small/table.py --work runs/cpu-small --out docs/results.md
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from masksearch.errors import MaskSearchError  # noqa: E402
from masksearch.eval.aggregate import bootstrap_ci  # noqa: E402
from masksearch.prompts import RAG_PE_USER  # noqa: E402
from masksearch.scoring import is_no_answer, normalize_answer  # noqa: E402

# RAG-PE's user prompt around its documents: "Retrieved documents:\n", then "\n\nQuestion: …"
_RAG_HEAD, _RAG_TAIL = RAG_PE_USER.template.split("$docs", 1)
_RAG_AFTER_DOCS = _RAG_TAIL.split("$question", 1)[0]

# table columns: (title, datasets whose rows count, answerable only)
COLUMNS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("SQuAD test", ("squad_test",), False),
    ("SQuAD test, answerable", ("squad_test",), True),
    ("NQ-open", ("nq_open",), False),
    ("NQ-open, answerable", ("nq_open", "nq_open_answerable"), True),
)
ROWS = (  # (title, method, pre-train, post-train) in the paper's order
    ("RAG-PE", "rag-pe", None, None),
    ("Agent-PE", "agent-pe", None, None),
    ("Untrained agent (base, MaskSearch format)", "masksearch", None, None),
    ("Distilled Search-R1 (QA-SFT)", "masksearch", None, "SFT"),
    ("MaskSearch SFT/SFT", "masksearch", "SFT", "SFT"),
    ("MaskSearch SFT/SFT + RL", "masksearch", "SFT", "SFT+RL"),
)


def _stage(v: Any) -> str | None:
    return str(v) if v not in (None, "", "-", "–") else None


def _score(row: Mapping[str, Any], metric: str) -> float:
    return float((row.get("scores") or {}).get(metric) or 0.0)


def _mean(rows: Iterable[Mapping[str, Any]], metric: str) -> float | None:
    """The metric's mean ×100 over the rows (None for none)."""
    vals = [_score(r, metric) for r in rows]
    return 100.0 * sum(vals) / len(vals) if vals else None


def cell(rows: Iterable[Mapping[str, Any]], metric: str) -> tuple[int, float | None, Any]:
    rows = list(rows)
    if not rows:
        return 0, None, None
    return len(rows), _mean(rows, metric), bootstrap_ci(_score(r, metric) for r in rows)


def select(rows: Iterable[Mapping[str, Any]], method: str, pre: Any, post: Any) -> list[dict]:
    return [
        dict(r)
        for r in rows
        if r.get("method") == method
        and _stage(r.get("pre_train")) == pre
        and _stage(r.get("post_train")) == post
    ]


def column_rows(rows: list[dict], datasets: tuple[str, ...], answerable: bool) -> list[dict]:
    out = [r for r in rows if r.get("dataset") in datasets]
    if answerable:
        out = [r for r in out if r.get("answerable") is True]
    else:  # the full-distribution column: the random sample only
        out = [r for r in out if r.get("dataset") == datasets[0]]
    return out


def fmt(n: int, mean: float | None, ci: Any, *, signed: bool = False) -> str:
    if mean is None:
        return "–"
    f = "+.1f" if signed else ".1f"
    return f"{mean:{f}} [{ci[0]:{f}}, {ci[1]:{f}}] (n={n})"


def results_table(rows: list[dict], metric: str) -> str:
    head = ["Method", "Pre-train", "Post-train", *(c[0] for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(COLUMNS)]
    for title, method, pre, post in ROWS:
        mine = select(rows, method, pre, post)
        if not mine:
            continue
        cells = [fmt(*cell(column_rows(mine, ds, ans), metric)) for _, ds, ans in COLUMNS]
        lines.append(f"| {title} | {pre or '–'} | {post or '–'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# the comparisons the experiment is about: (row, against), by their titles in ROWS
PAIRS = (
    ("MaskSearch SFT/SFT", "Agent-PE"),
    ("MaskSearch SFT/SFT", "RAG-PE"),
    ("MaskSearch SFT/SFT", "Distilled Search-R1 (QA-SFT)"),
    ("Distilled Search-R1 (QA-SFT)", "Agent-PE"),
    ("MaskSearch SFT/SFT", "Untrained agent (base, MaskSearch format)"),
    ("MaskSearch SFT/SFT + RL", "MaskSearch SFT/SFT"),
    ("MaskSearch SFT/SFT + RL", "Agent-PE"),
)


def paired_table(rows: list[dict], metrics: tuple[str, ...] = ("recall", "f1")) -> str:
    """Row minus row on the questions both answered (paired by dataset and id): the mean
    difference ×100 with its bootstrap 95 % interval, per column. Pairing removes the spread
    between questions, so these intervals are narrower than the two rows' own."""
    by_title = {t: select(rows, m, pre, post) for t, m, pre, post in ROWS}
    head = ["Difference", "metric", *(c[0] for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
    for a, b in PAIRS:
        if not by_title.get(a) or not by_title.get(b):
            continue
        for metric in metrics:
            cells = []
            for _, ds, ans in COLUMNS:
                theirs = {(r["dataset"], r["id"]): r for r in column_rows(by_title[b], ds, ans)}
                diffs = [
                    _score(r, metric) - _score(theirs[(r["dataset"], r["id"])], metric)
                    for r in column_rows(by_title[a], ds, ans)
                    if (r["dataset"], r["id"]) in theirs
                ]
                mean = 100.0 * sum(diffs) / len(diffs) if diffs else None
                cells.append(fmt(len(diffs), mean, bootstrap_ci(diffs), signed=True))
            lines.append(f"| {a} − {b} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _retrieved(m: Any) -> str:
    """What a message or call holds of retrieved text: a search's results (a tool message, or a
    multi-agent run's `search` call), or the documents RAG-PE puts in its one user prompt."""
    if not isinstance(m, Mapping):
        return ""
    if m.get("agent") == "search":
        return str(m.get("output") or "")
    text = str(m.get("content") or "")
    if m.get("role") == "tool":
        return re.sub(r"</?information>", " ", text)
    if m.get("role") == "user" and text.startswith(_RAG_HEAD):
        return text[len(_RAG_HEAD) :].split(_RAG_AFTER_DOCS, 1)[0]
    return ""


def gold_in_results(row: Mapping[str, Any]) -> bool:
    """Did the retrieved text this question's model read hold a gold answer (normalized, as a
    substring)? Separates "the search failed" from "the answer copied the wrong span"."""
    read = [*(row.get("messages") or []), *(row.get("calls") or [])]
    seen = " ".join(normalize_answer(_retrieved(m)) for m in read)
    golds = row.get("golden_answers") or []
    golds = [golds] if isinstance(golds, str) else golds
    return any((g := normalize_answer(str(a))) and f" {g} " in f" {seen} " for a in golds)


def diagnostics(rows: list[dict]) -> str:
    lines = [
        "| Method | Pre-train | Post-train | questions | no answer (%) | answer words: mean (median) "
        "| failed | searches / question | turns / question | gold in results (%) | recall there "
        "| recall elsewhere | mean latency (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for title, method, pre, post in ROWS:
        mine = select(rows, method, pre, post)
        if not mine:
            continue
        n = len(mine)
        # no answer as the scores count it (a `...` placeholder or a copied prompt example
        # included); an answer's length in normalized words beside it: token recall credits
        # every gold token an answer holds, so a long answer gains recall that F1 takes back
        no_answer = sum(1 for r in mine if is_no_answer(r.get("prediction")))
        lengths = [len(normalize_answer(str(r.get("prediction") or "")).split()) for r in mine]
        words = f"{sum(lengths) / n:.1f} ({median(lengths):g})"
        failed = sum(1 for r in mine if r.get("status") == "failed")
        searches = sum(int(r.get("search_calls") or 0) for r in mine) / n
        turns = sum(int(r.get("turns") or 0) for r in mine) / n
        latency = sum(float(r.get("latency_s") or 0) for r in mine) / n
        hit = [gold_in_results(r) for r in mine]
        found = [r for r, h in zip(mine, hit, strict=True) if h]
        missed = [r for r, h in zip(mine, hit, strict=True) if not h]
        there, elsewhere = (_mean(rs, "recall") for rs in (found, missed))
        lines.append(
            f"| {title} | {pre or '–'} | {post or '–'} | {n} | {100 * no_answer / n:.1f} | "
            f"{words} | {failed} | {searches:.2f} | {turns:.2f} | {100 * len(found) / n:.1f} | "
            + " | ".join("–" if v is None else f"{v:.1f}" for v in (there, elsewhere))
            + f" | {latency:.1f} |"
        )
    return "\n".join(lines)


def ramp_table(work: Path) -> str:
    from masksearch.scoring import span_recall
    from masksearch.training.data import iter_training_records, record_k

    lines = [
        "| Student | examples | accepted [95 % CI] | k=1 | k=2 | k=3 | k=4 | masks recovered "
        "[95 % CI] | no answer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("base", "qa-sft", "ramp-qa-sft", "ramp-qa-sft-rl"):
        store = work / "ramp-heldout" / f"{name}.sqlite"
        if not store.is_file():
            continue
        recs = list(iter_training_records(store, accepted_only=False))
        if not recs:
            continue
        acc = [1.0 if r["accepted"] else 0.0 for r in recs]
        ci = bootstrap_ci(acc)
        per_k = []
        for k in (1, 2, 3, 4):
            ks = [a for a, r in zip(acc, recs, strict=True) if record_k(r) == k]
            per_k.append(f"{100 * sum(ks) / len(ks):.0f} ({len(ks)})" if ks else "–")
        no_answer = sum(1 for r in recs if is_no_answer(r["final_answer"]))
        # partial credit: the share of an example's masks its answer recovered, in order
        spans = [span_recall(r["final_answer"], r["answers"]) for r in recs]
        sci = bootstrap_ci(spans)
        assert ci is not None and sci is not None  # recs is not empty
        lines.append(
            f"| {name} | {len(recs)} | {100 * sum(acc) / len(acc):.1f} "
            f"[{ci[0]:.1f}, {ci[1]:.1f}] | " + " | ".join(per_k) + f" | "
            f"{100 * sum(spans) / len(spans):.1f} [{sci[0]:.1f}, {sci[1]:.1f}] | {no_answer} |"
        )
    return "\n".join(lines)


def commands(work: Path) -> str:
    lines = []
    for mark in sorted((work / "stages").glob("*.done"), key=lambda p: p.stat().st_mtime):
        done = json.loads(mark.read_text(encoding="utf-8"))
        lines.append(f"{done['command']}    # {done.get('seconds', '?')} s")
    return "\n".join(lines)


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(work: Path) -> str:
    from masksearch.eval.runner import read_results

    rows = [dict(r) for r in read_results(work / "eval").values()]
    bench = json.loads((work / "bench" / "manifest.json").read_text(encoding="utf-8"))
    parts = [
        "# Results: MaskSearch at small scale on a CPU box",
        "",
        "Produced by `bash recipes/cpu-small/run.sh` (see `recipes/cpu-small/README.md`); every row "
        f"on the same base model, SmolLM2-135M-Instruct. Commit `{commit()}`.",
        "",
        "Cells: mean ×100 [bootstrap 95 % interval] (n = questions). Retriever: BM25 over the "
        f"offline eval corpus ({bench['corpus']['passages']} passages: the embedded Wikipedia "
        "summaries and the SQuAD paragraphs). SQuAD test = the test side of the split by article; "
        "NQ-open = a seeded random sample of the dev set; the answerable columns keep the "
        "questions whose gold answer occurs in the corpus.",
        "",
        "## Token-level recall (the paper's metric)",
        "",
        results_table(rows, "recall"),
        "",
        "## Token F1",
        "",
        results_table(rows, "f1"),
        "",
        "## Exact match",
        "",
        results_table(rows, "em"),
        "",
        "## Paired differences (same questions; an interval above 0 means the first row is better)",
        "",
        paired_table(rows),
        "",
        "## Held-out RAMP (masked passages no student trained on): accepted share, per k",
        "",
        ramp_table(work),
        "",
        "## Diagnostics (all evaluated questions)",
        "",
        diagnostics(rows),
        "",
        "## Commands that produced this table",
        "",
        "In the order they finished; the seconds are each stage's last run (a stage that resumed "
        "after an interruption counts only its last piece).",
        "",
        "```",
        commands(work),
        "```",
        "",
    ]
    return "\n".join(parts)


# the hand-written reading of the table starts at this line; a rerun keeps it
READING = (
    "<!-- the reading below is written by hand; table.py keeps it when it rewrites the tables -->"
)


def with_reading(text: str, out: Path) -> str:
    """The rendered tables, followed by the reading already in `out` (from `READING` on)."""
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    at = old.find(READING)
    if at < 0:
        return text + "\n" + READING + "\n\n## Reading\n\n(to be written from the tables above)\n"
    return text + "\n" + old[at:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", default="runs/cpu-small")
    p.add_argument("--out", default="docs/results.md")
    args = p.parse_args(argv)
    from masksearch.cli import error_line
    from masksearch.fileio import atomic_write_text

    out = Path(args.out)
    try:
        atomic_write_text(out, with_reading(render(Path(args.work)), out))
    except (MaskSearchError, OSError) as e:  # e.g. a work dir the recipe has not filled
        print(error_line(e), file=sys.stderr)  # never None for these two
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
