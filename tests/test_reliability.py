"""Regression tests for the data-side reliability fixes of issue 11: unencodable input, mask
resume and totals, non-regular outputs and line caps, the atomic index swap, `run` noticing
changed inputs, atomic fsynced exports, and secrets kept out of everything stored or printed."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from masksearch.cli import run
from masksearch.errors import InputError, OutputError
from masksearch.fileio import atomic_write, atomic_write_text
from masksearch.jsonl import JsonlAppender, SkipCounter, iter_jsonl, repair_tail, write_jsonl
from masksearch.pipeline.generate import GenerateSettings, generate
from masksearch.pipeline.testing import masked_row, team_script
from masksearch.resources import Resources
from masksearch.store.trajectories import TrajectoryStore
from masksearch.types import MaskedExample

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_corpus.jsonl"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "index"
    assert run(["index", "--corpus", str(TINY), "--out", str(out), "--quiet"]) == 0
    return out


def gen_args(tmp: Path, input: Path, index_dir: Path, *extra: str) -> list[str]:
    return [
        "generate",
        "--input",
        str(input),
        "--store",
        str(tmp / "s.sqlite"),
        "--planner-model",
        f"fake:{team_script(tmp / 'team.json')}",
        "--retriever",
        f"bm25:{index_dir}",
        "--max-turns",
        "1",
        "--no-progress",
        *extra,
    ]


# -- 1. unencodable text ----------------------------------------------------------------------
def test_lone_surrogate_is_located_or_skipped_and_never_blocks(tmp_path, index_dir, capsys):
    rows = [json.dumps(masked_row(i)) for i in range(4)]
    rows[2] = rows[2].replace("Item 2", "Item \\ud800")
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(rows) + "\n")
    assert run(gen_args(tmp_path, data, index_dir)) == 2
    assert "in.jsonl:3: field 'question'" in capsys.readouterr().err
    assert run(gen_args(tmp_path, data, index_dir, "--skip-bad")) == 0
    assert "1 bad input lines" in capsys.readouterr().err
    with TrajectoryStore(tmp_path / "s.sqlite") as st:
        assert st.ids() == {"ex0", "ex1", "ex3"}


def test_a_record_the_store_cannot_take_is_stored_as_failed_and_the_batch_goes_on(tmp_path):
    from masksearch.pipeline.generate import failed_record

    async def run_one(ex):
        rec = failed_record(ex, None, "x")
        rec.update(status="answered", error=None)
        if ex.id == "ex1":
            rec["final_answer"] = "bad \ud800 text"  # a model reply the store cannot encode
        if ex.id == "ex2":
            rec["meta"]["odd"] = object()  # not JSON-serialisable
        return rec

    exs = [MaskedExample(f"ex{i}", f"Item {i} [mask]", [str(i)]) for i in range(4)]
    summary = asyncio.run(
        generate(
            exs, None, tmp_path / "s.sqlite", GenerateSettings(progress=False), run_one=run_one
        )
    )
    assert summary.done == 4
    with TrajectoryStore(tmp_path / "s.sqlite") as st:
        assert len(st) == 4
        assert st.get("ex1")["status"] == "failed" and "Unicode" in st.get("ex1")["error"]
        assert st.get("ex2")["status"] == "failed" and st.get("ex3")["status"] == "answered"


# -- 2. mask: tail repair, totals across resumes, --max-examples 0 ----------------------------
def test_repair_keeps_a_whole_last_record_without_newline_and_cuts_a_partial_one(tmp_path):
    p = tmp_path / "o.jsonl"
    p.write_bytes(b'{"a": 1}\n{"b": 2}')
    repair_tail(p)
    assert p.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    p.write_bytes(b'{"a": 1}\n{"b": 2')
    repair_tail(p)
    assert p.read_bytes() == b'{"a": 1}\n'
    p.write_bytes(b'{"b": 2')
    repair_tail(p)
    assert p.read_bytes() == b""
    p.write_bytes(b'{"a": 1}\n{"b": 2}')
    with JsonlAppender(p) as sink:
        sink.write({"c": 3})
    assert [o for _, o in iter_jsonl(p)] == [{"a": 1}, {"b": 2}, {"c": 3}]


def _mask(out: Path, *extra: str) -> int:
    argv = ["mask", "--corpus", str(TINY), "--out", str(out), "--no-progress"]
    return run([*argv, "--min-words", "5", *extra])


def test_max_examples_counts_the_whole_output_across_resumes(tmp_path, capsys):
    full = tmp_path / "full.jsonl"
    assert _mask(full, "--max-examples", "6") == 0
    out = tmp_path / "o.jsonl"
    assert _mask(out, "--max-examples", "2") == 0  # an "interrupted" first run
    body = out.read_bytes()
    out.write_bytes(body.rstrip(b"\n"))  # ... killed before its last newline
    assert _mask(out, "--max-examples", "6") == 0
    assert _mask(out, "--max-examples", "6") == 0  # nothing more to do
    assert out.read_bytes() == full.read_bytes()  # same as one uninterrupted run
    assert "(6 in all)" in capsys.readouterr().err


def test_max_examples_zero_writes_nothing(tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert _mask(out, "--max-examples", "0") == 2
    assert not out.exists()


# -- 3. bounded line length -------------------------------------------------------------------
def test_overlong_lines_are_bad_lines_and_never_read_whole(tmp_path):
    p = tmp_path / "big.jsonl"
    p.write_bytes(b'{"a": 1}\n' + b'{"x": "' + b"y" * 300_000 + b'"}\n{"b": 2}\n')
    with pytest.raises(InputError, match="longer than") as ei:
        list(iter_jsonl(p, max_line_bytes=100_000))
    assert ei.value.line == 2
    counter = SkipCounter()
    rows = [o for _, o in iter_jsonl(p, max_line_bytes=100_000, skip_bad=True, counter=counter)]
    assert rows == [{"a": 1}, {"b": 2}] and counter.skipped == 1


def test_mask_refuses_a_non_regular_output_before_reading_it(tmp_path):
    from masksearch.masking.runner import mask_corpus

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(OutputError, match="regular file"):
        mask_corpus(TINY, fifo, progress=False)


# -- 4. index swap ----------------------------------------------------------------------------
def _build(out: Path, corpus: Path = TINY):
    from masksearch.retrievers.build import build_index

    return build_index(corpus, out, show_progress=False)


def _usable(out: Path) -> int:
    from masksearch.retrievers.factory import load_retriever

    return len(load_retriever(f"bm25:{out}").search(["tower"], 1)[0])


def test_rebuild_leaves_no_hidden_folders(tmp_path):
    out = tmp_path / "index"
    _build(out)
    _build(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    assert _usable(out) == 1


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_kill_during_a_two_rename_swap_leaves_an_index_and_the_rerun_recovers(
    tmp_path, monkeypatch, fail_at
):
    """Where folders cannot be exchanged atomically, the old index is renamed aside first; a
    kill between the renames leaves it at `.index.old`, and the next build puts it back."""
    from masksearch.retrievers import build
    from masksearch.retrievers.build import recover_swap

    out = tmp_path / "index"
    _build(out)
    monkeypatch.setattr(build, "_exchange", lambda a, b: False)
    real_rename, calls = os.rename, []

    def rename(a, b):
        calls.append((a, b))
        if len(calls) == fail_at:
            raise KeyboardInterrupt  # the process dies here
        return real_rename(a, b)

    monkeypatch.setattr(build.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        _build(out)
    monkeypatch.setattr(build.os, "rename", real_rename)
    assert out.exists() or (tmp_path / ".index.old" / "manifest.json").is_file()
    assert recover_swap(out) is not None
    assert _usable(out) == 1
    _build(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_a_kill_after_the_atomic_exchange_leaves_the_new_index(tmp_path, monkeypatch):
    from masksearch.retrievers import build

    out = tmp_path / "index"
    _build(out)
    small = tmp_path / "small.jsonl"
    small.write_text("".join(TINY.read_text().splitlines(keepends=True)[:5]))
    monkeypatch.setattr(build.shutil, "rmtree", lambda *a, **k: (_ for _ in ()).throw(SystemExit))
    with pytest.raises(SystemExit):
        _build(out, small)  # killed while deleting the old index
    monkeypatch.undo()
    assert json.loads((out / "manifest.json").read_text())["count"] == 5
    _build(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "small.jsonl"]


# -- 5. run notices changed inputs --------------------------------------------------------------
def test_run_rebuilds_what_changed_and_says_so(tmp_path, capsys):
    script = team_script(tmp_path / "team.json", "Paris")
    work = tmp_path / "work"

    def run_pipeline(*extra: str) -> str:
        argv = ["run", "--workdir", str(work), "--corpus", str(TINY), "--n", "2"]
        assert run([*argv, "--model", f"fake:{script}", "--no-progress", *extra]) == 0
        return capsys.readouterr().err

    run_pipeline("--max-passages", "12")
    assert sum(1 for _ in (work / "corpus.jsonl").open()) == 12
    again = run_pipeline("--max-passages", "12")
    assert again.count("reusing") >= 3
    changed = run_pipeline("--max-passages", "20")
    assert "corpus: rebuilding" in changed and "max_passages 12 -> 20" in changed
    assert "index: rebuilding" in changed and "mask: rebuilding" in changed
    assert "moved them to" in changed  # the old trajectories are kept aside, not mixed in
    assert sum(1 for _ in (work / "corpus.jsonl").open()) == 20
    assert json.loads((work / "index" / "manifest.json").read_text())["count"] == 20
    assert len(list((work / "previous").glob("*/trajectories.sqlite"))) == 1


# -- 6. atomic, fsynced exports ---------------------------------------------------------------
def test_full_disk_export_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    out = tmp_path / "x.jsonl"
    write_jsonl(out, [{"old": 1}])

    def rows():
        yield {"new": 1}
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="no space left") as ei:
        write_jsonl(out, rows())
    assert ei.value.path == str(out)
    assert out.read_text() == '{"old": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]


def test_atomic_writes_fsync_the_file_and_the_folder(tmp_path, monkeypatch):
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    atomic_write_text(tmp_path / "summary.json", "{}\n")
    assert len(synced) == 2  # the temp file, then the folder after the rename
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "summary.json") as fh:
        fh.write("half")
        raise RuntimeError("writer crashed")
    assert (tmp_path / "summary.json").read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# -- 8. secrets ---------------------------------------------------------------------------------
KEY = "sk-test-Zq81SECRETsecret0042"


def test_an_echoed_api_key_is_stored_and_printed_nowhere(tmp_path, index_dir, monkeypatch, capsys):
    from masksearch.models.fake import ScriptedChatModel, http_error
    from masksearch.redact import install_log_redaction

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-9f8e7d6c5b4a")
    echo = f"Incorrect API key provided: {KEY}. Also tok-9f8e7d6c5b4a, Bearer abcdefghijkl1234"
    leaky = ScriptedChatModel(respond=lambda _: http_error(401, echo))
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(masked_row(i)) + "\n" for i in range(3)))
    handler = logging.StreamHandler()  # what the CLI logs through (root handler + filter)
    logging.getLogger().addHandler(handler)
    install_log_redaction()
    try:
        argv = gen_args(tmp_path, data, index_dir, "--planner-model", "fake:leaky")
        argv += ["--export", str(tmp_path / "x.jsonl"), "--export-all"]
        argv += ["--summary-json", str(tmp_path / "summary.json")]
        # every call refused: the run stops after its first 3 examples (exit 3, one line)
        assert run(argv, resources=Resources(models={"fake:leaky": leaky})) == 3
    finally:
        logging.getLogger().removeHandler(handler)
    printed = capsys.readouterr()
    with TrajectoryStore(tmp_path / "s.sqlite") as st:
        recs = list(st.records())
    assert len(recs) == 3 and all(r["status"] == "failed" for r in recs)
    assert "Incorrect API key provided: [REDACTED]" in recs[0]["error"]
    for secret in (KEY, "tok-9f8e7d6c5b4a", "abcdefghijkl1234"):
        for path in tmp_path.iterdir():  # store, checkpoint DB (+WAL), export, summary
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), (secret, path.name)
        assert secret not in printed.out + printed.err


def test_redact_patterns():
    from masksearch.redact import redact

    assert redact("key sk-abc123def456ghi789 ok") == "key [REDACTED] ok"
    assert (
        redact('{"Authorization": "Bearer xyz.abc-123_456"}') == '{"Authorization": "[REDACTED]"}'
    )
    assert redact("a task-based sk-learn bearer of news") == "a task-based sk-learn bearer of news"


def test_redact_follows_the_environment(monkeypatch):
    """The configured secrets are cached, but a key set, changed or removed is seen at once."""
    from masksearch.redact import redact

    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-first-value")
    assert redact("a tok-first-value b") == "a [REDACTED] b"
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-second-value")
    assert redact("tok-first-value tok-second-value") == "tok-first-value [REDACTED]"
    monkeypatch.delenv("MY_SERVICE_TOKEN")
    assert redact("tok-second-value") == "tok-second-value"


def test_store_rows_are_redacted_even_when_the_record_was_not(tmp_path, monkeypatch):
    from masksearch.pipeline.generate import failed_record

    monkeypatch.setenv("DASHSCOPE_API_KEY", "ds-0123456789abcdef")
    rec = failed_record(MaskedExample("ex0", "Item 0 [mask]", ["0"]), None, "x")
    rec["error"] = "upstream said ds-0123456789abcdef"
    with TrajectoryStore(tmp_path / "s.sqlite") as st:
        st.put(rec)
    db = sqlite3.connect(tmp_path / "s.sqlite")
    (text,) = db.execute("SELECT record FROM trajectories").fetchone()
    db.close()
    assert "ds-0123456789abcdef" not in text and "[REDACTED]" in text


def test_a_store_that_fills_up_mid_batch_stops_with_one_line_and_keeps_what_it_holds(tmp_path):
    """Disk full while writing: the run stops (it cannot store anything more) with an
    `OutputError` naming the store; the records committed before are kept."""
    from masksearch.graph.records import failed_record

    store = TrajectoryStore(tmp_path / "s.sqlite")
    real_db, puts = store._db, []

    class FullAfterTwo:
        def execute(self, sql, *args):
            if sql.lstrip().startswith("INSERT"):
                puts.append(1)
                if len(puts) > 2:
                    raise sqlite3.OperationalError("database or disk is full")
            return real_db.execute(sql, *args)

    store._db = FullAfterTwo()

    async def run_one(ex):
        return {**failed_record(ex, None, "x"), "status": "answered", "error": None}

    exs = [MaskedExample(f"ex{i}", f"Item {i} [mask]", [str(i)]) for i in range(6)]
    with pytest.raises(OutputError, match="disk is full") as ei:
        asyncio.run(
            generate(
                exs, None, store, GenerateSettings(concurrency=1, progress=False), run_one=run_one
            )
        )
    assert ei.value.path == str(tmp_path / "s.sqlite")
    store._db = real_db
    assert store.ids() == {"ex0", "ex1"}
    store.close()


def test_mask_on_a_truncated_gz_keeps_and_reports_what_it_wrote(tmp_path, capsys):
    import gzip

    rows = TINY.read_text().splitlines()
    big = "".join(
        json.dumps({**json.loads(r), "id": f"{json.loads(r)['id']}-{c}"}) + "\n"
        for c in range(40)
        for r in rows
    )
    blob = gzip.compress(big.encode())
    corpus = tmp_path / "c.jsonl.gz"
    corpus.write_bytes(blob[: len(blob) // 2])
    out = tmp_path / "o.jsonl"
    argv = ["mask", "--corpus", str(corpus), "--out", str(out), "--no-progress"]
    assert run([*argv, "--calibrate", "0", "--min-words", "5"]) == 2
    err = capsys.readouterr().err
    kept = sum(1 for _ in out.open())
    assert kept > 0 and f"kept {kept} new examples" in err
    assert err.strip().splitlines()[-1].startswith(f"error: {corpus}:")


def test_mask_skip_bad_counts_bad_corpus_records(tmp_path, capsys):
    rows = TINY.read_text().splitlines()
    bad = rows[:3] + ['{"id": "s", "contents": "T\\nlone \\ud800 surrogate"}', "{oops"] + rows[3:]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(bad) + "\n")
    out = tmp_path / "o.jsonl"
    argv = ["mask", "--corpus", str(corpus), "--out", str(out), "--no-progress", "--min-words", "5"]
    assert run(argv) == 2
    assert "c.jsonl:4: field 'contents'" in capsys.readouterr().err
    assert run([*argv, "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "bad_input=2" in err and "c.jsonl:5" in err
    assert sum(1 for _ in out.open()) > 0
