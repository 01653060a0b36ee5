"""Sharded generation on Ray (2 local workers, scripted model): every id exactly once, resume
across worker counts, kill -9 of a worker or of the driver loses and duplicates nothing and
spends no model call on a finished example, SIGINT/SIGTERM stop every worker.

One Ray head for the module (`ray start --head --block`, its own process group, killed at the
end); the drivers join it with `address=`. Skipped when Ray is not installed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from masksearch.graph import Context
from masksearch.pipeline.runner import RunSettings, run_generate
from masksearch.pipeline.testing import TeamSetup
from masksearch.store.trajectories import TrajectoryStore, iter_records, store_count
from masksearch.types import MaskedExample, Span
from masksearch.workers import cluster as parallel
from masksearch.workers.cluster import ClusterSettings, shard_of, throttled

ROOT = Path(__file__).resolve().parents[1]


def test_shards_are_stable_and_cover_everything():
    ids = [f"ex{i}" for i in range(1000)]
    shards = [shard_of(i, 4) for i in ids]
    assert set(shards) == {0, 1, 2, 3} and min(shards.count(k) for k in range(4)) > 200
    assert shards == [shard_of(i, 4) for i in ids]


def test_progress_poll_is_throttled_by_its_own_cost(monkeypatch):
    """A slow poll (a row count over a huge store) runs at most 5 % of the time; a fast one
    every 0.5 s."""
    clock = [0.0]
    monkeypatch.setattr(parallel.time, "monotonic", lambda: clock[0])
    calls: list[float] = []
    cost = [2.0]  # seconds one poll takes

    def poll() -> None:
        calls.append(clock[0])
        clock[0] += cost[0]

    call = throttled(poll)
    for _ in range(800):  # the driver's loop: a call every 0.125 s
        call()
        clock[0] += 0.125
    assert len(calls) > 1 and all(b - a >= 40 for a, b in zip(calls, calls[1:], strict=False))
    assert len(calls) * cost[0] <= 0.05 * clock[0] + cost[0]
    calls.clear()
    cost[0] = 0.0
    call = throttled(poll)
    for _ in range(80):
        call()
        clock[0] += 0.125
    assert len(calls) == 20  # 10 s of driver loop, one poll per 0.5 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    pytest.importorskip("ray")
    # a throwaway loopback cluster: no token (drivers in subprocesses inherit the setting)
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    port = _free_port()
    tmp = tmp_path_factory.mktemp("ray")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    head = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={tmp}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:  # wait until the GCS answers
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert head.poll() is None and time.monotonic() < deadline, "ray head did not start"
            time.sleep(0.5)
    yield address
    try:  # a throwaway cluster: the whole process group (head, raylet, workers) goes at once
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait(timeout=30)
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = saved


def _write_input(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            ex = MaskedExample(
                id=f"ex{i}",
                question=f"Item {i} is about number [mask].",
                answers=[str(i)],
                spans=[Span(0, len(str(i)), str(i))],
            )
            fh.write(json.dumps(ex.to_dict()) + "\n")
    return path


def ctx() -> Context:
    return Context(
        planner_model="fake:team",
        rewriter_model="fake:team",
        observer_model="fake:team",
        retriever="mem:team",
        max_turns=1,
    )


def test_ray_workers_write_each_id_once_and_resume(tmp_path, ray_address):
    data = _write_input(tmp_path / "in.jsonl", 30)
    store = tmp_path / "t.sqlite"
    ckpt = f"sqlite:///{tmp_path / 'ckpt.sqlite'}"
    summary_json = tmp_path / "s.json"
    team = TeamSetup(latency_s=0.005)
    cluster = ClusterSettings(workers=2, address=ray_address)
    code = run_generate(
        data,
        store,
        ctx(),
        ckpt,
        RunSettings(concurrency=8, limit=24, summary_json=summary_json, progress=False),
        cluster=cluster,
        worker_resources=team,
    )
    assert code == 0
    s = json.loads(summary_json.read_text())
    assert s["run"]["done"] == 24 and s["run"]["accepted"] == 24 and s["store"]["count"] == 24
    with TrajectoryStore(store) as st:
        assert st.ids() == {f"ex{i}" for i in range(24)}
    # resume with another worker count: the 24 stored ids are skipped, the other 6 run
    cluster3 = ClusterSettings(workers=3, address=ray_address, cpus_per_worker=0.5)
    code = run_generate(
        data,
        store,
        ctx(),
        ckpt,
        RunSettings(concurrency=4, summary_json=summary_json, progress=False),
        cluster=cluster3,
        worker_resources=team,
    )
    assert code == 0
    s = json.loads(summary_json.read_text())
    assert s["run"]["done"] == 6 and s["run"]["skipped"]["existing"] == 24
    assert s["store"]["count"] == 30


N = 400
DRIVER = """
import sys
from pathlib import Path
from masksearch.graph import Context
from masksearch.workers.cluster import ClusterSettings
from masksearch.pipeline.runner import RunSettings, run_generate
from masksearch.pipeline.testing import TeamSetup

