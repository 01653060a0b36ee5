"""CLI: `masksearch generate` (batch trajectories, with resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masksearch.context import Context
from masksearch.context_options import command_resources, context_options
from masksearch.workers.options import (
    ProcessesOption,
    ProgressOption,
    RayAddressOption,
    RayOption,
    RetryFailedOption,
    SkipBadOption,
    SummaryJsonOption,
    cluster_settings,
)

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach `generate` to the root app."""

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
        skip_bad: SkipBadOption = False,
        retry_failed: RetryFailedOption = False,
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
        summary_json: SummaryJsonOption = None,
        progress: ProgressOption = True,
        context: Context = None,  # type: ignore[assignment]  # built from the options
    ) -> None:
        """Generate search-agent trajectories for masked examples, with resume.

        Runs the LangGraph multi-agent graph over every example with bounded concurrency and writes one record per example id into the SQLite store. Rerunning the same command resumes: stored ids are skipped, in-flight ones continue from the checkpointer.

        Ctrl-C once: finish the examples in flight and stop; twice: stop now (they resume later).
        """
        from masksearch.errors import ConfigError
        from masksearch.graph.checkpoint import default_checkpoint_url
        from masksearch.pipeline.ratelimit import RateLimits
        from masksearch.pipeline.runner import RunSettings, run_generate
        from masksearch.settings import settings_from
        from masksearch.store.trajectories import is_postgres

        if durability not in ("sync", "async", "exit"):
            raise ConfigError(f"--durability must be sync, async or exit, not {durability!r}")
        cluster = cluster_settings(processes, ray, ray_address)

        if checkpoint is None and is_postgres(store):
            checkpoint = store  # the checkpoint tables live next to the trajectories
        limits = RateLimits(max_rps, max_tpm) if (max_rps or max_tpm) else None
        code = run_generate(
            input,
            store if is_postgres(store) else Path(store),
            context,
            checkpoint or default_checkpoint_url(Path(store)),
            settings_from(RunSettings, ctx.params, limits=limits),  # durability: checked above
            cluster=cluster,
            resources=command_resources(ctx),
        )
        raise typer.Exit(code)
