"""`masksearch mask` end to end on the tiny corpus (CliRunner)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from masksearch.cli import app
from masksearch.errors import ConfigError
from masksearch.masking import fill_masks, load_masked

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["mask", *map(str, args), "--no-progress"])


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_mask_writes_valid_records_and_summary(tiny_corpus_path, tmp_path):
    out, summary = tmp_path / "masked.jsonl", tmp_path / "summary.json"
    res = invoke(
        "--corpus",
        tiny_corpus_path,
        "--out",
        out,
        "--seed",
        3,
        "--min-words",
        10,
        "--summary-json",
        summary,
    )
    assert res.exit_code == 0, res.output
    rows = read(out)
    assert len(rows) == 24 and len({r["source_id"] for r in rows}) == 24
    for r in rows:
        assert set(r) == {
            "id",
            "question",
            "answers",
            "task",
            "source_id",
            "title",
            "text",
            "masked_text",
            "spans",
            "strategy",
            "k",
        }
        assert r["task"] == "ramp" and r["strategy"] == "rule" and 1 <= r["k"] <= 4
        assert fill_masks(r["masked_text"], r["answers"]) == r["text"]
    assert [e.to_dict() for e in load_masked(out)] == rows
    s = json.loads(summary.read_text())
    assert s["written"] == 24 and sum(s["by_k"].values()) == 24
    assert "examples written: 24" in res.output and "k=1:" in res.output


def test_mask_resume_appends_without_duplicates(tiny_corpus_path, tmp_path):
    out = tmp_path / "masked.jsonl"
    first = invoke("--corpus", tiny_corpus_path, "--out", out, "--limit", 10, "--min-words", 10)
    assert first.exit_code == 0, first.output
    assert len(read(out)) == 10
    # simulate a crash mid-write: a truncated last line is repaired, not duplicated
    with open(out, "a", encoding="utf-8") as fh:
        fh.write('{"id": "10:k2", "question": "trunc')
    second = invoke("--corpus", tiny_corpus_path, "--out", out, "--min-words", 10)
    assert second.exit_code == 0, second.output
    rows = read(out)
    assert len(rows) == 24 and len({r["source_id"] for r in rows}) == 24
    assert "already_done=10" in second.output
    # a full rerun adds nothing
    third = invoke("--corpus", tiny_corpus_path, "--out", out)
    assert third.exit_code == 0 and len(read(out)) == 24


def test_mask_same_seed_same_output(tiny_corpus_path, tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    for path, seed in ((a, 5), (b, 5), (c, 6)):
        assert invoke("--corpus", tiny_corpus_path, "--out", path, "--seed", seed).exit_code == 0
    assert a.read_text() == b.read_text() != c.read_text()


def test_mask_k_dist_and_max_examples(tiny_corpus_path, tmp_path):
    out = tmp_path / "k1.jsonl"
    res = invoke(
        "--corpus",
        tiny_corpus_path,
        "--out",
        out,
        "--k-dist",
        "1:1",
        "--max-examples",
        5,
        "--min-words",
        10,
    )
    assert res.exit_code == 0, res.output
    rows = read(out)
    assert len(rows) == 5 and {r["k"] for r in rows} == {1}


@pytest.mark.parametrize(
    "args, match",
    [
        (["--strategy", "magic"], "unknown --strategy"),
        (["--k-dist", "1:x"], "k-dist"),
        (["--on-few", "maybe"], "on-few"),
        (["--strategy", "llm"], "needs --model"),
    ],
)
def test_mask_config_errors(tiny_corpus_path, tmp_path, args, match):
    res = invoke("--corpus", tiny_corpus_path, "--out", tmp_path / "o.jsonl", *args)
    assert res.exit_code != 0
    assert isinstance(res.exception, ConfigError) and match in str(res.exception)
    assert not (tmp_path / "o.jsonl").exists() or (tmp_path / "o.jsonl").read_text() == ""


def test_mask_llm_with_fake_model_spec(tiny_corpus_path, tmp_path):
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "cycle": True,
                "routes": {
                    "Champ de Mars": ['{"spans": [{"text": "Champ de Mars", "label": "LOC"}]}'],
                },
                "default": ["not json at all"],
            }
        )
    )
    out = tmp_path / "llm.jsonl"
    res = invoke(
        "--corpus",
        tiny_corpus_path,
        "--out",
        out,
        "--strategy",
        "llm",
        "--model",
        f"fake:{script}",
        "--limit",
        3,
        "--min-words",
        10,
    )
    assert res.exit_code == 0, res.output
    rows = read(out)
    assert [(r["source_id"], r["answers"], r["strategy"]) for r in rows] == [
        ("0", ["Champ de Mars"], "llm")
    ]
    assert "llm_bad_output=2" in res.output


def test_mask_bad_corpus_line_is_located(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "1", "contents": "T\\nSome text"}\n{"id": 2, "contents": \n')
    res = invoke("--corpus", corpus, "--out", tmp_path / "o.jsonl", "--corpus-format", "flashrag")
    assert res.exit_code != 0
    assert f"{corpus}:2" in str(res.exception)


def test_mask_reports_calibrated_weights(tiny_corpus_path, tmp_path):
    out, summary = tmp_path / "c.jsonl", tmp_path / "s.json"
    res = invoke(
        "--corpus", tiny_corpus_path, "--out", out, "--min-words", 10, "--summary-json", summary
    )
    assert res.exit_code == 0
    s = json.loads(summary.read_text())
    assert s["target"] == {"1": 0.25, "2": 0.25, "3": 0.25, "4": 0.25}
    assert s["sampling"] != s["target"] and abs(sum(s["sampling"].values()) - 1) < 1e-6
    assert "calibrated" in res.output
    off = invoke(
        "--corpus",
        tiny_corpus_path,
        "--out",
        tmp_path / "d.jsonl",
        "--min-words",
        10,
        "--calibrate",
        0,
        "--summary-json",
        summary,
    )
    assert off.exit_code == 0 and json.loads(summary.read_text())["sampling"] == s["target"]
