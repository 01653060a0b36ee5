"""Trajectory store: one row per example id (SQLite, or Postgres for several machines), JSONL
export, and a reader for either form.

Write rules (`TrajectoryStore.put`):
- a new id is inserted;
- a stored `failed` record is replaced by any newer record (a retry may succeed);
- a stored finished record (`answered` / `max_turns`, accepted or not) is kept: a later write for
  the same id is ignored unless `overwrite=True`. The id is the primary key, so nothing is duplicated.

The database runs in WAL mode with `synchronous=NORMAL`: each `put` is its own committed
transaction (a killed process loses nothing already committed) without an fsync per record.
Every worker of a run writes the same store: SQLite on one machine (WAL: short write transactions
serialise; measured in benchmarks/generation.py), Postgres (`postgresql://…`) across machines.

One run per store at a time (`run_lock` / `worker_lock`): a driver holds the run lock and waits
until no worker of an earlier run holds a worker lock, so a rerun never races leftover workers
(which would spend model calls twice). SQLite uses `flock` on `<store>.run.lock` and
`<store>.workers.lock` (released by the OS when a process dies); Postgres uses session advisory
locks (released when the session ends).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from masksearch.errors import ConfigError, InputError, OutputError
from masksearch.jsonl import iter_jsonl, write_jsonl
from masksearch.records import TrajectoryRecord, validate_record
from masksearch.redact import redact
from masksearch.store.sql import statements

SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
POSTGRES_SCHEMES = ("postgres://", "postgresql://")
LOCK_WAIT_S = 30.0  # how long a new run waits for an earlier run's workers to stop


def _row(record: TrajectoryRecord, overwrite: bool) -> dict[str, Any]:
    validate_record(record)
    meta = record.get("meta") or {}
    text = redact(json.dumps(record, ensure_ascii=False))  # no key echoed by an error is stored
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"record holds text that is not valid Unicode ({e.reason})") from None
    return {
        "id": record["id"],
        "accepted": int(bool(record["accepted"])),
        "status": record["status"],
        "k": int(meta.get("k", 0) or 0),
        "record": text,
        "created_at": record.get("created_at") or "",
        "overwrite": int(overwrite),
    }


class RecordStore(Protocol):
    """What `generate` and the CLI need from a trajectory store (SQLite or Postgres)."""

    def put(self, record: TrajectoryRecord, *, overwrite: bool = False) -> bool: ...
    def encode(self, record: TrajectoryRecord, *, overwrite: bool = False) -> dict[str, Any]: ...
    def write_rows(self, rows: list[dict[str, Any]]) -> list[bool]: ...
    def is_done(self, example_id: str, *, retry_failed: bool = False) -> bool: ...
    def done_among(self, ids: list[str], *, retry_failed: bool = False) -> set[str]: ...
    def ids(self, *, include_failed: bool = True) -> set[str]: ...
    def records(self, *, accepted_only: bool = False) -> Iterator[TrajectoryRecord]: ...
    def stats(self) -> dict[str, Any]: ...
    def export_jsonl(self, path: str | os.PathLike[str], *, accepted_only: bool = True) -> int: ...
    def worker_lock(self) -> contextlib.AbstractContextManager[None]: ...
    def close(self) -> None: ...
    def __len__(self) -> int: ...


def is_postgres(spec: str | os.PathLike[str]) -> bool:
    return isinstance(spec, str) and spec.startswith(POSTGRES_SCHEMES)


def open_store(spec: str | os.PathLike[str]) -> TrajectoryStore:
    """`postgresql://…` → a Postgres store; anything else → a SQLite file."""
    if is_postgres(spec):
        return PostgresTrajectoryStore(str(spec))
    return TrajectoryStore(spec)


def store_label(spec: str | os.PathLike[str]) -> str:
    """A store or checkpointer URL for printing (a password hidden)."""
    from masksearch.redact import redact_url_credentials

    return redact_url_credentials(str(spec), mask="***")


def check_is_trajectory_store(path: str | os.PathLike[str], what: str = "--store") -> None:
    """Refuse an existing SQLite file that holds tables but no `trajectories` table (a LangGraph
    checkpoint database, another program's database): opening it as a store would add a table
    to a foreign file. A missing or empty file is fine (a new store)."""
    from masksearch.fileio import sqlite_tables

    tables = sqlite_tables(path, what=what)
    if tables and "trajectories" not in tables:
        hint = " (a LangGraph checkpoint database?)" if "checkpoints" in tables else ""
        raise OutputError(
            f"{what}: not a trajectory store: it holds tables {', '.join(sorted(tables)[:5])}"
            f"{hint}; refusing to add a table to it",
            path=str(path),
        )


class TrajectoryStore:
    """SQLite-backed trajectory store keyed by example id (one shared connection).

    Every read and write runs a statement of `store_sql.STATEMENTS` by name, in the store's
    dialect; `PostgresTrajectoryStore` differs only in its connection and its locks."""

    _sql: dict[str, str] = statements("sqlite")
    _write_errors: tuple[type[Exception], ...] = (sqlite3.OperationalError,)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(50):  # processes opening a new store at once can see "locked"
            try:
                self._db = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(self._sql["schema"])
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 49:
                    raise InputError(
                        f"cannot open trajectory store ({e})", path=str(self.path)
                    ) from None
                self._db.close()
                time.sleep(0.05 + 0.01 * attempt)
            except sqlite3.DatabaseError as e:
                raise InputError(f"not a trajectory store ({e})", path=str(self.path)) from None

    # -- writing ---------------------------------------------------------------
    def put(self, record: TrajectoryRecord, *, overwrite: bool = False) -> bool:
        """Store one record; return True if it was written (see the module docstring's rules).
        A record that cannot be stored raises `InputError`; a store that cannot be written
        (disk full, read-only) raises `OutputError`."""
        row = _row(record, overwrite)
        try:
            cur = self._db.execute(self._sql["upsert"], row)
        except self._write_errors as e:
            raise self._write_error(e) from None
        return bool(cur.rowcount > 0)

    def put_many(self, records: Iterable[TrajectoryRecord], *, overwrite: bool = False) -> int:
        """Store several records in one transaction; return how many were written."""
        return sum(self.write_rows([_row(r, overwrite) for r in records]))

    def encode(self, record: TrajectoryRecord, *, overwrite: bool = False) -> dict[str, Any]:
        """The row for `record` (validated, JSON, secrets redacted), for `write_rows`; raises
        `InputError` for a record that cannot be stored."""
        return _row(record, overwrite)

    def write_rows(self, rows: list[dict[str, Any]]) -> list[bool]:
        """Write encoded rows in one transaction (the `put` rules); which ones were written.
        A store that cannot be written raises `OutputError`, after committing the rows written
        before the error if it still can."""
        if not rows:
            return []
        db, upsert = self._db, self._sql["upsert"]
        try:
            db.execute(self._sql["begin_write"])
        except self._write_errors as e:
            raise self._write_error(e) from None
        written: list[bool] = []
        try:
            for row in rows:
                written.append(db.execute(upsert, row).rowcount > 0)
        except self._write_errors as e:  # e.g. disk full: keep the rows written before it
            try:  # (SQLite commits them; an aborted Postgres transaction rolls back)
                db.execute("COMMIT")
            except Exception:  # noqa: BLE001 - the connection may be gone too
                with contextlib.suppress(Exception):
                    db.execute("ROLLBACK")
            raise self._write_error(e) from None
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return written

    def _write_error(self, e: Exception) -> OutputError:
        return OutputError(f"cannot write the trajectory store ({e})", path=str(self.path))

    # -- one run at a time ------------------------------------------------------
    @contextlib.contextmanager
    def run_lock(self, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
        """Held by a run's driver: fails if another run holds it; waits (up to `wait_s`) until
        no worker of an earlier run still holds its worker lock."""
        run = _flock_file(self.path, "run")
        try:
            try:
                fcntl.flock(run, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    f"another generate run is writing to {self.path} (wait for it or stop it)"
                ) from None
            workers = _flock_file(self.path, "workers")
            try:
                deadline = time.monotonic() + wait_s
                while True:
                    try:
                        fcntl.flock(workers, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise ConfigError(
                                f"workers of an earlier run still write to {self.path}"
                            ) from None
                        time.sleep(0.1)
                fcntl.flock(workers, fcntl.LOCK_UN)
            finally:
                os.close(workers)
            yield
        finally:
            os.close(run)

    @contextlib.contextmanager
    def worker_lock(self) -> Iterator[None]:
        """Held by every worker while it writes (shared; dropped by the OS if it dies)."""
        fd = _flock_file(self.path, "workers")
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- reading ---------------------------------------------------------------
    def _one(self, name: str, **params: Any) -> Any:
        return self._db.execute(self._sql[name], params).fetchone()

    def get(self, example_id: str) -> TrajectoryRecord | None:
        row = self._one("record_of", id=example_id)
        return json.loads(row[0]) if row else None

    def __contains__(self, example_id: object) -> bool:
        return self._one("status_of", id=example_id) is not None

    def is_done(self, example_id: str, *, retry_failed: bool = False) -> bool:
        """True if `example_id` is stored (and, with `retry_failed`, did not fail)."""
        row = self._one("status_of", id=example_id)
        return row is not None and not (retry_failed and row[0] == "failed")

    def done_among(self, ids: list[str], *, retry_failed: bool = False) -> set[str]:
        """Those of `ids` that `is_done` (one query)."""
        if not ids:
            return set()
        rows = self._db.execute(self._sql["status_among"], {"ids": json.dumps(list(ids))})
        return {i for i, status in rows if not (retry_failed and status == "failed")}

    def __len__(self) -> int:
        return int(self._one("count")[0])

    def ids(self, *, include_failed: bool = True) -> set[str]:
        """Ids already stored (optionally leaving out failed ones, which a retry may redo)."""
        sql = self._sql["ids" if include_failed else "ids_not_failed"]
        return {r[0] for r in self._db.execute(sql)}

    def records(self, *, accepted_only: bool = False) -> Iterator[TrajectoryRecord]:
        """Records in insertion order."""
        sql = self._sql["accepted_records" if accepted_only else "records"]
        for (text,) in self._db.execute(sql):
            yield json.loads(text)

    def stats(self) -> dict[str, Any]:
        """count, accepted, accept_rate, by_status {status: n}, by_k {k: {count, accepted}}."""
        count, accepted = (int(v) for v in self._one("totals"))
        by_status = {s: int(n) for s, n in self._db.execute(self._sql["by_status"])}
        by_k = {
            int(k): {"count": int(n), "accepted": int(a)}
            for k, n, a in self._db.execute(self._sql["by_k"])
        }
        return {
            "count": count,
            "accepted": accepted,
            "accept_rate": accepted / count if count else 0.0,
            "by_status": by_status,
            "by_k": by_k,
        }

    def export_jsonl(self, path: str | os.PathLike[str], *, accepted_only: bool = True) -> int:
        """Write records to JSONL atomically (temp file + rename); return the count."""
        return write_jsonl(path, self.records(accepted_only=accepted_only))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TrajectoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _flock_file(store: Path, name: str) -> int:
    return os.open(store.with_name(f"{store.name}.{name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)


class PostgresTrajectoryStore(TrajectoryStore):
    """The same store in Postgres (`postgresql://user@host/db`), for workers on several machines.

    Same rows and write rules as SQLite (`INSERT … ON CONFLICT (id) DO UPDATE … WHERE failed`);
    needs the `postgres` extra (psycopg). `table` picks the table (default `trajectories`).
    """

    _db: Any  # a psycopg connection (psycopg is an optional extra)

    def __init__(self, dsn: str, table: str = "trajectories") -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError(
                "a postgresql:// store needs psycopg: pip install 'masksearch[postgres]'"
            ) from None
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
            raise ConfigError(f"bad table name {table!r}")
        self.path = Path(store_label(dsn))  # for messages only
        self.dsn, self.table = dsn, table
        self._sql = statements("postgres", table)
        self._write_errors = (psycopg.OperationalError,)
        try:
            self._db = psycopg.connect(dsn, autocommit=True)
            self._db.execute(self._sql["schema"])
        except psycopg.Error as e:
            raise ConfigError(
                f"cannot open Postgres store {store_label(dsn)}: {_pg_error(e)}"
            ) from None
        key = hashlib.blake2b(f"{table}".encode(), digest_size=7).digest()
        self._run_key = int.from_bytes(key, "big")
        self._workers_key = self._run_key + 1

    def _write_error(self, e: Exception) -> OutputError:
        return OutputError(f"cannot write the trajectory store ({_pg_error(e)})")

    @contextlib.contextmanager
    def run_lock(self, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
        import psycopg

        lock: Any = psycopg.connect(self.dsn, autocommit=True)  # its own session: held until closed
        try:
            if not lock.execute("SELECT pg_try_advisory_lock(%s)", (self._run_key,)).fetchone()[0]:
                raise ConfigError(
                    f"another generate run is writing to {self.path} (wait for it or stop it)"
                )
            deadline = time.monotonic() + wait_s
            while not lock.execute(
                "SELECT pg_try_advisory_lock(%s)", (self._workers_key,)
            ).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise ConfigError(f"workers of an earlier run still write to {self.path}")
                time.sleep(0.2)
            lock.execute("SELECT pg_advisory_unlock(%s)", (self._workers_key,))
            yield
        finally:
            lock.close()

    @contextlib.contextmanager
    def worker_lock(self) -> Iterator[None]:
        self._db.execute("SELECT pg_advisory_lock_shared(%s)", (self._workers_key,))
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                self._db.execute("SELECT pg_advisory_unlock_shared(%s)", (self._workers_key,))

    def close(self) -> None:
        self._db.close()


def _pg_error(e: Exception) -> str:
    """The first line of a driver error, without anything that echoes a password."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return re.sub(r"password=\S+", "password=***", line)[:200]


def store_count(path: str | Path) -> int:
    """Rows in a SQLite trajectory store (read-only; 0 before it exists)."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def iter_records(
    path: str | os.PathLike[str], *, accepted_only: bool = False, skip_bad: bool = False
) -> Iterator[TrajectoryRecord]:
    """Read trajectory records from a store (`.sqlite`/`.sqlite3`/`.db`) or a JSONL export.

    Every record is checked with `validate_record`; a bad one raises `InputError` naming the
    file, the line (JSONL) or row id (SQLite), and the field — or is skipped with `skip_bad`.
    """
    if is_postgres(path):
        with open_store(path) as store:
            yield from store.records(accepted_only=accepted_only)
        return
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", path=str(p))
    if p.suffix.lower() in SQLITE_SUFFIXES:
        yield from _iter_sqlite(p, accepted_only, skip_bad)
        return
    for lineno, obj in iter_jsonl(p, skip_bad=skip_bad):
        try:
            rec = validate_record(obj, path=str(p), line=lineno)
        except InputError:
            if skip_bad:
                continue
            raise
        if not accepted_only or rec["accepted"]:
            yield rec


def _iter_sqlite(p: Path, accepted_only: bool, skip_bad: bool) -> Iterator[TrajectoryRecord]:
    from masksearch.fileio import open_sqlite_readonly

    try:
        db = open_sqlite_readonly(p)  # an archived store on a read-only disk exports too
        rows = db.execute(
            "SELECT rowid, id, record FROM trajectories"
            + (" WHERE accepted = 1" if accepted_only else "")
            + " ORDER BY rowid"
        )
    except sqlite3.DatabaseError as e:
        raise InputError(f"not a trajectory store ({e})", path=str(p)) from None
    try:
        for rowid, rid, text in rows:
            try:
                try:
                    obj = json.loads(text)
                except (TypeError, json.JSONDecodeError) as e:
                    raise InputError(
                        f"row id {rid!r}: invalid JSON ({e})",
                        path=str(p),
                        line=rowid,
                        field="record",
                    ) from None
                yield validate_record(obj, path=str(p), line=rowid)
            except InputError:
                if not skip_bad:
                    raise
    finally:
        db.close()
