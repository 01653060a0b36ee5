"""Streaming JSONL reading and appending with located errors."""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from masksearch.errors import InputError


@dataclass
class SkipCounter:
    """Counts (and remembers the first few) bad lines skipped with `skip_bad=True`."""

    skipped: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, err: InputError) -> None:
        self.skipped += 1
        if len(self.examples) < 5:
            self.examples.append(str(err))


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open a text file, transparently gunzipping `.gz`; UTF-8 strictly (errors raise)."""
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", path=str(p))
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", errors="strict")
    return open(p, encoding="utf-8", errors="strict")


def iter_jsonl(
    path: str | os.PathLike[str],
    *,
    required: tuple[str, ...] = (),
    skip_bad: bool = False,
    counter: SkipCounter | None = None,
    allow_empty: bool = False,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_number, object)` for each non-blank line; raise `InputError` on bad lines.

    With `skip_bad`, bad lines are counted in `counter` instead of raising.
    """
    path = str(path)
    seen = 0
    with _open_binary(path) as fh:
        # Decode line by line (not the text layer's read-ahead chunks), so a bad byte is reported
        # on its own line and, with skip_bad, only that line is skipped.
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                err = InputError(
                    f"not valid UTF-8 ({e.reason} at byte {e.start})", path=path, line=lineno
                )
                if not skip_bad:
                    raise err from None
                if counter is not None:
                    counter.add(err)
                continue
            if not line.strip():
                continue
            try:
                obj = _parse_line(line, path, lineno, required)
            except InputError as err:
                if not skip_bad:
                    raise
                if counter is not None:
                    counter.add(err)
                continue
            seen += 1
            yield lineno, obj
    if seen == 0 and not allow_empty and not (counter and counter.skipped):
        raise InputError("file is empty (no JSON lines)", path=path)


def _open_binary(path: str) -> IO[bytes]:
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", path=str(p))
    return gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")


def _parse_line(line: str, path: str, lineno: int, required: tuple[str, ...]) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(
            f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=lineno
        ) from None
    if not isinstance(obj, dict):
        raise InputError(
            f"expected a JSON object, got {type(obj).__name__}", path=path, line=lineno
        )
    for key in required:
        if key not in obj:
            raise InputError("missing required field", path=path, line=lineno, field=key)
    return obj


def read_jsonl(path: str | os.PathLike[str], **kwargs: Any) -> list[dict[str, Any]]:
    return [obj for _, obj in iter_jsonl(path, **kwargs)]


class JsonlAppender:
    """Append JSON objects one line at a time, flushed (and optionally fsynced) per record.

    A partially written last line (from a crash) is repaired on open so that appends stay valid.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_tail(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._fsync = fsync

    def write(self, obj: dict[str, Any]) -> None:
        self._fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _repair_tail(path: Path) -> None:
    """Drop an unterminated trailing line left by a crash mid-write."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)


def write_jsonl(path: str | os.PathLike[str], rows: Any, transform: Callable | None = None) -> int:
    """Write rows atomically (temp file + rename); returns the count."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(transform(row) if transform else row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, p)
    return n
