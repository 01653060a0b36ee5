"""Crash-safe output files: atomic writes (temp file, fsync, rename, fsync of the directory),
checks that an output path is writable before any work starts, and OS errors turned into one
located line (`OutputError`).

The one home of the rules on what a command may write and read: an output must not be one of
the command's inputs (the same file, a hard link or a symlink: `check_output_file(inputs=…)`),
an existing output must already be of the command's own kind (`kind=`: JSONL records, JSON, a
SQLite database…), an input must be a regular file (`check_input_file`: not a device or a
FIFO, which never end or block), and SQLite files are opened read-only with `mode=ro` when only
read (`open_sqlite_readonly`). A rewritten file keeps its mode; a new one gets what `open()`
would give it under the umask.

Every file the project writes whole (exports, `summary.json`, manifests) goes through
`atomic_write`: a crash or a full disk at any moment leaves either the old file or the new one,
never a half-written file, and never a leftover temp file.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import glob
import json
import os
import sqlite3
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal

from masksearch.errors import InputError, OutputError

PathLike = str | os.PathLike[str]
# What an existing output must already hold before a command overwrites or appends to it:
# JSONL records, JSON or text, Parquet, a SQLite database. Anything else (a binary file, a
# model) is refused, never overwritten or appended to.
OutputKind = Literal["jsonl", "json", "text", "parquet", "sqlite"]
_KIND_NAMES = {
    "jsonl": "JSONL (one JSON object per line)",
    "json": "JSON",
    "text": "text",
    "parquet": "a Parquet file",
    "sqlite": "a SQLite database",
}
_PROBE_BYTES = 64 * 1024  # how much of an existing output's head and tail is looked at


_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a parent of this path is not a directory",
    errno.EISDIR: "is a directory",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.EIO: "input/output error",
}


def describe_os_error(err: OSError) -> str:
    """A short reason for an OS error (`strerror` in lower case, or the errno name)."""
    if err.errno in _REASONS:
        return _REASONS[err.errno]
    if err.strerror:
        return err.strerror[0].lower() + err.strerror[1:]
    return str(err) or type(err).__name__


def output_error(
    err: OSError, path: str | os.PathLike[str] | None, what: str = "cannot write"
) -> OutputError:
    """`OutputError` naming the path (the error's own filename when it has one)."""
    where = path if path is not None else err.filename
    return OutputError(f"{what}: {describe_os_error(err)}", path=str(where) if where else None)


def check_output_file(
    path: PathLike,
    *,
    what: str = "output",
    inputs: Mapping[str, PathLike | None] | None = None,
    kind: OutputKind | None = None,
) -> Path:
    """Refuse an output path that is not a regular file (a directory, /dev/full, a FIFO) or whose
    parent is not a writable directory, before any work starts. Returns the path.

    `inputs` ({option: path}): the command's inputs (and its other outputs); an output that is
    one of them (the same path, a hard link or a symlink to it) is refused, so no command ever
    truncates or appends to what it reads. `kind`: what an existing, non-empty output must
    already be (`existing_kind_problem`); a file of another kind is refused, not overwritten."""
    p = Path(path)
    for name, other in (inputs or {}).items():
        if other is not None and same_file(p, other):
            raise OutputError(
                f"{what} is the same file as {name}: a command never writes over what it reads "
                "(choose another path)",
                path=str(p),
            )
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputError(
            f"{what}: a parent of this path is not a directory", path=str(p)
        ) from None
    except OSError as e:
        raise output_error(e, p, f"{what}: cannot access") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        other = "a directory" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
        raise OutputError(f"{what} must be a regular file, not {other}", path=str(p))
    check_output_dir(p.parent if str(p.parent) else Path("."), what=f"{what} folder")
    if st is not None and not os.access(p, os.W_OK):
        raise OutputError(f"{what}: permission denied (read-only)", path=str(p))
    if kind is not None and st is not None and st.st_size > 0:
        problem = existing_kind_problem(p, kind)
        if problem:
            raise OutputError(
                f"{what}: the existing file is not {_KIND_NAMES[kind]} ({problem}); refusing to "
                "overwrite or append to it (move it away or choose another path)",
                path=str(p),
            )
    return p


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether `a` and `b` name the same file: the same inode when both exist (hard links,
    symlinks), else the same resolved path."""
    try:
        sa, sb = os.stat(a), os.stat(b)
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    except (OSError, ValueError):
        pass
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError, ValueError):
        return False


def existing_kind_problem(path: PathLike, kind: OutputKind) -> str | None:
    """Why the existing file at `path` is not of `kind` (None when it is, or is empty). Only its
    first and last 64 KiB are read. A JSONL file's first and last whole lines must be JSON
    objects; what follows its last newline (a partial line left by a kill or a power loss,
    possibly zeros) is not looked at: appending repairs it (`jsonl.repair_tail`)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_PROBE_BYTES)
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - _PROBE_BYTES))
            tail_start, tail = fh.tell(), fh.read(_PROBE_BYTES)
    except OSError as e:
        return describe_os_error(e)
    if not head:
        return None
    if kind == "parquet":
        return None if head.startswith(b"PAR1") else "no Parquet magic bytes"
    if kind == "sqlite":
        return None if head.startswith(b"SQLite format 3\x00") else "no SQLite header"
    if kind != "jsonl":
        if b"\x00" in head:
            return "binary data (NUL bytes)"
        try:
            _decode_prefix(head)
        except UnicodeDecodeError as e:
            return f"not UTF-8 text (byte {e.start})"
        return None
    whole = head[: head.rfind(b"\n") + 1]  # complete lines only (empty: no newline yet)
    if not whole:
        start = head.lstrip(b"\xef\xbb\xbf \t\r")
        return None if start.startswith(b"{") else "line 1 is not a JSON object"
    if b"\x00" in whole:
        return "binary data (NUL bytes)"
    first = next((ln for ln in whole.split(b"\n") if ln.strip()), None)
    if first is not None and not _is_json_object(first):
        return "binary data or text, not JSON: line 1 is not a JSON object"
    lines = tail[: tail.rfind(b"\n") + 1].split(b"\n")
    if tail_start > 0:
        lines = lines[1:]  # the first one may start mid-line
    last = next((ln for ln in reversed(lines) if ln.strip()), None)
    if last is not None and (b"\x00" in last or not _is_json_object(last)):
        return "its last line is not a JSON object"
    return None


