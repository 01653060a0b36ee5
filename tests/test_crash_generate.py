"""Crash test: `generate` in a subprocess with simulated model latency, killed with SIGKILL
mid-batch, then restarted with the same command → every example exactly once (0 lost,
0 duplicated), the in-flight ones resumed from the checkpointer. The kill test runs against
both stores (`store_spec`: SQLite with its SQLite checkpointer, Postgres with Postgres's)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from masksearch.graph import Context, thread_id_for
from masksearch.store.trajectories import is_postgres, iter_records
from masksearch.types import MaskedExample, Span

N = 40

DRIVER = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
import typer
from masksearch.graph.testing import KeywordRetriever
from masksearch.pipeline import commands
from masksearch.pipeline.testing import LatencyChatModel, team_respond
from masksearch.resources import Resources
from masksearch.types import Passage

# the same model/retriever a `fake:` spec would give, plus 80 ms of latency per call
res = Resources(
    models={"fake:slow": LatencyChatModel(
        respond=team_respond(lambda q: q.split()[1]), latency_s=0.08)},
    retrievers={"mem:crash": KeywordRetriever(
        [Passage(f"p{i}", f"T{i}", f"Item {i} is about number {i}.") for i in range(50)])},
)
app = typer.Typer()
app.callback()(lambda: None)  # `generate` stays a subcommand (the only one registered here)
commands.register(app)
app(sys.argv[1:], prog_name="masksearch", obj=res)
"""


def _query(spec, sql: str) -> list[tuple]:
    """Rows of `sql` on a SQLite file or a Postgres DSN; none before its table exists."""
    if is_postgres(spec):
        import psycopg

        try:
            with psycopg.connect(spec) as db:
                return list(db.execute(sql))
        except psycopg.errors.UndefinedTable:
            return []
    if not os.path.exists(spec):
        return []
    db = sqlite3.connect(f"file:{spec}?mode=ro", uri=True, timeout=5)
    try:
        return list(db.execute(sql))
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise
    finally:
        db.close()


def store_count(spec) -> int:
    return len(_query(spec, "SELECT id FROM trajectories"))


def _generate_cmd(tmp_path, store=None):
    """Write N masked examples and the driver; return (generate command, store spec)."""
    data = tmp_path / "masked.jsonl"
    with data.open("w") as fh:
        for i in range(N):
            ex = MaskedExample(
                id=f"ex{i}",
                question=f"Item {i} is about number [mask].",
                answers=[str(i)],
                spans=[Span(0, len(str(i)), str(i))],
            )
            fh.write(json.dumps(ex.to_dict()) + "\n")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    store = store or str(tmp_path / "traj.sqlite")
    cmd = [
        sys.executable,
        str(driver),
        "generate",
        "--input",
        str(data),
        "--store",
        str(store),
        "--planner-model",
        "fake:slow",
        "--retriever",
        "mem:crash",
        "--max-turns",
        "2",
        "--concurrency",
        "4",
        "--no-progress",
        "--durability",
        "sync",  # every step checkpointed: the examples in flight at a kill resume mid-example
    ]
    return cmd, store


def test_kill_9_mid_batch_then_resume(tmp_path, store_spec):
    cmd, store = _generate_cmd(tmp_path, store_spec.replace("t.sqlite", "traj.sqlite"))
    # the checkpointer: next to a SQLite store, in a Postgres store's database
    ckpt = store if is_postgres(store) else str(tmp_path / "traj.ckpt.sqlite")
    cmd += ["--export", str(tmp_path / "all.jsonl"), "--export-all"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while store_count(store) < 8:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    written = store_count(store)
    assert 8 <= written < N, written
    stored = {r[0] for r in _query(store, "SELECT id FROM trajectories")}
    threads = {r[0] for r in _query(ckpt, "SELECT DISTINCT thread_id FROM checkpoints")}
    # the CLI's context for these flags (same fingerprint -> same deterministic thread ids)
    ctx = Context(
        planner_model="fake:slow",
        rewriter_model="fake:slow",
        observer_model="fake:slow",
        retriever="mem:crash",
        max_turns=2,
    )
    in_flight = [
        f"ex{i}"
        for i in range(N)
        if f"ex{i}" not in stored and thread_id_for(f"ex{i}", ctx) in threads
    ]

    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert f"skipped: {written} already in store" in out
    resumed = [ex_id for ex_id in in_flight if f"resuming {ex_id} at" in out]
    if len(in_flight) >= 2:  # (one killed while saving its very first checkpoint starts fresh)
        assert resumed, in_flight  # examples running at the kill continued from their checkpoints

    records = list(iter_records(tmp_path / "all.jsonl"))
    ids = [r["id"] for r in records]
    assert len(ids) == N and set(ids) == {f"ex{i}" for i in range(N)}  # 0 lost, 0 duplicated
    assert all(r["status"] == "answered" and r["accepted"] for r in records)
    if not is_postgres(store):
        assert _query(store, "PRAGMA integrity_check")[0][0] == "ok"
    assert _query(store, "SELECT COUNT(*), COUNT(DISTINCT id) FROM trajectories") == [(N, N)]
    assert _query(ckpt, "SELECT COUNT(*) FROM checkpoints") == [(0,)]  # finished threads cleaned


def test_ctrl_c_finishes_in_flight_then_resume(tmp_path):
    cmd, store = _generate_cmd(tmp_path)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while store_count(store) < 4:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "finishing the examples in flight" in out and "rerun the same command to resume" in out
    written = store_count(store)
    assert 4 <= written < N
    assert f"done {written} " in out  # everything started before Ctrl-C was finished and written
    ckpt = sqlite3.connect(tmp_path / "traj.ckpt.sqlite")
    assert (
        ckpt.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 0
    )  # nothing left half-done
    ckpt.close()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert store_count(store) == N