data, store, export, calls, address = sys.argv[1:6]
ctx = Context(planner_model="fake:team", rewriter_model="fake:team", observer_model="fake:team",
              retriever="mem:team", max_turns=2)
team = TeamSetup(latency_s=0.03, jitter=0.5, calls_log=calls)
cluster = ClusterSettings(workers=2, address=address, stop_grace_s=5)
settings = RunSettings(concurrency=16, export=Path(export), export_all=True, progress=False)
sys.exit(run_generate(Path(data), Path(store), ctx, "sqlite:///" + store + ".ckpt", settings,
                      cluster=cluster, worker_resources=team))
"""


def _driver(tmp_path: Path, address: str) -> tuple[list[str], Path, Path, Path]:
    data = _write_input(tmp_path / "in.jsonl", N)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    store, export, calls = tmp_path / "t.sqlite", tmp_path / "all.jsonl", tmp_path / "calls.tsv"
    cmd = [sys.executable, str(script), str(data), str(store), str(export), str(calls), address]
    return cmd, store, export, calls


def _start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )


def _wait_rows(proc: subprocess.Popen, store: Path, rows: int) -> None:
    deadline = time.monotonic() + 120
    while store_count(store) < rows:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


def _worker_pids(store: Path) -> set[int]:
    """Processes holding the store's worker lock (the Ray workers writing it)."""
    return _holders({f"{store}.workers.lock"})


def _holders(paths: set[str]) -> set[int]:
    """Processes with one of `paths` open."""
    pids = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in paths:
                    pids.add(int(pid))
        except OSError:
            continue
    return pids


def _gone(pids: set[int], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") for p in pids):
            return True
        time.sleep(0.2)
    return False


def _check_exactly_once(store: Path, export: Path, calls: Path, finished_before: set[str]) -> None:
    with TrajectoryStore(store) as st:
        stored = list(st.records())
    ids = [r["id"] for r in stored]
    assert len(ids) == N and set(ids) == {f"ex{i}" for i in range(N)}  # 0 lost, 0 duplicated
    assert all(r["status"] == "answered" and r["accepted"] for r in stored)
    assert list(iter_records(export)) == stored  # export equals store
    calls_by = Counter(tuple(line.split("\t", 1)) for line in calls.read_text().splitlines())
    by_id = {r["id"]: r["question"] for r in stored}
    # an example finished before the kills had one planner and one observer call, never rerun
    for role in ("planner", "observer"):
        assert {calls_by[(role, by_id[i])] for i in finished_before} == {1}, role
    assert all(calls_by[("planner", q)] >= 1 for q in by_id.values())


def test_kill_9_worker_then_driver_then_resume(tmp_path, ray_address):
    cmd, store, export, calls = _driver(tmp_path, ray_address)
    proc = _start(cmd)
    _wait_rows(proc, store, 60)
    workers = _worker_pids(store)
    assert len(workers) == 2, workers
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)  # a worker dies: the driver restarts its shard
    _wait_rows(proc, store, store_count(store) + 40)
    os.kill(proc.pid, signal.SIGKILL)  # then the driver dies: its workers must stop writing
    proc.wait(timeout=10)
    out = proc.stdout.read()
    proc.stdout.close()
    assert "worker for shard" in out and "restarting it" in out, out
    survivors = _worker_pids(store)
    assert _gone(survivors), f"workers outlived the driver: {survivors}"
    with TrajectoryStore(store) as st:
        finished_before = st.ids()
    assert 100 <= len(finished_before) < N
    time.sleep(0.5)
    assert store_count(store) == len(finished_before)  # nobody writes any more

    done = _start(cmd)
    out, _ = done.communicate(timeout=300)
    assert done.returncode == 0, out
    assert f"skipped: {len(finished_before)} already in store" in out
    _check_exactly_once(store, export, calls, finished_before)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_driver_stops_every_worker(tmp_path, ray_address, sig):
    cmd, store, export, calls = _driver(tmp_path, ray_address)
    proc = _start(cmd)
    _wait_rows(proc, store, 40)
    workers = _worker_pids(store)
    assert len(workers) == 2
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert _gone(workers), "a worker outlived the driver"
    written = store_count(store)
    assert written < N
    time.sleep(0.5)
    assert store_count(store) == written
    if sig == signal.SIGINT:
        assert "finish the examples in flight" in out
        assert "Traceback" not in out


