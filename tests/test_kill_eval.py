"""Fault test: `eval run` (rag-pe and masksearch, a scripted `fake:` model, BM25 over the tiny
corpus) runs as a subprocess and is killed with SIGKILL at random moments (seeded), over and
over on the same `--out`; then one run is let finish. Its rows must equal those of one
uninterrupted run (every field but timings and timestamps), with no key twice, and its report
files must be byte-identical to the uninterrupted run's. After every kill, `results.jsonl` holds
only whole rows (or a torn last line the next run drops) and `run.json` is whole.

The default variant kills 3 times; the `slow` variant 12 times
(`pytest -m slow tests/test_kill_eval.py`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
REPLY = "<think>read</think>\n<answer>Dijon</answer>"
VOLATILE = ("latency_s", "created_at")
REPORT = ("summary.md", "table_recall.csv", "table_em.csv", "table_f1.csv", "scores.csv")


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "masksearch.cli", *map(str, args)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("killeval")
    with open(base / "qs.jsonl", "w") as fh:
        for i in range(250):
            gold = "Dijon" if i % 3 else "Paris"
            q = f"Which city is number {i} on the list?"
            fh.write(json.dumps({"id": f"q{i}", "question": q, "golden_answers": [gold]}) + "\n")
    (base / "model.json").write_text(json.dumps({"cycle": True, "routes": {}, "default": [REPLY]}))
    done = subprocess.run(
        cli("index", "--corpus", DATA / "tiny_corpus.jsonl", "--out", base / "idx", "--quiet"),
        capture_output=True,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # warm the caches (bytecode, page cache) so the timed reference run is representative
    warm = subprocess.run(
        [*eval_cmd(base, base / "warm"), "--limit", "1"], capture_output=True, env=ENV, timeout=300
    )
    assert warm.returncode == 0, warm.stderr
    return base


def eval_cmd(base: Path, out: Path) -> list[str]:
    return cli(
        "eval", "run", "-d", f"flash={base / 'qs.jsonl'}", "-m", "rag-pe", "-m", "masksearch",
        "--model", f"fake:{base / 'model.json'}", "--retriever", f"bm25:{base / 'idx'}",
        "--out", out, "--no-progress", "--concurrency", "4",
    )  # fmt: skip


def rows(out: Path) -> dict[tuple, dict]:
    got: dict[tuple, dict] = {}
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        key = (row["label"], row["method"], row["dataset"], row["id"])
        assert key not in got, f"{key} twice"
        got[key] = {k: v for k, v in row.items() if k not in VOLATILE}
    return got


def check_after_kill(out: Path) -> int:
    """Whole rows only (a torn, unterminated last line is allowed) and a whole run.json."""
    path = out / "results.jsonl"
    if not path.exists():
        return 0
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    n = 0
    for line in whole.splitlines():
        json.loads(line)
        n += 1
    if (out / "run.json").exists():
        json.loads((out / "run.json").read_text(encoding="utf-8"))
    return n


@pytest.mark.parametrize("kills", [3, pytest.param(12, marks=pytest.mark.slow)])
def test_eval_run_killed_anywhere_equals_an_uninterrupted_run(setup, tmp_path, kills):
    ref, out = tmp_path / "ref", tmp_path / "work"
    # the uninterrupted run, timed: start-up (until its first row) and the whole run
    t0 = time.monotonic()
    log = open(tmp_path / "ref.log", "w+")  # noqa: SIM115 - read back below
    proc = subprocess.Popen(eval_cmd(setup, ref), stdout=subprocess.DEVNULL, stderr=log, env=ENV)
    first_row = None
    while proc.poll() is None:
        if first_row is None and (ref / "results.jsonl").exists():
            first_row = time.monotonic() - t0
        time.sleep(0.02)
    total = time.monotonic() - t0
    log.seek(0)
    assert proc.returncode == 0, log.read()[-2000:]
    log.close()
    expected = rows(ref)
    assert len(expected) == 500
    first_row = first_row or total
    work = total - first_row

    rng = random.Random(kills)
    killed, partial = 0, 0
    results = out / "results.jsonl"
    for i in range(kills):
        size = results.stat().st_size if results.exists() else 0
        proc = subprocess.Popen(
            eval_cmd(setup, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
        )
        if i % 4 == 3:  # every 4th kill: anywhere in start-up (imports, loading, run.json)
            time.sleep(rng.uniform(0.0, first_row))
        else:  # the others: at a random moment after this run has written its first row
            while (
                proc.poll() is None and (results.stat().st_size if results.exists() else 0) <= size
            ):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.15 * work))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        n = check_after_kill(out)
        partial += 0 < n < len(expected)
    assert killed >= kills // 2 and partial >= 1, (killed, partial)

    done = subprocess.run(
        eval_cmd(setup, out), capture_output=True, text=True, env=ENV, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert rows(out) == expected
    for name in REPORT:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert (
        json.loads((out / "run.json").read_text())["variants"]
        == json.loads((ref / "run.json").read_text())["variants"]
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())
