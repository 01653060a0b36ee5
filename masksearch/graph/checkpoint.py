"""Checkpointer factory: `sqlite:///path.db`, `postgres://…` (extra `postgres`), `memory`; the
default is `default_checkpoint_url(store)`, next to the trajectory store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from masksearch.errors import ConfigError


def default_checkpoint_url(store: str | os.PathLike[str]) -> str:
    """THE default checkpointer: `sqlite:////<store dir>/<store stem>.ckpt.sqlite`, next to the
    trajectory store, so rerunning the same command resumes."""
    path = Path(store).absolute()  # (four slashes: never read as relative to another folder)
    return f"sqlite:///{path.with_name(path.stem + '.ckpt.sqlite')}"


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:` URL, read as SQLAlchemy reads it: `sqlite:///rel/path.db` →
    `rel/path.db` (relative to the current folder), `sqlite:////abs/path.db` → `/abs/path.db`.

    Refused (`ConfigError`): no path (`sqlite://`, `sqlite:///`), a host part
    (`sqlite://name/x.db`, which SQLAlchemy would read as an in-memory database), and an
    ambiguous relative path: `sqlite:///tmp/w/x.db` where the current folder has no `tmp/` but `/`
    has one (an absolute path given with one slash too few would silently land under the
    current folder)."""
    if not url.startswith("sqlite://"):
        raise ConfigError(f"not a sqlite URL: {url!r} (sqlite:///relative.db or sqlite:////abs.db)")
    rest = url[len("sqlite://") :]
    if not rest.startswith("/"):
        raise ConfigError(
            f"checkpoint url {url!r} has a host part and no file path: use sqlite:///relative/"
            "path.db or sqlite:////absolute/path.db (or 'memory')"
        )
    path = rest[1:]
    if not path or "?" in path:
        raise ConfigError(
            f"checkpoint url {url!r}: give a file path without options "
            "(sqlite:///relative/path.db or sqlite:////absolute/path.db)"
        )
    first = Path(path).parts[0] if Path(path).parts else ""
    if (
        not path.startswith("/")
        and len(Path(path).parts) > 1
        and not Path(first).exists()
        and Path("/", first).is_dir()
    ):
        raise ConfigError(
            f"checkpoint url {url!r} is ambiguous: with three slashes the path is relative "
            f"({path}, under the current folder, which has no {first}/ while / has one); "
            f"for the absolute path write four slashes: sqlite:////{path}"
        )
    return path


def check_is_checkpoint_db(path: str | os.PathLike[str]) -> None:
    """Refuse an existing SQLite file that holds tables but no LangGraph `checkpoints` table (a
    trajectory store, another program's database): the checkpointer would add its tables to
    it. A missing or empty file is fine."""
    from masksearch.fileio import sqlite_tables

    tables = sqlite_tables(path, what="--checkpoint")
    if tables and "checkpoints" not in tables:
        from masksearch.errors import OutputError

        raise OutputError(
            f"--checkpoint: not a LangGraph checkpoint database (it holds tables "
            f"{', '.join(sorted(tables)[:5])}); refusing to add tables to it",
            path=str(path),
        )


@asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[Any]:
    """Open (and set up) an async LangGraph checkpointer for `url`; closes it on exit."""
    if url == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
        return
    if url.startswith("sqlite:"):
        # not AsyncSqliteSaver: its per-statement thread hand-offs halve batch throughput
        from masksearch.graph.sqlite_saver import open_inline_sqlite

        async with open_inline_sqlite(sqlite_path(url)) as saver:
            yield saver
        return
    if url.startswith(("postgres://", "postgresql://")):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError:
            raise ConfigError(
                "postgres checkpoints need the extra: pip install 'masksearch[postgres]'"
            ) from None
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            yield saver
        return
    raise ConfigError(
        f"unsupported checkpoint url {url!r}: use sqlite:///path.db, postgres://..., or memory"
    )
