"""The Postgres trajectory store: the SQLite store's write rules on a real server, one run per
store (advisory locks), and `generate` end to end, each in a database of its own. Uses
`MASKSEARCH_TEST_POSTGRES_DSN`, else starts a throwaway server from the installed binaries
(`conftest.pg_server`); skipped, saying so, when neither is available."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import NO_POSTGRES, fresh_database  # tests/ is on sys.path (pytest rootdir)
from test_pipeline_store import make_record

from masksearch.errors import ConfigError
from masksearch.pipeline.generate import GenerateSettings, generate
from masksearch.pipeline.testing import TeamSetup, masked_row
from masksearch.store.trajectories import PostgresTrajectoryStore, iter_records, open_store
from masksearch.types import MaskedExample

pytest.importorskip("psycopg")


@pytest.fixture
def pg_dsn(pg_server):
    if pg_server is None:
        pytest.skip(NO_POSTGRES)
    return fresh_database(pg_server)


@pytest.fixture
def pg_store(pg_dsn, request):
    table = "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:40]
    with PostgresTrajectoryStore(pg_dsn, table=table) as st:
        st._db.execute(f"TRUNCATE {table}")
        yield st


def test_write_rules_match_sqlite(pg_store, tmp_path):
    st = pg_store
    assert st.put(make_record(1))
    assert not st.put(make_record(1, final_answer="other"))  # a finished record is kept
    assert st.put(make_record("f", status="failed", accepted=False))
    assert st.put(make_record("f", status="failed", accepted=False, error="second"))
    assert st.put(make_record("f"))  # a retry replaces a failure...
    assert not st.put(make_record("f", status="failed", accepted=False))  # ...never the reverse
    assert st.put_many([make_record(2, k=2, accepted=False), make_record(3)]) == 2
    assert len(st) == 4 and "2" in st and st.is_done("2") and not st.is_done("9")
    assert [r["id"] for r in st.records()] == ["1", "f", "2", "3"]  # insertion order
    stats = st.stats()
    assert stats["count"] == 4 and stats["accepted"] == 3
    assert stats["by_status"] == {"answered": 4} and stats["by_k"][2] == {"count": 1, "accepted": 0}
    assert st.export_jsonl(tmp_path / "x.jsonl", accepted_only=False) == 4
    assert list(iter_records(tmp_path / "x.jsonl")) == list(st.records())


def test_one_run_per_store(pg_store):
    with pg_store.run_lock(), pytest.raises(ConfigError, match="another generate run"):
        with pg_store.run_lock():
            pass
    with pg_store.worker_lock(), pytest.raises(ConfigError, match="earlier run"):
        with pg_store.run_lock(wait_s=0.3):  # a live worker of an earlier run blocks a new run
            pass
    with pg_store.run_lock():  # all released
        pass


def test_generate_into_postgres_and_resume(pg_dsn):
    res = TeamSetup()()
    from masksearch.graph import Context

    ctx = Context(
        planner_model="fake:team",
        rewriter_model="fake:team",
        observer_model="fake:team",
        retriever="mem:team",
        max_turns=1,
    )
    examples = [MaskedExample.from_dict(masked_row(i)) for i in range(12)]
    with open_store(pg_dsn) as st:
        st._db.execute("DROP TABLE IF EXISTS trajectories")
    s = asyncio.run(
        generate(
            examples[:8],
            ctx,
            pg_dsn,
            GenerateSettings(checkpointer_url="memory", concurrency=4, progress=False),
            resources=res,
        )
    )
    assert s.done == 8 and s.accepted == 8
    s = asyncio.run(
        generate(
            examples,
            ctx,
            pg_dsn,
            GenerateSettings(checkpointer_url="memory", concurrency=4, progress=False),
            resources=res,
        )
    )
    assert s.done == 4 and s.skipped_existing == 8
    records = list(iter_records(pg_dsn))
    assert sorted(r["id"] for r in records) == sorted(e.id for e in examples)
    assert json.loads(json.dumps(records)) == records
