"""Crash-safe output files: atomic writes (temp file, fsync, rename, fsync of the directory),
checks that an output path is writable before any work starts, and OS errors turned into one
located line (`OutputError`).

Every file the project writes whole (exports, `summary.json`, manifests) goes through
`atomic_write`: a crash or a full disk at any moment leaves either the old file or the new one,
never a half-written file, and never a leftover temp file.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from masksearch.errors import OutputError

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


def check_output_file(path: str | os.PathLike[str], *, what: str = "output") -> Path:
    """Refuse an output path that is not a regular file (a directory, /dev/full, a FIFO) or whose
    parent is not a writable directory, before any work starts. Returns the path."""
    p = Path(path)
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
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
        raise OutputError(f"{what} must be a regular file, not {kind}", path=str(p))
    check_output_dir(p.parent if str(p.parent) else Path("."), what=f"{what} folder")
    if st is not None and not os.access(p, os.W_OK):
        raise OutputError(f"{what}: permission denied (read-only)", path=str(p))
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


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """`atomic_write` for a whole text (UTF-8)."""
    with atomic_write(path) as fh:
        fh.write(text)