def test_ray_workers_share_a_postgres_store(tmp_path, ray_address):
    """The multi-machine layout: every worker writes one Postgres store and checkpointer."""
    pytest.importorskip("psycopg")
    pytest.importorskip("langgraph.checkpoint.postgres")
    from masksearch.pipeline.testing import local_postgres

    with local_postgres(tmp_path) as dsn:
        if dsn is None:
            pytest.skip("no Postgres server or binaries")
        data = _write_input(tmp_path / "in.jsonl", 60)
        cluster = ClusterSettings(workers=2, address=ray_address)
        summary_json = tmp_path / "s.json"
        code = run_generate(
            data,
            dsn,
            ctx(),
            dsn,
            RunSettings(concurrency=8, limit=40, progress=False, summary_json=summary_json),
            cluster=cluster,
            worker_resources=TeamSetup(),
        )
        assert code == 0 and json.loads(summary_json.read_text())["run"]["done"] == 40
        code = run_generate(
            data,
            dsn,
            ctx(),
            dsn,
            RunSettings(
                concurrency=8,
                progress=False,
                summary_json=summary_json,
                export=tmp_path / "all.jsonl",
            ),
            cluster=cluster,
            worker_resources=TeamSetup(),
        )
        s = json.loads(summary_json.read_text())
        assert code == 0 and s["run"]["done"] == 20 and s["run"]["skipped"]["existing"] == 40
        ids = [r["id"] for r in iter_records(tmp_path / "all.jsonl")]
        assert sorted(ids) == sorted(f"ex{i}" for i in range(60))


def test_rate_limit_is_shared_by_all_workers(tmp_path, ray_address):
    """One limiter actor for the run: 2 workers together stay under the request rate."""
    from masksearch.pipeline.ratelimit import RateLimits

    data = _write_input(tmp_path / "in.jsonl", 20)
    cluster = ClusterSettings(workers=2, address=ray_address)
    summary_json = tmp_path / "s.json"
    code = run_generate(
        data,
        tmp_path / "t.sqlite",
        ctx(),
        "memory",
        RunSettings(
            concurrency=16,
            progress=False,
            summary_json=summary_json,
            limits=RateLimits(requests_per_s=15, burst_s=0.5),
        ),
        cluster=cluster,
        worker_resources=TeamSetup(),
    )
    run = json.loads(summary_json.read_text())["run"]
    assert code == 0 and run["done"] == 20
    # shared: 60 calls at 15/s after a 7.5-call burst = 3.5 s from the first call to the last;
    # a limiter per worker would let each do its 30 in 1.5 s. The margin covers the workers
    # starting up to a second apart (each measures its own pool time).
    assert run["elapsed_s"] >= 2.5, run["elapsed_s"]


def _part_rows(out: Path) -> list[dict]:
    rows = []
    for part in out.parent.glob(out.name + ".part-*"):
        rows += [json.loads(line) for line in part.read_text().splitlines() if line.endswith("}")]
    return rows


def _kill_driver_midway(cmd: list[str], out: Path, rows: int) -> list[dict]:
    """Start the driver, SIGKILL it once its workers' parts hold `rows` rows, check that no
    worker outlives it; returns the rows finished before the kill (in `out` and the parts)."""
    proc = _start(cmd)
    deadline = time.monotonic() + 120
    while len(_part_rows(out)) < rows:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    writers = _holders({str(p) for p in out.parent.glob(out.name + ".part-*")})
    assert len(writers) == 2, writers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    assert _gone(writers), f"workers outlived the driver: {writers}"
    kept = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return kept + _part_rows(out)


MASK_DRIVER = """
import sys
from masksearch.masking.runner import MaskSettings, mask_corpus
from masksearch.workers.cluster import ClusterSettings
from masksearch.pipeline.testing import span_model

corpus, out, calls, address = sys.argv[1:5]
cluster = ClusterSettings(workers=2, address=address, stop_grace_s=5)
settings = MaskSettings(strategy="llm", model=span_model(0.03, calls),
                        strategy_options={"max_concurrency": 2})
s = mask_corpus(corpus, out, settings, progress=False, cluster=cluster)
print(f"written {s.written} existing {s.existing}", flush=True)
sys.exit(130 if s.interrupted else 0)
"""


