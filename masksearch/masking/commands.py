"""CLI: `masksearch mask` — RAMP masking of a corpus into JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from masksearch.corpus import FORMAT_HELP
from masksearch.workers.options import (
    EXIT_INTERRUPTED,
    ProcessesOption,
    ProgressOption,
    RayAddressOption,
    RayOption,
    SkipBadOption,
    SummaryJsonOption,
    cluster_settings,
)


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.command("mask", help=MASK_HELP)(mask_command)


MASK_HELP = (
    "Mask salient spans of corpus passages (RAMP) and write one example per passage.\n\n"
    "Each example masks k spans (names, dates, numbers, terms) by exact character offsets with "
    "the literal token \\[mask]; the answers are the masked spans in order. Appends to --out and "
    "skips passages whose id is already there, so an interrupted run resumes without duplicates."
    "\n\n"
    "Strategies: rule (regex heuristics, offline, default); spacy (needs spaCy and a pipeline, "
    "--model names it, default en_core_web_sm); llm (chat model spec in --model, e.g. "
    "openai:gpt-4o-mini); ppl (rule candidates ranked by a causal LM's loss; --model is a local "
    "path or Hugging Face id). See docs/masking.md."
)


def mask_command(
    ctx: typer.Context,
    corpus: Annotated[
        Path,
        typer.Option(
            "--corpus", help="Corpus file (FlashRAG jsonl or any format masksearch.corpus reads)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="Output JSONL (appended to; existing source ids are skipped)."),
    ],
    corpus_format: Annotated[str, typer.Option("--corpus-format", help=FORMAT_HELP)] = "auto",
    strategy: Annotated[str, typer.Option("--strategy", help="rule | spacy | llm | ppl.")] = "rule",
    k_dist: Annotated[
        str,
        typer.Option(
            "--k-dist", help="Target distribution of k (masks per example) as K:WEIGHT,..."
        ),
    ] = "1:0.25,2:0.25,3:0.25,4:0.25",
    on_few: Annotated[
        str,
        typer.Option(
            "--on-few",
            help="When a passage has fewer usable spans than the drawn k: "
            "resample (draw k again among feasible values), smaller "
            "(use as many as possible) or skip.",
        ),
    ] = "resample",
    calibrate_on: Annotated[
        int,
        typer.Option(
            "--calibrate",
            help="Scan the first N corpus passages to calibrate k sampling so the OUTPUT k distribution matches --k-dist (0: off; not used with llm).",
        ),
    ] = 2000,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed; each passage's RNG is derived from (seed, id).")
    ] = 0,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Read at most N passages of the corpus.")
    ] = None,
    max_examples: Annotated[
        int | None,
        typer.Option(
            "--max-examples",
            help="Stop when --out holds N examples in all (earlier interrupted runs count).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="llm: chat model spec; ppl: causal LM path/id; spacy: pipeline name."
        ),
    ] = None,
    min_words: Annotated[
        int, typer.Option("--min-words", help="Skip passages shorter than this many words.")
    ] = 20,
    max_span_chars: Annotated[
        int, typer.Option("--max-span-chars", help="Ignore candidate spans longer than this.")
    ] = 60,
    title_in_question: Annotated[
        str,
        typer.Option(
            "--title-in-question",
            help="auto (only when the text never names its title) | always | never.",
        ),
    ] = "auto",
    ppl_mode: Annotated[
        str,
        typer.Option(
            "--ppl-mode",
            help="ppl scoring: fill (span given the masked passage) | inline (left context, one pass).",
        ),
    ] = "fill",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="ppl: sequences per forward pass.")
    ] = 16,
    device: Annotated[str, typer.Option("--device", help="ppl: cpu | cuda | auto.")] = "auto",
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", help="llm: concurrent model calls (shared among the Ray workers)."
        ),
    ] = 8,
    processes: ProcessesOption = None,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    summary_json: SummaryJsonOption = None,
    progress: ProgressOption = True,
    skip_bad: SkipBadOption = False,
) -> None:
    from masksearch.errors import ConfigError, MaskSearchError
    from masksearch.fileio import atomic_write_text, check_output_file
    from masksearch.jsonl import SkipCounter
    from masksearch.masking.kdist import KDist, OnFew
    from masksearch.masking.runner import STRATEGIES, MaskSettings, MaskSummary, mask_corpus
    from masksearch.masking.select import MaskConfig, TitleMode
    from masksearch.settings import settings_from

    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown --strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if on_few not in ("resample", "smaller", "skip"):
        raise ConfigError(f"unknown --on-few {on_few!r} (resample | smaller | skip)")
    if title_in_question not in ("auto", "always", "never"):
        raise ConfigError(
            f"unknown --title-in-question {title_in_question!r} (auto | always | never)"
        )
    if summary_json is not None:
        check_output_file(
            summary_json,
            what="--summary-json",
            inputs={"--corpus": corpus, "--out": out},
            kind="json",
        )
    config = settings_from(
        MaskConfig,
        ctx.params,
        k_dist=KDist.parse(k_dist),
        on_few=cast(OnFew, on_few),  # checked above
        title_in_question=cast(TitleMode, title_in_question),
    )
    extra: dict[str, Any] = {}
    if strategy == "ppl":
        extra = {"ppl_mode": ppl_mode, "batch_size": batch_size, "device": device}
    elif strategy == "llm":
        extra = {"max_concurrency": concurrency}
    cluster = cluster_settings(processes, ray, ray_address)
    if cluster is not None:
        from dataclasses import replace

        if strategy == "ppl" and device == "cuda":
            cluster = replace(cluster, gpus_per_worker=1.0)
        if strategy == "llm":
            extra["max_concurrency"] = -(-concurrency // cluster.workers)
    settings = settings_from(MaskSettings, ctx.params, config=config, strategy_options=extra)
    summary, counter = MaskSummary(), SkipCounter()
    try:
        mask_corpus(
            corpus,
            out,
            settings,
            progress=progress,
            summary=summary,
            counter=counter,
            cluster=cluster,
        )
    except MaskSearchError:
        if summary.written:  # say what was kept before the error line
            typer.echo(summary.format(), err=True)
            typer.echo(f"kept {summary.written} new examples in {out}", err=True)
        raise
    for example in counter.examples:
        typer.echo(f"skipped bad input: {example}", err=True)
    typer.echo(summary.format(), err=True)
    typer.echo(
        f"wrote {summary.written} examples to {out} ({summary.existing + summary.written} in all)",
        err=True,
    )
    if summary_json is not None:
        atomic_write_text(summary_json, json.dumps(summary.to_dict(), indent=2) + "\n")
    if summary.interrupted:
        typer.echo(
            "interrupted: rerun the same command to resume (written examples are kept).", err=True
        )
        raise typer.Exit(EXIT_INTERRUPTED)
