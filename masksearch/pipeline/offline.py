"""`masksearch run`: corpus → index → masked data → trajectories, all offline, idempotent.

Layout of `--workdir` (each step is skipped when its output is already there):

    corpus.jsonl          the passages used (FlashRAG jsonl; a subset of the default corpus)
    index/                BM25 index (with --dense: bm25/ + dense/ for hybrid search)
    masked.jsonl          RAMP examples (rule strategy); topped up to --n
    trajectories.sqlite   the trajectory store (one row per example id)
    checkpoints.sqlite    LangGraph checkpoints of unfinished examples (resume)
    trajectories.jsonl    accepted trajectories (export)
    summary.json          the run summary and store statistics
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

from masksearch.jsonl import write_jsonl
from masksearch.pipeline.runner import echo, run_generate


def prepare_corpus(workdir: Path, corpus: Path | None, max_passages: int | None) -> Path:
    """Copy (up to `max_passages` of) the corpus into `workdir/corpus.jsonl` once."""
    out = workdir / "corpus.jsonl"
    if out.is_file() and out.stat().st_size > 0:
        echo(f"[1/4] corpus: reusing {out}")
        return out
    from masksearch.corpus import iter_passages

    if corpus is None:
        from masksearch.corpus.default import default_corpus

        corpus = default_corpus()
    rows = (
        {"id": p.id, "contents": p.contents} for p in islice(iter_passages(corpus), max_passages)
    )
    n = write_jsonl(out, rows)
    echo(f"[1/4] corpus: {n} passages from {corpus} -> {out}")
    return out


def prepare_index(workdir: Path, corpus: Path, dense: bool, progress: bool) -> str:
    """Build the index once; return the retriever spec for it."""
    from masksearch.retrievers.build import build_index

    out = workdir / ("index_hybrid" if dense else "index")
    spec = f"{'hybrid' if dense else 'bm25'}:{out}"
    if (out / "manifest.json").is_file():
        echo(f"[2/4] index: reusing {out}")
        return spec
    summary = build_index(corpus, out, kind="both" if dense else "bm25", show_progress=progress)
    echo(f"[2/4] index: {summary.get('passages', '?')} passages -> {out}")
    return spec


def prepare_masked(workdir: Path, corpus: Path, n: int, progress: bool) -> Path:
    """Mask passages (rule strategy) until `masked.jsonl` holds at least `n` examples."""
    from masksearch.masking.runner import mask_corpus
    from masksearch.pipeline.inputs import count_lines

    out = workdir / "masked.jsonl"
    have = (count_lines(out) or 0) if out.is_file() else 0
    if have >= n:
        echo(f"[3/4] mask: reusing {out} ({have} examples)")
        return out
    summary = mask_corpus(corpus, out, strategy="rule", max_examples=n, progress=progress)
    total = count_lines(out) or 0
    echo(
        f"[3/4] mask: {getattr(summary, 'written', total - have)} new examples -> {out} ({total} in all)"
    )
    if total == 0:
        from masksearch.errors import InputError

        raise InputError(
            "masking produced no examples (corpus too small or unsuitable)", path=str(corpus)
        )
    return out


def run_offline(
    workdir: Path,
    *,
    n: int = 8,
    concurrency: int = 2,
    model: str = "local:default",
    judge_model: str | None = None,
    corpus: Path | None = None,
    max_passages: int | None = 2000,
    dense: bool = False,
    max_turns: int = 2,
    top_k: int = 3,
    max_tokens: int = 192,
    progress: bool = True,
    context_overrides: dict[str, Any] | None = None,
) -> int:
    """Run the four steps into `workdir`; return the exit code of the generation step."""
    from masksearch.graph.context import Context

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    corpus_file = prepare_corpus(workdir, corpus, max_passages)
    retriever = prepare_index(workdir, corpus_file, dense, progress)
    masked = prepare_masked(workdir, corpus_file, n, progress)
    context = Context(
        planner_model=model,
        rewriter_model=model,
        observer_model=model,
        judge_model=judge_model,
        retriever=retriever,
        top_k=top_k,
        max_turns=max_turns,
        max_tokens=max_tokens,
        **(context_overrides or {}),
    )
    echo(f"[4/4] generate: {n} examples with {model} (concurrency {concurrency})")
    store = workdir / "trajectories.sqlite"
    export = workdir / "trajectories.jsonl"
    code = run_generate(
        masked,
        store,
        context,
        f"sqlite:///{workdir / 'checkpoints.sqlite'}",
        concurrency=concurrency,
        limit=n,
        retry_failed=True,
        export=export,
        summary_json=workdir / "summary.json",
        progress=progress,
    )
    echo("outputs:")
    for label, path in (
        ("corpus", corpus_file),
        ("index", retriever.split(":", 1)[1]),
        ("masked data", masked),
        ("trajectory store", store),
        ("accepted trajectories", export),
        ("summary", workdir / "summary.json"),
    ):
        echo(f"  {label:22s} {path}")
    return code