def _decode_prefix(data: bytes) -> str:
    """Decode `data` as the start of a UTF-8 text (a character cut at the end is allowed)."""
    return codecs.getincrementaldecoder("utf-8")().decode(data, final=False)


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line.decode("utf-8-sig")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


def check_input_file(path: PathLike, *, what: str | None = None) -> Path:
    """Refuse an input that is missing, a folder, or not a regular file: a device (`/dev/zero`
    never ends), a FIFO or a socket (a read that blocks on a silent writer ignores Ctrl-C, and
    inputs are read more than once: counted, then streamed). Returns the path."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError("file not found", path=str(p), field=what) from None
    except OSError as e:
        raise InputError(
            f"cannot access ({describe_os_error(e)})", path=str(p), field=what
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a directory, not a file", path=str(p), field=what)
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise InputError(
            f"is {kind}, not a regular file (inputs are read more than once: save it to a file)",
            path=str(p),
            field=what,
        )
    return p


def check_output_dir(path: str | os.PathLike[str], *, what: str = "output folder") -> Path:
    """Refuse a folder that is a file, lies under a file, or cannot be written (read-only).
    A missing folder is fine when its nearest existing ancestor is a writable folder."""
    p = Path(path)
    probe = p
    while True:
        try:
            st = os.stat(probe)
            break
        except FileNotFoundError:
            if probe.parent == probe:
                return p
            probe = probe.parent
        except NotADirectoryError:
            raise OutputError(
                f"{what}: a parent of this path is not a directory", path=str(p)
            ) from None
    if not stat.S_ISDIR(st.st_mode):
        where = "is not a directory" if probe == p else f"{probe} is not a directory"
        raise OutputError(f"{what}: {where}", path=str(p))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{what}: not writable (read-only or permission denied)", path=str(p))
    return p


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """fsync every file and folder under `root` (before a folder is swapped into place)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8"
) -> Iterator[IO[Any]]:
    """Write `path` whole or not at all: yields a temp file beside it (same folder), then fsyncs
    it, renames it over `path` and fsyncs the folder. On any error (full disk, a crash of the
    writer) the temp file is removed and `path` keeps its previous content; OS errors become an
    `OutputError` naming `path`. Temp files a killed writer left for the same `path` are
    removed first (one writer per output file)."""
    p = check_output_file(path)
    binary = "b" in mode
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        for stale in p.parent.glob(f".{glob.escape(p.name)}.*.tmp"):  # left by a killed writer
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise output_error(e, p) from None
    with contextlib.suppress(OSError):  # mkstemp makes 0600: give it the mode open() would
        os.fchmod(fd, new_file_mode(p))
    try:
        fh: IO[Any] = os.fdopen(fd, mode, encoding=None if binary else encoding)
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise output_error(e, p) from None
        raise
    fsync_dir(p.parent)


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, else set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: PathLike) -> int:
    """The mode a rewritten `path` gets: the mode it has now, or for a new file what `open()`
    would give it (0666 less the umask; 0644 under umask 022)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """`atomic_write` for a whole text (UTF-8)."""
    with atomic_write(path) as fh:
        fh.write(text)


def open_sqlite_readonly(path: PathLike) -> sqlite3.Connection:
    """Open an existing SQLite file for reading only (`mode=ro`): nothing is created or changed.
    A WAL database on a read-only file system or in a read-only file cannot make its `-shm`
    file; it is then opened `immutable=1` (no one can be writing it). Raises `sqlite3.Error`."""
    from urllib.request import pathname2url

    url = "file:" + pathname2url(os.path.abspath(path))
    db = sqlite3.connect(f"{url}?mode=ro", uri=True)
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return db
    except sqlite3.OperationalError:
        db.close()
        folder = os.path.dirname(os.path.abspath(path))
        if os.access(path, os.W_OK) and os.access(folder, os.W_OK):
            raise
    except BaseException:
        db.close()
        raise
    return sqlite3.connect(f"{url}?immutable=1", uri=True)


def sqlite_tables(path: PathLike, *, what: str = "database") -> set[str]:
    """The table names of an existing SQLite file (empty for a missing or empty file); a file
    that is not SQLite is an `OutputError` naming `what`."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return set()
    from urllib.request import pathname2url

    query = "SELECT name FROM sqlite_master WHERE type='table'"
    try:
        try:
            db = open_sqlite_readonly(path)
        except sqlite3.OperationalError:  # (a full disk: no room for the -shm file)
            url = "file:" + pathname2url(os.path.abspath(path))
            db = sqlite3.connect(f"{url}?immutable=1", uri=True)
        try:
            return {r[0] for r in db.execute(query)}
        finally:
            db.close()
    except sqlite3.Error as e:
        raise OutputError(f"{what}: not a SQLite database ({e})", path=str(path)) from None
