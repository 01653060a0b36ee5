"""`masksearch` command line: each area registers its own commands (heavy imports stay lazy)."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from masksearch.errors import MaskSearchError

if TYPE_CHECKING:
    from masksearch.resources import Resources


def _flags_without_type() -> None:
    """typer (0.2x) prints a type beside every option in `--help`, `<bool>` beside on/off flags
    such as `--resume` or `--help`, which take no value: show no type for a flag."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "masksearch_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.masksearch_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_type()

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
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from masksearch.redact import install_log_redaction

    install_log_redaction()  # no configured key or bearer token ever reaches a log line
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_third_party)
            handler.addFilter(_one_line_retries)


_CHATTY = ("bm25s", "httpx", "faiss")  # set their own DEBUG level, when imported (often later)


def _quiet_third_party(record: logging.LogRecord) -> bool:
    """Without -v, these libraries' records below WARNING are dropped."""
    return record.levelno >= logging.WARNING or not record.name.startswith(_CHATTY)


def _one_line_retries(record: logging.LogRecord) -> bool:
    """LangGraph logs each retry with the exception's traceback: without -v, a one-line warning."""
    if record.name.startswith("langgraph") and record.exc_info:
        record.exc_info = record.exc_text = None
        record.msg, record.args = record.getMessage().splitlines()[0].strip(), ()
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


def _register() -> None:
    from masksearch.eval import commands as eval_cmds
    from masksearch.graph import commands as graph_cmds
    from masksearch.masking import commands as mask_cmds
    from masksearch.offline import commands as offline_cmds
    from masksearch.pipeline import commands as pipeline_cmds
    from masksearch.retrievers import commands as retr_cmds
    from masksearch.training import commands as train_cmds

    for module in (
        retr_cmds,
        mask_cmds,
        pipeline_cmds,
        offline_cmds,
        graph_cmds,
        eval_cmds,
        train_cmds,
    ):
        module.register(app)


_register()


def error_line(exc: BaseException) -> str | None:
    """The one line printed for an expected failure (bad input or config, an unwritable or full
    output, a truncated file), secrets redacted; None for a bug (which keeps its traceback)."""
    from masksearch.redact import redact

    if isinstance(exc, MaskSearchError):
        return redact(f"error: {exc}")
    if isinstance(exc, OSError | EOFError):
        from masksearch.fileio import describe_os_error

        if isinstance(exc, OSError):
            where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
            reason = describe_os_error(exc)
        else:
            where, reason = "", f"unexpected end of data ({exc})"
        return redact(f"error: {where + ': ' if where else ''}{reason}")
    return None


def run(argv: list[str] | None = None, resources: Resources | None = None) -> int:
    """Run the CLI on `argv`; return the exit code (2 with one `error:` line for expected failures).
    `resources`: the models and retrievers the commands use (default: each makes its own)."""
    try:
        app(args=argv, prog_name="masksearch", obj=resources)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except (MaskSearchError, OSError, EOFError) as e:
        line = error_line(e)
        if line is None:
            raise
        typer.secho(line, fg=typer.colors.RED, err=True)
        return int(getattr(e, "exit_code", 2))  # 3: a run stopped early (errors.RunStopped)
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
