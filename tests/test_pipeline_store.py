"""Trajectory store: upsert rules, dedup, stats, atomic export, iter_records and its errors.
The write rules run against both stores (`store_spec`: SQLite, then Postgres)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from masksearch.context import Context
from masksearch.errors import InputError
from masksearch.graph.records import failed_record
from masksearch.store.trajectories import TrajectoryStore, iter_records, open_store
from masksearch.types import MaskedExample, Span


def make_record(i: int | str, status: str = "answered", accepted: bool = True, k: int = 1, **extra):
    spans = [Span(0, 1, "x")] * k
    ex = MaskedExample(id=str(i), question=f"q{i}", answers=["a"] * k, spans=spans)
    rec = failed_record(ex, Context(), "boom")
    rec.update(
        status=status,
        accepted=accepted,
        error=None if status != "failed" else "boom",
        final_answer="a",
        messages=[{"role": "user", "content": f"q{i}"}],
    )
    rec.update(extra)
    return rec


def test_put_insert_and_dedup(store_spec):
    with open_store(store_spec) as st:
        assert st.put(make_record(1))
        assert not st.put(make_record(1, final_answer="other"))  # finished record is kept
        assert len(st) == 1
        assert st.get("1")["final_answer"] == "a"
        assert st.put(make_record(1, final_answer="other"), overwrite=True)
        assert st.get("1")["final_answer"] == "other"
        assert len(st) == 1


def test_failed_is_replaced_but_never_replaces_success(store_spec):
    with open_store(store_spec) as st:
        assert st.put(make_record("f", status="failed", accepted=False))
        assert st.put(make_record("f", status="failed", accepted=False, error="second"))
        assert st.get("f")["error"] == "second"
        assert st.put(make_record("f"))  # retry succeeded
        assert st.get("f")["status"] == "answered"
        assert not st.put(make_record("f", status="failed", accepted=False))  # no downgrade
        assert st.get("f")["status"] == "answered"
        assert st.ids(include_failed=False) == {"f"}


def test_stats_ids_and_put_many(store_spec):
    with open_store(store_spec) as st:
        n = st.put_many(
            [
                make_record(1, k=1),
                make_record(2, k=2, accepted=False),
                make_record(3, status="failed", accepted=False, k=2),
                make_record(1, k=1),
            ]
        )
        assert n == 3
        s = st.stats()
        assert s["count"] == 3 and s["accepted"] == 1
        assert s["by_status"] == {"answered": 2, "failed": 1}
        assert s["by_k"] == {1: {"count": 1, "accepted": 1}, 2: {"count": 2, "accepted": 0}}
        assert st.ids() == {"1", "2", "3"} and st.ids(include_failed=False) == {"1", "2"}
        assert "3" in st and "9" not in st
        assert st.done_among(["1", "3", "9"]) == {"1", "3"}
        assert st.done_among(["1", "3", "9"], retry_failed=True) == {"1"}  # a failure is redone
        assert [r["id"] for r in st.records()] == ["1", "2", "3"]  # insertion order
        assert [r["id"] for r in st.records(accepted_only=True)] == ["1"]


def test_store_rejects_invalid_record(tmp_path):
    rec = make_record(1)
    del rec["question"]
    with TrajectoryStore(tmp_path / "t.sqlite") as st, pytest.raises(InputError, match="question"):
        st.put(rec)


def test_wal_mode_and_reopen(tmp_path):
    path = tmp_path / "t.sqlite"
    with TrajectoryStore(path) as st:
        st.put(make_record(1))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with TrajectoryStore(path) as st:
        assert st.ids() == {"1"}


def test_export_atomic_and_round_trip(tmp_path):
    out = tmp_path / "out" / "traj.jsonl"
    with TrajectoryStore(tmp_path / "t.sqlite") as st:
        st.put_many([make_record(1), make_record(2, accepted=False), make_record(3)])
        assert st.export_jsonl(out) == 2
        assert not list(out.parent.glob("*.tmp"))
        assert [r["id"] for r in iter_records(out)] == ["1", "3"]
        assert st.export_jsonl(out, accepted_only=False) == 3
    assert [r["id"] for r in iter_records(out)] == ["1", "2", "3"]
    assert [r["id"] for r in iter_records(tmp_path / "t.sqlite")] == ["1", "2", "3"]
    assert [r["id"] for r in iter_records(tmp_path / "t.sqlite", accepted_only=True)] == ["1", "3"]


def test_iter_records_errors_name_file_line_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = json.dumps(make_record(1))
    broken = make_record(2)
    broken["accepted"] = "yes"
    bad.write_text(good + "\n" + json.dumps(broken) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(InputError) as ei:
        list(iter_records(bad))
    assert ei.value.path == str(bad) and ei.value.line == 2 and ei.value.field == "accepted"
    assert [r["id"] for r in iter_records(bad, skip_bad=True)] == ["1"]

    with pytest.raises(InputError, match="not found"):
        list(iter_records(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        list(iter_records(empty))
    notdb = tmp_path / "x.sqlite"
    notdb.write_text("hello, not sqlite" * 100)
    with pytest.raises(InputError, match="not a trajectory store"):
        list(iter_records(notdb))


def test_iter_records_sqlite_corrupt_row(tmp_path):
    path = tmp_path / "t.sqlite"
    with TrajectoryStore(path) as st:
        st.put(make_record(1))
    db = sqlite3.connect(path)
    db.execute("INSERT INTO trajectories VALUES ('2', 1, 'answered', 0, '{\"id\": \"2\"}', '')")
    db.commit()
    db.close()
    with pytest.raises(InputError) as ei:
        list(iter_records(path))
    assert ei.value.field == "question" and ei.value.path == str(path)
