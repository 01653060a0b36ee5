"""`masksearch run` and `masksearch generate` end to end with a scripted `fake:` model."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from masksearch.graph.testing import OBSERVER_KEY, PLANNER_KEY, REWRITER_KEY
from masksearch.offline import commands as offline_commands
from masksearch.pipeline import commands
from masksearch.store.trajectories import TrajectoryStore, iter_records

app = typer.Typer()  # only this area's commands: other areas' CLI changes can't break these tests
commands.register(app)
offline_commands.register(app)


def fake_script(path, answer="Paris"):
    """A cycling `fake:` script: plan one search, rewrite it, answer `answer`."""
    path.write_text(
        json.dumps(
            {
                "cycle": True,
                "routes": {
                    PLANNER_KEY: ["<think>Look it up.</think>\n<search>the masked fact</search>"],
                    REWRITER_KEY: ['{"queries": ["capital city", "history"]}'],
                    OBSERVER_KEY: [f"<think>Done.</think>\n<answer>{answer}</answer>"],
                },
            }
        ),
        encoding="utf-8",
    )
    return path


def test_run_offline_pipeline_is_idempotent(tmp_path, tiny_corpus_path):
    script = fake_script(tmp_path / "team.json")
    work = tmp_path / "work"
    args = [
        "run",
        "--workdir",
        str(work),
        "--corpus",
        str(tiny_corpus_path),
        "--n",
        "4",
        "--concurrency",
        "2",
        "--model",
        f"fake:{script}",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in (
        "corpus.jsonl",
        "index/manifest.json",
        "masked.jsonl",
        "trajectories.sqlite",
        "trajectories.jsonl",
        "summary.json",
    ):
        assert (work / name).is_file(), name
    summary = json.loads((work / "summary.json").read_text())
    assert summary["run"]["done"] == 4 and summary["store"]["count"] == 4
    assert summary["run"]["failed"] == 0
    with TrajectoryStore(work / "trajectories.sqlite") as st:
        recs = list(st.records())
    assert len(recs) == 4 and all(r["status"] == "answered" for r in recs)
    assert all(r["final_answer"] == "Paris" for r in recs)
    exported = [line for line in (work / "trajectories.jsonl").open() if line.strip()]
    assert len(exported) == summary["store"]["accepted"]  # a fixed fake answer is mostly wrong
    assert (
        "trajectory store" in result.output and str(work / "trajectories.sqlite") in result.output
    )

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "reusing" in again.output
    summary = json.loads((work / "summary.json").read_text())
    assert summary["run"]["done"] == 0 and summary["run"]["skipped"]["existing"] == 4
    assert summary["store"]["count"] == 4
    assert sum(1 for line in (work / "masked.jsonl").open() if line.strip()) == 4


def test_generate_cli_with_export_and_limit(tmp_path, tiny_corpus_path):
    script = fake_script(tmp_path / "team.json")
    work = tmp_path / "work"
    assert (
        CliRunner()
        .invoke(
            app,
            [
                "run",
                "--workdir",
                str(work),
                "--corpus",
                str(tiny_corpus_path),
                "--n",
                "5",
                "--model",
                f"fake:{script}",
                "--no-progress",
            ],
        )
        .exit_code
        == 0
    )
    store, export = tmp_path / "g.sqlite", tmp_path / "g.jsonl"
    base = [
        "generate",
        "--input",
        str(work / "masked.jsonl"),
        "--store",
        str(store),
        "--planner-model",
        f"fake:{script}",
        "--retriever",
        f"bm25:{work / 'index'}",
        "--concurrency",
        "3",
        "--max-turns",
        "2",
        "--no-progress",
    ]
    result = CliRunner().invoke(
        app,
        [
            *base,
            "--limit",
            "2",
            "--export",
            str(export),
            "--export-all",
            "--summary-json",
            str(tmp_path / "s.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "done 2" in result.output and (tmp_path / "g.ckpt.sqlite").is_file()
    assert len(list(iter_records(export))) == 2
    result = CliRunner().invoke(app, base)
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["run"]["done"] == 2
    with TrajectoryStore(store) as st:
        assert len(st) == 5


@pytest.mark.slow
def test_run_with_embedded_local_model(tmp_path, tiny_corpus_path):
    """The real offline default (`local:default`, the embedded Qwen2.5-Coder-1.5B) on a tiny
    slice: minutes on CPU."""
    pytest.importorskip("llama_cpp")
    from masksearch.models.embedded import gguf_path

    try:
        gguf_path("default")
    except Exception as e:  # the model's packages are not installed
        pytest.skip(f"embedded model not available: {e}")
    work = tmp_path / "work"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--workdir",
            str(work),
            "--corpus",
            str(tiny_corpus_path),
            "--n",
            "2",
            "--concurrency",
            "2",
            "--max-turns",
            "1",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((work / "summary.json").read_text())
    assert summary["store"]["count"] == 2 and summary["run"]["failed"] == 0
    with TrajectoryStore(work / "trajectories.sqlite") as st:
        recs = list(st.records())
    assert all(r["models"]["planner"] == "local:default" for r in recs)
    assert all(r["usage"]["completion_tokens"] > 0 for r in recs)  # the model really generated


@pytest.mark.slow
def test_generate_on_a_local_ray_started_on_demand(tmp_path, tiny_corpus_path):
    """`generate -p 2` starts a local Ray, runs 2 workers from the CLI and shuts it down."""
    pytest.importorskip("ray")
    import subprocess
    import sys

    script = fake_script(tmp_path / "team.json")
    work = tmp_path / "work"
    args = ["run", "--workdir", str(work), "--corpus", str(tiny_corpus_path), "--n", "6"]
    args += ["--concurrency", "2", "--model", f"fake:{script}", "--no-progress"]
    assert CliRunner().invoke(app, args).exit_code == 0
    store, out_json = tmp_path / "ray.sqlite", tmp_path / "s.json"
    cmd = [
        sys.executable,
        "-m",
        "masksearch.cli",
        "generate",
        "--input",
        str(work / "masked.jsonl"),
    ]
    cmd += ["--store", str(store), "--planner-model", f"fake:{script}", "-p", "2", "-c", "4"]
    cmd += [
        "--retriever",
        f"bm25:{work / 'index'}",
        "--no-progress",
        "--summary-json",
        str(out_json),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "over 2 Ray workers" in done.stderr
    summary = json.loads(out_json.read_text())
    assert summary["run"]["done"] == summary["store"]["count"] == 6
