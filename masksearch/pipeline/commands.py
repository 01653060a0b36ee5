"""CLI: `masksearch generate` (batch trajectories) and `masksearch run` (the whole offline pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from masksearch.context import Context
from masksearch.context_options import command_resources, context_options
from masksearch.pipeline.parallel import EXIT_INTERRUPTED

if TYPE_CHECKING:
    from masksearch.pipeline.parallel import ClusterSettings

__all__ = ["EXIT_INTERRUPTED", "ProcessesOption", "RayAddressOption", "RayOption", "register"]

# `masksearch run`'s graph settings where they differ from `Context`'s (a small local model)
RUN_DEFAULTS = {"max_turns": 2, "top_k": 2, "num_rewrites": 2, "max_tokens": 192}


def _cluster_cpus() -> int:
    """Workers for a bare `--ray`: this machine's CPUs (a joined cluster: set --processes)."""
    import os

    return max(1, min(64, os.cpu_count() or 1))


# the Ray options of every command that runs on `pipeline.parallel` (generate, mask, eval run)
ProcessesOption = Annotated[
    int | None,
    typer.Option(
        "--processes",
        "-p",
        min=1,
        max=4096,
        help="Ray workers (implies --ray): the work is split over them by a stable hash of each item's id and the concurrency is shared among them. Default with --ray: one per CPU of this machine, at most 64.",
    ),
]
RayOption = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Run on Ray workers; starts a local Ray instance (pip install 'masksearch\\[ray]').",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Join this Ray cluster (auto, or ray://host:10001); implies --ray. Every node needs the input files (same paths) and masksearch installed; see docs/scale.md.",
    ),
]


def cluster_settings(
    processes: int | None, ray: bool, ray_address: str | None
) -> ClusterSettings | None:
    """The Ray settings the options ask for, or None (run in this process)."""
    if not (ray or ray_address or processes is not None):
        return None
    from masksearch.pipeline.parallel import ClusterSettings

    return ClusterSettings(workers=processes or _cluster_cpus(), address=ray_address)


