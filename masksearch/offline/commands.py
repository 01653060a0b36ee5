"""CLI: `masksearch run` (the whole offline pipeline on the embedded default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masksearch.context import Context
from masksearch.context_options import context_options
from masksearch.workers.options import ProgressOption

__all__ = ["RUN_DEFAULTS", "register"]

# `masksearch run`'s graph settings where they differ from `Context`'s (a small local model)
RUN_DEFAULTS = {"max_turns": 2, "top_k": 2, "num_rewrites": 2, "max_tokens": 192}


def register(app: typer.Typer) -> None:
    """Attach `run` to the root app."""

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
        progress: ProgressOption = True,
        context: Context = None,  # type: ignore[assignment]  # built from the options
    ) -> None:
        """The whole offline pipeline on the embedded default: ingest → index → mask → generate.

        Needs no network and no API key: the corpus is the embedded Wikipedia summaries and the model the embedded Qwen2.5-Coder-1.5B-Instruct (`local:default`, GGUF on llama.cpp). Idempotent: a rerun reuses the built index and masked data and resumes generation.

        Every graph setting is an option (the retriever is the index built here; --max-passages limits the corpus, and the graph's per-round passage cap is 2 x --top-k).

        Every role decodes under a grammar, so every action parses; a masked example searches first and answers one blank at a time, copying each span from the retrieved passage it names. The summary says how many trajectories were accepted and why the others failed.
        """
        from masksearch.offline.job import run_offline

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