def test_mask_llm_on_ray_kill_driver_then_resume(tmp_path, ray_address):
    """`mask --strategy llm` on 2 workers: kill -9 the driver, rerun: every passage once, the
    same examples as one process makes, no model call again for a finished passage."""
    from masksearch.masking.runner import MaskSettings, mask_corpus
    from masksearch.pipeline.testing import corpus_row, span_model

    n = 240
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(corpus_row(i)) + "\n" for i in range(n)))
    out, calls, script = tmp_path / "masked.jsonl", tmp_path / "calls.txt", tmp_path / "d.py"
    script.write_text(MASK_DRIVER)
    cmd = [sys.executable, str(script), str(corpus), str(out), str(calls), ray_address]
    finished = {r["source_id"] for r in _kill_driver_midway(cmd, out, 64)}
    assert 64 <= len(finished) < n

    rerun = _start(cmd)
    log, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["source_id"] for r in rows) == sorted(f"d{i}" for i in range(n))
    assert not list(tmp_path.glob("masked.jsonl.part-*"))  # merged and removed
    titles = Counter(calls.read_text().splitlines())
    assert {titles[f"Topic {i[1:]}"] for i in finished} == {1}  # never asked again
    # the examples one process makes (each passage's RNG is seeded by its id)
    alone = tmp_path / "alone.jsonl"
    mask_corpus(corpus, alone, MaskSettings(strategy="llm", model=span_model()), progress=False)
    key = lambda r: r["source_id"]  # noqa: E731
    assert sorted(rows, key=key) == sorted(map(json.loads, alone.read_text().splitlines()), key=key)


def test_mask_ppl_cli_on_ray_matches_one_process(tmp_path, ray_address, tiny_lm, tiny_corpus_path):
    """`masksearch mask --strategy ppl --ray-address A -p 2`: each worker loads the model once;
    the output is the one-process output, and a rerun adds nothing."""
    from typer.testing import CliRunner

    from masksearch.cli import app

    model, tok = tiny_lm
    model_dir = tmp_path / "tiny-gpt2"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    args = ["mask", "--corpus", str(tiny_corpus_path), "--strategy", "ppl", "--model"]
    args += [str(model_dir), "--device", "cpu", "--no-progress", "--min-words", "10"]
    ray_args = ["--ray-address", ray_address, "-p", "2"]
    runner = CliRunner()
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "ray.jsonl"), *ray_args])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "one.jsonl")])
    assert res.exit_code == 0, res.output
    on_ray = sorted((tmp_path / "ray.jsonl").read_text().splitlines())
    assert len(on_ray) >= 12 and on_ray == sorted((tmp_path / "one.jsonl").read_text().splitlines())
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "ray.jsonl"), *ray_args])
    assert res.exit_code == 0 and "wrote 0 examples" in res.output, res.output
    assert sorted((tmp_path / "ray.jsonl").read_text().splitlines()) == on_ray


EVAL_DRIVER = """
import asyncio, sys
from pathlib import Path
from masksearch.eval.cli_run import build_and_run
from masksearch.graph import Context
from masksearch.workers.cluster import ClusterSettings
from masksearch.pipeline.testing import TeamSetup

data, out, calls, address = sys.argv[1:5]
ctx = Context(planner_model="fake:team", retriever="mem:team", max_turns=2)
stats, _ = asyncio.run(build_and_run(
    datasets=["bamboogle=" + data], methods=["masksearch"], context=ctx, method_models=[],
    out=Path(out), concurrency=4, limit=None, judge_model=None, retry_failed=False,
    save_messages=True, progress=False,
    cluster=ClusterSettings(workers=2, address=address, stop_grace_s=5),
    worker_resources=TeamSetup(latency_s=0.08, calls_log=calls)))
print(f"ran {stats.ran} done_before {stats.done_before}", flush=True)
sys.exit(130 if stats.interrupted else 0)
"""


def test_eval_run_on_ray_kill_driver_then_resume(tmp_path, ray_address):
    """`eval run` on 2 workers: kill -9 the driver, rerun: one row per question, all correct,
    no model call again for a finished question, the report covers every question."""
    n = 160
    data = tmp_path / "bamboogle.csv"
    data.write_text(
        "Question,Answer\n" + "".join(f"Item {i} is about number what?,{i}\n" for i in range(n))
    )
    out, calls, script = tmp_path / "eval", tmp_path / "calls.tsv", tmp_path / "d.py"
    script.write_text(EVAL_DRIVER)
    cmd = [sys.executable, str(script), str(data), str(out), str(calls), ray_address]
    finished = {r["question"] for r in _kill_driver_midway(cmd, out / "results.jsonl", 30)}
    assert 30 <= len(finished) < n

    rerun = _start(cmd)
    log, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["question"] for r in rows) == sorted(
        f"Item {i} is about number what?" for i in range(n)
    )
    assert all(r["status"] == "answered" and r["scores"]["em"] == 1.0 for r in rows)
    assert not list(out.glob("results.jsonl.part-*"))
    asked = Counter(line.split("\t", 1)[1] for line in calls.read_text().splitlines())
    assert {asked[q] for q in finished} == {1}
    assert f"ran {n - len(finished)} done_before {len(finished)}" in log
