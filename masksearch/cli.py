"""`masksearch` command line: each area registers its own commands (heavy imports stay lazy)."""

from __future__ import annotations

import logging
import sys

import typer

from masksearch.errors import MaskSearchError

app = typer.Typer(
    name="masksearch",
    help=(
        "MaskSearch: build a corpus index, mask passages (RAMP), generate search-agent\n"
        "trajectories with a LangGraph multi-agent graph, train (SFT / GRPO / PPO) and evaluate.\n\n"
        "Start with `masksearch run` for the whole offline pipeline on the embedded default."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # third-party loggers that set their own DEBUG level
        for name in ("bm25s", "httpx", "faiss"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _register() -> None:
    from masksearch.eval import commands as eval_cmds
    from masksearch.graph import commands as graph_cmds
    from masksearch.masking import commands as mask_cmds
    from masksearch.pipeline import commands as pipeline_cmds
    from masksearch.retrievers import commands as retr_cmds
    from masksearch.training import commands as train_cmds

    for module in (retr_cmds, mask_cmds, pipeline_cmds, graph_cmds, eval_cmds, train_cmds):
        module.register(app)


_register()


def main() -> None:
    try:
        app()
    except MaskSearchError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
