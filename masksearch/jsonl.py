"""Streaming JSONL reading and appending with located errors."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from masksearch.errors import InputError

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how a lone surrogate gets into JSON
MAX_LINE_BYTES = 64 * 1024 * 1024  # a longer line is bad input (never read into memory whole)


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
    """Open a text file, transparently gunzipping `.gz`; UTF-8 strictly (errors raise), a
    leading byte-order mark dropped."""
    from masksearch.fileio import check_input_file

    p = check_input_file(path)
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig", errors="strict")
    return open(p, encoding="utf-8-sig", errors="strict")


def iter_jsonl(
    path: str | os.PathLike[str],
    *,
    required: tuple[str, ...] = (),
    skip_bad: bool = False,
    counter: SkipCounter | None = None,
    allow_empty: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_number, object)` for each non-blank line; raise `InputError` on bad lines.

    With `skip_bad`, bad lines are counted in `counter` instead of raising. A line longer than
    `max_line_bytes` is a bad line (it is skipped over in chunks, never held in memory whole).
    A truncated or corrupt `.gz` is an `InputError` naming the line where the data ends, after
    every complete line before it was yielded.
    """
    path = str(path)
    seen = 0
    lineno = 0

    def bad(err: InputError) -> None:
        if not skip_bad:
            raise err
        if counter is not None:
            counter.add(err)

    with _open_binary(path) as fh:
        # Decode line by line (not the text layer's read-ahead chunks), so a bad byte is reported
        # on its own line and, with skip_bad, only that line is skipped.
        for lineno, raw in enumerate(_bounded_lines(fh, path, max_line_bytes), 1):
            if raw is None:
                bad(
                    InputError(f"line longer than {max_line_bytes:,} bytes", path=path, line=lineno)
                )
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad(
                    InputError(
                        f"not valid UTF-8 ({e.reason} at byte {e.start})", path=path, line=lineno
                    )
                )
                continue
            if not line.strip():
                continue
            if lineno == 1 and line.startswith("\ufeff"):  # a UTF-8 byte-order mark
                line = line[1:]
            try:
                obj = _parse_line(line, path, lineno, required)
            except InputError as err:
                bad(err)
                continue
            seen += 1
            yield lineno, obj
    if seen == 0 and not allow_empty and not (counter and counter.skipped):
        raise InputError("file is empty (no JSON lines)", path=path)


def count_nonblank_lines(path: str | os.PathLike[str], max_line_bytes: int = MAX_LINE_BYTES) -> int:
    """Non-blank lines of a (possibly gzipped) file, reading at most `max_line_bytes` of any line
    into memory (an overlong line counts as one)."""
    with _open_binary(str(path)) as fh:
        return sum(
            1 for raw in _bounded_lines(fh, str(path), max_line_bytes) if raw is None or raw.strip()
        )


