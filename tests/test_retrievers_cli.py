"""`masksearch index` / `masksearch retrieve` through the Typer app."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from masksearch.cli import app

runner = CliRunner()


def _corpus(tmp_path, bad: bool):
    rows = [
        json.dumps(
            {
                "id": "1",
                "contents": "Eiffel Tower\nGustave Eiffel's company designed "
                "and built the tower in Paris.",
            }
        ),
        json.dumps({"id": "2", "contents": "Nile\nThe Nile is a major river in Africa."}),
    ]
    if bad:
        rows.insert(1, '{"id": "x", "contents": ')
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_index_then_retrieve(tmp_path):
    corpus = _corpus(tmp_path, bad=False)
    res = runner.invoke(
        app, ["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    assert "indexed 2 passages" in res.output
    res = runner.invoke(
        app, ["retrieve", "--index", str(tmp_path / "idx"), "-k", "1", "who built the tower"]
    )
    assert res.exit_code == 0, res.output
    assert "1. [" in res.output and "Eiffel Tower (1)" in res.output


def test_index_bad_line_fails_then_skip_bad_counts(tmp_path):
    corpus = _corpus(tmp_path, bad=True)
    res = runner.invoke(
        app, ["index", "--corpus", str(corpus), "--out", str(tmp_path / "a"), "--quiet"]
    )
    assert res.exit_code != 0
    assert f"{corpus}:2" in str(res.exception)
    res = runner.invoke(
        app,
        ["index", "--corpus", str(corpus), "--out", str(tmp_path / "b"), "--quiet", "--skip-bad"],
    )
    assert res.exit_code == 0, res.output
    assert "indexed 2 passages" in res.output and "skipped 1 bad records" in res.output


def test_bad_kind_is_a_config_error(tmp_path):
    corpus = _corpus(tmp_path, bad=False)
    res = runner.invoke(
        app, ["index", "--corpus", str(corpus), "--out", str(tmp_path / "x"), "--kind", "splade"]
    )
    assert res.exit_code != 0 and "unknown index kind" in str(res.exception)


def test_failed_rebuild_keeps_the_previous_index(tmp_path):
    good, out = _corpus(tmp_path, bad=False), tmp_path / "idx"
    assert (
        runner.invoke(app, ["index", "--corpus", str(good), "--out", str(out), "--quiet"]).exit_code
        == 0
    )
    before = (out / "passages.jsonl").read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n', encoding="utf-8")
    res = runner.invoke(
        app, ["index", "--corpus", str(bad), "--out", str(out), "--format", "flashrag", "--quiet"]
    )
    assert res.exit_code != 0
    assert (out / "passages.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "c.jsonl", "idx"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["index", "--corpus", str(good), "--out", str(tmp_path / "other")])
    assert res.exit_code != 0 and "not empty" in str(res.exception)


def test_index_output_has_no_third_party_debug_lines_without_verbose(tmp_path):
    """bm25s sets its own logger to DEBUG when it is imported (after the CLI configured logging):
    without -v its records below WARNING stay off the screen; -v shows them."""
    import subprocess
    import sys

    corpus = _corpus(tmp_path, bad=False)

    def run(*flags: str) -> str:
        out = tmp_path / f"idx{len(flags)}"
        cmd = [sys.executable, "-m", "masksearch.cli", *flags, "index"]
        cmd += ["--corpus", str(corpus), "--out", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    assert "DEBUG" not in run()
    assert "DEBUG bm25s" in run("-v")
