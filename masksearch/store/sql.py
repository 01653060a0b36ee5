"""The trajectory store's SQL: one table, each statement written for SQLite and for Postgres side
by side (the same columns, rules and parameters by name; no translation between them).

The two dialects differ in: parameter style (`:name` / `%(name)s`), insertion order (SQLite's
`rowid` / a Postgres `BIGSERIAL` column `seq`), the `record` column type, a list parameter (ids
as a JSON array: `json_each` / `jsonb_array_elements_text`), and how a write transaction starts
(`BEGIN IMMEDIATE` takes SQLite's write lock at once, so concurrent writers queue instead of
failing on upgrade). `{t}` is the table name (always `trajectories` in SQLite).
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["sqlite", "postgres"]

# name: (SQLite, Postgres)
STATEMENTS: dict[str, tuple[str, str]] = {
    "schema": (
        """
        CREATE TABLE IF NOT EXISTS {t} (
            id TEXT PRIMARY KEY,
            accepted INTEGER NOT NULL,
            status TEXT NOT NULL,
            k INTEGER NOT NULL,
            record JSON NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {t}_accepted ON {t}(accepted);
        """,
        """
        CREATE TABLE IF NOT EXISTS {t} (
            seq BIGSERIAL,
            id TEXT PRIMARY KEY,
            accepted INTEGER NOT NULL,
            status TEXT NOT NULL,
            k INTEGER NOT NULL,
            record TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {t}_seq ON {t}(seq);
        CREATE INDEX IF NOT EXISTS {t}_accepted ON {t}(accepted);
        """,
    ),
    # insert, or replace only a stored failure (or anything, when `overwrite` is 1)
    "upsert": (
        """
        INSERT INTO {t} (id, accepted, status, k, record, created_at)
        VALUES (:id, :accepted, :status, :k, :record, :created_at)
        ON CONFLICT(id) DO UPDATE SET
            accepted = excluded.accepted, status = excluded.status, k = excluded.k,
            record = excluded.record, created_at = excluded.created_at
        WHERE {t}.status = 'failed' OR :overwrite
        """,
        """
        INSERT INTO {t} (id, accepted, status, k, record, created_at)
        VALUES (%(id)s, %(accepted)s, %(status)s, %(k)s, %(record)s, %(created_at)s)
        ON CONFLICT(id) DO UPDATE SET
            accepted = excluded.accepted, status = excluded.status, k = excluded.k,
            record = excluded.record, created_at = excluded.created_at
        WHERE {t}.status = 'failed' OR %(overwrite)s::int = 1
        """,
    ),
    "begin_write": ("BEGIN IMMEDIATE", "BEGIN"),
    "record_of": (
        "SELECT record FROM {t} WHERE id = :id",
        "SELECT record FROM {t} WHERE id = %(id)s",
    ),
    "status_of": (
        "SELECT status FROM {t} WHERE id = :id",
        "SELECT status FROM {t} WHERE id = %(id)s",
    ),
    "status_among": (  # `ids`: a JSON array
        "SELECT id, status FROM {t} WHERE id IN (SELECT value FROM json_each(:ids))",
        "SELECT id, status FROM {t} WHERE id IN (SELECT jsonb_array_elements_text(%(ids)s::jsonb))",
    ),
    "count": ("SELECT COUNT(*) FROM {t}", "SELECT COUNT(*) FROM {t}"),
    "ids": ("SELECT id FROM {t}", "SELECT id FROM {t}"),
    "ids_not_failed": (
        "SELECT id FROM {t} WHERE status != 'failed'",
        "SELECT id FROM {t} WHERE status != 'failed'",
    ),
    "records": (
        "SELECT record FROM {t} ORDER BY rowid",
        "SELECT record FROM {t} ORDER BY seq",
    ),
    "accepted_records": (
        "SELECT record FROM {t} WHERE accepted = 1 ORDER BY rowid",
        "SELECT record FROM {t} WHERE accepted = 1 ORDER BY seq",
    ),
    "totals": (
        "SELECT COUNT(*), COALESCE(SUM(accepted), 0) FROM {t}",
        "SELECT COUNT(*), COALESCE(SUM(accepted), 0) FROM {t}",
    ),
    "by_status": (
        "SELECT status, COUNT(*) FROM {t} GROUP BY status ORDER BY status",
        "SELECT status, COUNT(*) FROM {t} GROUP BY status ORDER BY status",
    ),
    "by_k": (
        "SELECT k, COUNT(*), SUM(accepted) FROM {t} GROUP BY k ORDER BY k",
        "SELECT k, COUNT(*), SUM(accepted) FROM {t} GROUP BY k ORDER BY k",
    ),
}


def statements(dialect: Dialect, table: str = "trajectories") -> dict[str, str]:
    """Every statement of `STATEMENTS` in `dialect`, for `table`."""
    column = 0 if dialect == "sqlite" else 1
    return {name: pair[column].replace("{t}", table) for name, pair in STATEMENTS.items()}
