"""Fault test: `index`, `mask`, `generate` and `export` run as subprocesses and are killed with
SIGKILL at random moments (seeded), over and over on the same outputs; then one run is let
finish. The outputs must equal those of one uninterrupted run, and after every kill what the
command promises must hold (index: a usable index, old or new, is always in place; export: the
output is absent or whole, never partial).

The default variant kills each command 3 times; the `slow` variant 12 times
(`pytest -m slow tests/test_kill_outputs.py`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_corpus.jsonl"
ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
KILLS = [3, pytest.param(12, marks=pytest.mark.slow)]


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "masksearch.cli", *map(str, args)]


def timed_run(cmd: list[str]) -> float:
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.monotonic() - t0


def kill_at_random(cmd: list[str], kills: int, span: float, seed: int, after_kill=None) -> int:
    """Start `cmd` `kills` times, each killed (SIGKILL) after a random delay in [0, span);
    returns how many were really killed (a run may finish first)."""
    rng = random.Random(seed)
    killed = 0
    for _ in range(kills):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        time.sleep(rng.uniform(0.0, span))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        if after_kill is not None:
            after_kill()
    return killed


def flashrag_corpus(path: Path, copies: int) -> Path:
    rows = [json.loads(line) for line in TINY.read_text().splitlines() if line.strip()]
    with path.open("w") as fh:
        for c in range(copies):
            for r in rows:
                fh.write(json.dumps({**r, "id": f"{r['id']}-{c}"}) + "\n")
    return path


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("kills", KILLS)
def test_index_killed_anywhere_always_leaves_a_usable_index(tmp_path, kills):
    old = flashrag_corpus(tmp_path / "old.jsonl", 2)
    new = flashrag_corpus(tmp_path / "new.jsonl", 60)
    ref, out = tmp_path / "ref" / "index", tmp_path / "work" / "index"
    span = timed_run(cli("index", "--corpus", new, "--out", ref, "--quiet"))
    timed_run(cli("index", "--corpus", old, "--out", out, "--quiet"))
    counts = {json.loads((ref / "manifest.json").read_text())["count"], 48}

    def usable() -> None:
        from masksearch.retrievers.store import PassageStore

        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["count"] in counts
        store = PassageStore(out / "passages.jsonl")
        assert len(store) == manifest["count"]
        store.close()

    cmd = cli("index", "--corpus", new, "--out", out, "--quiet")
    assert kill_at_random(cmd, kills, span, seed=11, after_kill=usable) >= kills // 2
    timed_run(cmd)
    assert (out / "passages.jsonl").read_bytes() == (ref / "passages.jsonl").read_bytes()
    assert hidden(out.parent) == []


@pytest.mark.parametrize("kills", KILLS)
def test_mask_killed_anywhere_then_rerun_equals_one_run(tmp_path, kills):
    corpus = flashrag_corpus(tmp_path / "c.jsonl", 12)
    args = ("--corpus", corpus, "--no-progress", "--min-words", "5", "--max-examples", 150)
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    span = timed_run(cli("mask", "--out", ref, *args))
    cmd = cli("mask", "--out", out, *args)
    assert kill_at_random(cmd, kills, span, seed=12) >= kills // 2
    timed_run(cmd)
    assert out.read_bytes() == ref.read_bytes()


@pytest.mark.parametrize("kills", KILLS)
def test_export_killed_anywhere_is_absent_or_whole(tmp_path, kills):
    from masksearch.jsonl import write_jsonl
    from masksearch.training.smoke import example_record

    records = tmp_path / "records.jsonl"
    write_jsonl(records, ({**example_record(0), "id": f"ex{i}"} for i in range(3000)))
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out" / "trl.jsonl"
    span = timed_run(cli("export", "--records", records, "--format", "trl", "--out", ref))
    expected = ref.read_bytes()

    def whole() -> None:
        assert not out.exists() or out.read_bytes() == expected

    cmd = cli("export", "--records", records, "--format", "trl", "--out", out)
    assert kill_at_random(cmd, kills, span, seed=13, after_kill=whole) >= kills // 2
    timed_run(cmd)
    assert out.read_bytes() == expected
    assert hidden(out.parent) == []  # a killed writer's temp file is cleaned by the next run


GEN_DRIVER = """
import sys
from masksearch.graph.testing import KeywordRetriever
from masksearch.pipeline.testing import LatencyChatModel, team_respond
from masksearch.resources import Resources
from masksearch.types import Passage
res = Resources(
    models={"fake:slow": LatencyChatModel(
        respond=team_respond(lambda q: q.split()[1]), latency_s=0.03)},
    retrievers={"mem:kill": KeywordRetriever(
        [Passage(f"p{i}", f"T{i}", f"Item {i} is about number {i}.") for i in range(40)])},
)
from masksearch.cli import run
sys.exit(run(sys.argv[1:], resources=res))
"""


@pytest.mark.parametrize("kills", KILLS)
def test_generate_killed_anywhere_then_rerun_equals_one_run(tmp_path, kills):
    n = 30
    data = tmp_path / "masked.jsonl"
    rows = [
        {
            "id": f"ex{i}",
            "question": f"Item {i} is about number [mask].",
            "answers": [str(i)],
            "text": str(i),
            "spans": [{"start": 0, "end": len(str(i)), "text": str(i)}],
        }
        for i in range(n)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    driver = tmp_path / "driver.py"
    driver.write_text(GEN_DRIVER)

    def cmd(name: str) -> list[str]:
        return [
            sys.executable,
            str(driver),
            "generate",
            "--input",
            str(data),
            "--store",
            str(tmp_path / f"{name}.sqlite"),
            "--planner-model",
            "fake:slow",
            "--retriever",
            "mem:kill",
            "--max-turns",
            "2",
            "--concurrency",
            "4",
            "--no-progress",
            "--export",
            str(tmp_path / f"{name}.jsonl"),
            "--export-all",
        ]

    span = timed_run(cmd("ref"))
    assert kill_at_random(cmd("out"), kills, span, seed=14) >= kills // 2
    timed_run(cmd("out"))

    def outcome(name: str) -> list[tuple]:
        rows = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").open()]
        return sorted((r["id"], r["status"], r["accepted"], r["final_answer"]) for r in rows)

    assert outcome("out") == outcome("ref")
    assert len(outcome("out")) == n
    db = sqlite3.connect(tmp_path / "out.sqlite")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM trajectories").fetchone() == (n, n)
    db.close()