def _bounded_lines(fh: IO[bytes], path: str, limit: int) -> Iterator[bytes | None]:
    """Lines of a binary file, each at most `limit` bytes (None for a longer one, consumed in
    chunks). Gzip truncation/corruption becomes an `InputError` located at the next line."""
    lineno = 0
    try:
        while True:
            raw = fh.readline(limit + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                while (chunk := fh.readline(1 << 20)) and not chunk.endswith(b"\n"):
                    pass
                yield None
                continue
            yield raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(
            f"truncated or corrupt gzip data ({e or type(e).__name__}); the lines before it were read",
            path=path,
            line=lineno + 1,
        ) from None
    except OSError as e:
        from masksearch.fileio import describe_os_error

        raise InputError(
            f"cannot read ({describe_os_error(e)})", path=path, line=lineno + 1
        ) from None


def _open_binary(path: str) -> IO[bytes]:
    from masksearch.fileio import check_input_file

    p = check_input_file(path)
    try:
        fh: IO[bytes] = gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")  # type: ignore[assignment]
        return fh
    except OSError as e:
        from masksearch.fileio import describe_os_error

        raise InputError(f"cannot open ({describe_os_error(e)})", path=str(p)) from None


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
    if _SURROGATE_ESCAPE.search(line):  # cheap test first: only escaped text can hold one
        check_unicode(obj, path=path, line=lineno)
    return obj


def check_unicode(obj: Any, *, path: str | None = None, line: int | None = None) -> None:
    """Reject text that cannot be encoded as UTF-8 (a lone surrogate such as `\\ud800`, valid
    JSON) anywhere in a record, naming the field: such text would fail later, at the store or
    an output file, and block a whole batch."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return
    except UnicodeEncodeError:
        pass
    for name, value in _strings(obj, ""):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InputError(
                f"text is not valid Unicode (lone surrogate {value[e.start]!r} at character "
                f"{e.start})",
                path=path,
                line=line,
                field=name or None,
            ) from None


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def id_problem(value: str) -> str | None:
    """Why `value` is not usable as an id (None if it is): an id must be one printable line, with
    no control characters (NUL, newline, tab) and no bidi overrides (which make a printed id read
    differently from what is stored)."""
    for i, ch in enumerate(value):
        if ch in _BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs"):
            return f"contains a control character U+{ord(ch):04X} at position {i}"
    return None


def _strings(value: Any, name: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield name, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(str(k), name or str(k))
            yield from _strings(v, f"{name}.{k}" if name else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{name}[{i}]")


def read_jsonl(path: str | os.PathLike[str], **kwargs: Any) -> list[dict[str, Any]]:
    return [obj for _, obj in iter_jsonl(path, **kwargs)]


class JsonlAppender:
    """Append JSON objects one line at a time, flushed (and optionally fsynced) per record.

    A partially written last line (from a crash) is repaired on open so that appends stay valid.
    The output must be a regular file (or not exist yet): `/dev/full`, a FIFO or a folder is
    refused before anything is read or written. Write errors (full disk) raise `OutputError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        from masksearch.fileio import check_output_file, output_error

        self.path = check_output_file(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            repair_tail(self.path)
            self._fh = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise output_error(e, self.path) from None
        self._fsync = fsync

    def write(self, obj: dict[str, Any]) -> None:
        from masksearch.fileio import output_error

        line = json.dumps(obj, ensure_ascii=False) + "\n"
        try:
            end = self._fh.tell()
            self._fh.write(line)
            self._fh.flush()
            if self._fsync:
                os.fsync(self._fh.fileno())
        except OSError as e:
            self._drop_partial(end)
            raise output_error(e, self.path) from None

    def _drop_partial(self, end: int) -> None:
        """After a failed write (full disk): cut the file back to its last whole line."""
        try:
            os.truncate(self.path, end)
        except OSError:
            pass  # the next open's repair_tail does it

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:  # the write that failed already raised; the file keeps whole lines
            pass
        if self.path.is_file():
            repair_tail(self.path)  # a buffered tail the full disk refused

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def repair_tail(path: Path, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
    """Make the file end with a newline after a crash mid-write: a last line lacking its newline
    is kept (newline added) when it is a complete JSON object, else cut off. Only the file's
    tail is read (backwards, in chunks)."""
    if not path.exists() or not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        line_start, pos = 0, size
        while pos > 0:  # find the start of the unterminated last line
            step = min(1 << 20, pos)
            pos -= step
            fh.seek(pos)
            nl = fh.read(step).rfind(b"\n")
            if nl >= 0:
                line_start = pos + nl + 1
                break
        if size - line_start <= max_line_bytes:
            fh.seek(line_start)
            try:
                obj = json.loads(fh.read().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                obj = None
            if isinstance(obj, dict):  # a whole record that only lacks its newline: keep it
                fh.seek(size)
                fh.write(b"\n")
                return
        fh.truncate(line_start)


def write_jsonl(path: str | os.PathLike[str], rows: Any, transform: Callable | None = None) -> int:
    """Write rows atomically (temp file, fsync, rename; see `masksearch.fileio.atomic_write`),
    secrets redacted; returns the count. On error (full disk) the old file stays and no temp
    file is left."""
    from masksearch.fileio import atomic_write
    from masksearch.redact import redactor

    clean = redactor()
    n = 0
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(
                clean(json.dumps(transform(row) if transform else row, ensure_ascii=False)) + "\n"
            )
            n += 1
    return n


def utf8_safe(obj: Any) -> Any:
    """`obj` with text that cannot be encoded as UTF-8 (lone surrogates) replaced by `?`, for a
    last-resort record that must be storable whatever the input held."""
    text = json.dumps(obj, ensure_ascii=False)
    return json.loads(text.encode("utf-8", "replace").decode("utf-8"))