def register(app: typer.Typer) -> None:
    """Attach `generate` and `run` to the root app."""

    @app.command("generate")
    @context_options(exclude={"review_queries"})
    def generate_cmd(
        ctx: typer.Context,
        input: Annotated[
            Path, typer.Option("--input", "-i", help="Masked data JSONL (from `masksearch mask`).")
        ],
        store: Annotated[
            str,
            typer.Option(
                "--store",
                help="Trajectory store (created or resumed): a SQLite file, or postgresql://user@host/db for workers on several machines.",
            ),
        ] = "runs/traj.sqlite",
        export: Annotated[
            Path | None,
            typer.Option("--export", help="Also write accepted records to this JSONL (atomic)."),
        ] = None,
        export_all: Annotated[
            bool, typer.Option("--export-all", help="Export rejected and failed records too.")
        ] = False,
        checkpoint: Annotated[
            str | None,
            typer.Option(
                "--checkpoint",
                help="Checkpointer: sqlite:///path, postgres://..., or memory. Default: sqlite next to the store.",
            ),
        ] = None,
        concurrency: Annotated[
            int,
            typer.Option(
                "--concurrency", "-c", min=1, max=4096, help="Examples run at the same time."
            ),
        ] = 8,
        limit: Annotated[
            int | None, typer.Option("--limit", "-n", help="Use only the first N input examples.")
        ] = None,
        skip_bad: Annotated[
            bool,
            typer.Option(
                "--skip-bad", help="Skip (and count) bad input lines instead of stopping."
            ),
        ] = False,
        retry_failed: Annotated[
            bool, typer.Option("--retry-failed", help="Redo examples whose stored record failed.")
        ] = False,
        processes: ProcessesOption = None,
        ray: RayOption = False,
        ray_address: RayAddressOption = None,
        max_rps: Annotated[
            float | None,
            typer.Option(
                "--max-rps",
                min=0.001,
                help="At most this many model requests per second for the whole run (all Ray workers together).",
            ),
        ] = None,
        max_tpm: Annotated[
            float | None,
            typer.Option(
                "--max-tpm",
                min=1,
                help="At most this many tokens per minute (prompt + completion) for the whole run; charged by estimate, corrected by the reported usage.",
            ),
        ] = None,
        durability: Annotated[
            str,
            typer.Option(
                "--durability",
                help="When each example's checkpoints are written: exit (default: once, when it ends; cheapest in CPU; an example killed mid-run restarts from its first step), sync (after every step, before the next: a killed example resumes at its last step; for long multi-turn runs with expensive calls), async (every step, overlapped with the next). Finished examples are never rerun either way. See docs/pipeline.md.",
            ),
        ] = "exit",
        summary_json: Annotated[
            Path | None, typer.Option("--summary-json", help="Write the run summary as JSON here.")
        ] = None,
        progress: Annotated[
            bool, typer.Option("--progress/--no-progress", help="tqdm progress bar.")
        ] = True,
        context: Context = None,  # type: ignore[assignment]  # built from the options
    ) -> None:
        """Generate search-agent trajectories for masked examples, with resume.

        Runs the LangGraph multi-agent graph over every example with bounded concurrency and writes one record per example id into the SQLite store. Rerunning the same command resumes: stored ids are skipped, in-flight ones continue from the checkpointer.

        Ctrl-C once: finish the examples in flight and stop; twice: stop now (they resume later).
        """
        from masksearch.errors import ConfigError
        from masksearch.graph.checkpoint import default_checkpoint_url
        from masksearch.pipeline.ratelimit import RateLimits
        from masksearch.pipeline.runner import run_generate
        from masksearch.pipeline.store import is_postgres

        if durability not in ("sync", "async", "exit"):
            raise ConfigError(f"--durability must be sync, async or exit, not {durability!r}")
        cluster = cluster_settings(processes, ray, ray_address)

        if checkpoint is None and is_postgres(store):
            checkpoint = store  # the checkpoint tables live next to the trajectories
        code = run_generate(
            input,
            store if is_postgres(store) else Path(store),
            context,
            checkpoint or default_checkpoint_url(Path(store)),
            concurrency=concurrency,
            limit=limit,
            skip_bad=skip_bad,
            retry_failed=retry_failed,
            export=export,
            export_all=export_all,
            summary_json=summary_json,
            progress=progress,
            cluster=cluster,
            durability=durability,  # type: ignore[arg-type]
            limits=RateLimits(max_rps, max_tpm) if (max_rps or max_tpm) else None,
            resources=command_resources(ctx),
        )
        raise typer.Exit(code)

    @app.command("run")
    @context_options(defaults=RUN_DEFAULTS, exclude={"retriever", "max_passages"})
    def run_cmd(
        workdir: Annotated[
            Path, typer.Option("--workdir", "-w", help="Where every output goes.")
        ] = Path("runs/default"),
        n: Annotated[int, typer.Option("--n", "-n", min=1, help="Trajectories to generate.")] = 8,
        concurrency: Annotated[
            int, typer.Option("--concurrency", "-c", min=1, help="Examples run at the same time.")
        ] = 2,
        corpus: Annotated[
            Path | None,
            typer.Option(
                "--corpus",
                help="Corpus file/dir to ingest; default: the embedded Wikipedia summaries.",
            ),
        ] = None,
        max_passages: Annotated[
            int | None,
            typer.Option(
                "--max-passages", help="Use at most this many corpus passages (None: all)."
            ),
        ] = 2000,
        dense: Annotated[
            bool,
            typer.Option("--dense", help="Also build a dense (FAISS) index and search hybrid."),
        ] = False,
        progress: Annotated[
            bool, typer.Option("--progress/--no-progress", help="tqdm progress bars.")
        ] = True,
        context: Context = None,  # type: ignore[assignment]  # built from the options
    ) -> None:
        """The whole offline pipeline on the embedded default: ingest → index → mask → generate.

        Needs no network and no API key: the corpus is the embedded Wikipedia summaries and the model the embedded Qwen2.5-Coder-1.5B-Instruct (`local:default`, GGUF on llama.cpp). Idempotent: a rerun reuses the built index and masked data and resumes generation.

        Every graph setting is an option (the retriever is the index built here; --max-passages limits the corpus, and the graph's per-round passage cap is 2 x --top-k).

        Every role decodes under a grammar, so every action parses; a masked example searches first and answers one blank at a time, copying each span from the retrieved passage it names. The summary says how many trajectories were accepted and why the others failed.
        """
        from masksearch.pipeline.offline import run_offline

        code = run_offline(
            workdir,
            context=context,
            n=n,
            concurrency=concurrency,
            corpus=corpus,
            max_passages=max_passages,
            dense=dense,
            progress=progress,
        )
        raise typer.Exit(code)
