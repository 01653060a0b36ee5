"""Trajectory store: one SQLite row per example id, JSONL export, and a reader for either form.

Write rules (`TrajectoryStore.put`):
- a new id is inserted;
- a stored `failed` record is replaced by any newer record (a retry may succeed);
- a stored finished record (`answered` / `max_turns`, accepted or not) is kept: a later write for
  the same id is ignored unless `overwrite=True`. The id is the primary key, so nothing is duplicated.

The database runs in WAL mode with `synchronous=NORMAL`: each `put` is its own committed
transaction (a killed process loses nothing already committed) without an fsync per record.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from masksearch.errors import InputError, OutputError
from masksearch.jsonl import iter_jsonl, write_jsonl
from masksearch.records import TrajectoryRecord, validate_record
from masksearch.redact import redact

SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trajectories (
    id TEXT PRIMARY KEY,
    accepted INTEGER NOT NULL,
    status TEXT NOT NULL,
    k INTEGER NOT NULL,
    record JSON NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trajectories_accepted ON trajectories(accepted);
"""

# Insert, or replace only a stored failure (or anything, when :overwrite is 1).
_UPSERT = """
INSERT INTO trajectories (id, accepted, status, k, record, created_at)
VALUES (:id, :accepted, :status, :k, :record, :created_at)
ON CONFLICT(id) DO UPDATE SET
    accepted = excluded.accepted, status = excluded.status, k = excluded.k,
    record = excluded.record, created_at = excluded.created_at
WHERE trajectories.status = 'failed' OR :overwrite
"""


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


class TrajectoryStore:
    """SQLite-backed trajectory store keyed by example id (one shared connection)."""

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
                self._db.executescript(_SCHEMA)
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
            cur = self._db.execute(_UPSERT, row)
        except sqlite3.OperationalError as e:
            raise OutputError(
                f"cannot write the trajectory store ({e})", path=str(self.path)
            ) from None
        return cur.rowcount > 0

    def put_many(self, records: Iterable[TrajectoryRecord], *, overwrite: bool = False) -> int:
        """Store several records in one transaction; return how many were written."""
        rows = [_row(r, overwrite) for r in records]
        n = 0
        with self._transaction():
            for row in rows:
                n += self._db.execute(_UPSERT, row).rowcount
        return n

    def _transaction(self):
        db = self._db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, *_):
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    # -- reading ---------------------------------------------------------------
    def get(self, example_id: str) -> TrajectoryRecord | None:
        row = self._db.execute(
            "SELECT record FROM trajectories WHERE id = ?", (example_id,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def __contains__(self, example_id: object) -> bool:
        return (
            self._db.execute("SELECT 1 FROM trajectories WHERE id = ?", (example_id,)).fetchone()
            is not None
        )

    def is_done(self, example_id: str, *, retry_failed: bool = False) -> bool:
        """True if `example_id` is stored (and, with `retry_failed`, did not fail)."""
        row = self._db.execute(
            "SELECT status FROM trajectories WHERE id = ?", (example_id,)
        ).fetchone()
        return row is not None and not (retry_failed and row[0] == "failed")

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0]

    def ids(self, *, include_failed: bool = True) -> set[str]:
        """Ids already stored (optionally leaving out failed ones, which a retry may redo)."""
        sql = "SELECT id FROM trajectories" + (
            "" if include_failed else " WHERE status != 'failed'"
        )
        return {r[0] for r in self._db.execute(sql)}

    def records(self, *, accepted_only: bool = False) -> Iterator[TrajectoryRecord]:
        """Records in insertion order."""
        sql = "SELECT record FROM trajectories" + (" WHERE accepted = 1" if accepted_only else "")
        for (text,) in self._db.execute(sql + " ORDER BY rowid"):
            yield json.loads(text)

    def stats(self) -> dict[str, Any]:
        """count, accepted, accept_rate, by_status {status: n}, by_k {k: {count, accepted}}."""
        db = self._db
        count, accepted = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(accepted), 0) FROM trajectories"
        ).fetchone()
        by_status = dict(
            db.execute("SELECT status, COUNT(*) FROM trajectories GROUP BY status ORDER BY status")
        )
        by_k = {
            k: {"count": n, "accepted": a}
            for k, n, a in db.execute(
                "SELECT k, COUNT(*), SUM(accepted) FROM trajectories GROUP BY k ORDER BY k"
            )
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


def iter_records(
    path: str | os.PathLike[str], *, accepted_only: bool = False, skip_bad: bool = False
) -> Iterator[TrajectoryRecord]:
    """Read trajectory records from a store (`.sqlite`/`.sqlite3`/`.db`) or a JSONL export.

    Every record is checked with `validate_record`; a bad one raises `InputError` naming the
    file, the line (JSONL) or row id (SQLite), and the field — or is skipped with `skip_bad`.
    """
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
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
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
