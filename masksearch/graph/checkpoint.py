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
    """THE default checkpointer: `sqlite:///<store dir>/<store stem>.ckpt.sqlite`, next to the
    trajectory store, so rerunning the same command resumes."""
    path = Path(store)
    return f"sqlite:///{path.with_name(path.stem + '.ckpt.sqlite')}"


def sqlite_path(url: str) -> str:
    """`sqlite:///rel/path.db` → `rel/path.db`; `sqlite:////abs/path.db` → `/abs/path.db`."""
    path = url[len("sqlite:///") :]
    if not path:
        raise ConfigError(f"checkpoint url {url!r} has no file path (sqlite:///path/to/file.db)")
    return path


@asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[Any]:
    """Open (and set up) an async LangGraph checkpointer for `url`; closes it on exit."""
    if url == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
        return
    if url.startswith("sqlite:///"):
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
