"""`masksearch chat` with piped input streams every step (scripted model, BM25 over the tiny corpus)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from masksearch.cli import app


@pytest.fixture
def index_dir(tmp_path, tiny_corpus_path):
    from masksearch.retrievers.build import build_index

    build_index(tiny_corpus_path, tmp_path / "idx", show_progress=False)
    return tmp_path / "idx"


def test_chat_multi_agent_streams_steps(tmp_path, index_dir):
    script = tmp_path / "s.json"
    script.write_text(
        json.dumps(
            {
                "cycle": True,
                "routes": {
                    "planner of a search team": [
                        "<think>Who designed it?</think><search>Eiffel Tower designer</search>"
                    ],
                    "rewrite a search sub-query": [
                        '{"queries": ["Eiffel Tower", "Gustave Eiffel engineer"]}'
                    ],
                    "observer of a search team": [
                        "<think>The tower is named after Gustave Eiffel.</think>"
                        "<answer>Gustave Eiffel</answer>"
                    ],
                },
            }
        )
    )
    out = CliRunner().invoke(
        app,
        [
            "chat",
            "--model",
            f"fake:{script}",
            "--retriever",
            f"bm25:{index_dir}",
            "--checkpoint",
            "memory",
        ],
        input="Who designed the Eiffel Tower?\nAnd again?\n",
    )
    assert out.exit_code == 0, out.output
    text = out.output
    assert "[planner] think: Who designed it?" in text
    assert "[planner] next sub-query: Eiffel Tower designer" in text
    assert "[rewriter] queries: Eiffel Tower | Gustave Eiffel engineer" in text
    assert "[search] turn 1:" in text and "Eiffel Tower" in text.split("[search] turn 1:")[1]
    assert "[observer] answer: Gustave Eiffel" in text
    assert text.count("==> Gustave Eiffel") == 2  # two questions, then EOF ends the loop


def test_chat_single_agent_and_bad_mode(tmp_path, index_dir):
    script = tmp_path / "s.json"
    script.write_text(
        json.dumps(["<think>search</think><search>Eiffel Tower", "<think>ok</think><answer>Paris"])
    )
    out = CliRunner().invoke(
        app,
        [
            "chat",
            "--mode",
            "single_agent",
            "--model",
            f"fake:{script}",
            "--retriever",
            f"bm25:{index_dir}",
            "--checkpoint",
            "memory",
        ],
        input="Where is the Eiffel Tower?\n",
    )
    assert out.exit_code == 0, out.output
    assert "[agent] search: Eiffel Tower" in out.output and "==> Paris" in out.output
    bad = CliRunner().invoke(app, ["chat", "--mode", "swarm"], input="")
    # the option's choices come from Context.agent_mode's Literal type: a usage error, exit 2
    assert bad.exit_code == 2 and "--agent-mode" in bad.output and "swarm" in bad.output


def _demo_args(index_dir, db):
    return [
        "chat",
        "-m",
        "fake:example",
        "-r",
        f"bm25:{index_dir}",
        "--checkpoint",
        f"sqlite:///{db}",
    ]


def test_chat_thread_memory_resume_and_review(tmp_path, index_dir):
    db = tmp_path / "chat.db"
    first = CliRunner().invoke(
        app,
        [*_demo_args(index_dir, db), "--thread", "t-1"],
        input="Who designed the Eiffel Tower?\nAnd who built it?\n",
    )
    assert first.exit_code == 0, first.output
    assert first.output.count("==> Gustave Eiffel\n") == 2  # no gold answers: no verdict shown
    assert "accepted" not in first.output
    resumed = CliRunner().invoke(app, [*_demo_args(index_dir, db), "--resume"], input="history\n")
    assert resumed.exit_code == 0, resumed.output
    assert "thread t-1" in resumed.output
    assert resumed.output.count("Q: Who designed the Eiffel Tower?") == 2  # on resume + `history`
    assert "Q: And who built it?\nA: Gustave Eiffel" in resumed.output
    review = CliRunner().invoke(
        app,
        [*_demo_args(index_dir, db), "--review-queries"],
        input="Who designed the Eiffel Tower?\nParis landmarks ; iron tower\n",
    )
    assert review.exit_code == 0, review.output
    assert "[review] proposed queries: Eiffel Tower designer | Gustave Eiffel" in review.output
    assert "[review] searching: Paris landmarks | iron tower" in review.output


def test_chat_help_keeps_mask_token():
    out = CliRunner().invoke(app, ["chat", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "[mask] tokens" in out.output
    for flag in ("--thread", "--resume", "--llm-timeout", "--judge-model", "--review-queries"):
        assert flag in out.output


def test_chat_review_prompt_comes_before_any_answer_line(tmp_path, index_dir):
    """`==>` is printed once per question, after its answer, never before a review prompt."""
    db = tmp_path / "chat.db"
    out = CliRunner().invoke(
        app,
        [*_demo_args(index_dir, db), "--review-queries"],
        input="Who designed the Eiffel Tower?\n\n\n\n\n",
    )
    assert out.exit_code == 0, out.output
    assert "(no answer)" not in out.output
    assert out.output.count("==> ") == 1
    assert out.output.index("[review] proposed queries") < out.output.index("==> Gustave Eiffel")
    assert out.output.rstrip().splitlines()[-2].startswith("==> Gustave Eiffel")


def test_chat_help_at_the_prompt_is_not_a_question(tmp_path, index_dir):
    out = CliRunner().invoke(
        app, [*_demo_args(index_dir, tmp_path / "c.db")], input="help\n?\nexit\n"
    )
    assert out.exit_code == 0, out.output
    assert out.output.count("commands at the prompt:") == 2
    assert "[planner]" not in out.output and "==>" not in out.output  # nothing was asked


def test_chat_help_shows_no_type_placeholders_beside_flags():
    out = CliRunner().invoke(app, ["chat", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert out.exit_code == 0
    assert "<bool>" not in out.output and "BOOLEAN" not in out.output
    assert "--review-queries" in out.output


def test_chat_saves_each_question_into_the_store(tmp_path, index_dir):
    """`--save STORE`: the chat's trajectories land in a trajectory store that `export` reads;
    asking the same question again on the thread replaces its record."""
    from masksearch.store.trajectories import open_store

    store = tmp_path / "chat.sqlite"
    args = [*_demo_args(index_dir, tmp_path / "c.db"), "--thread", "t-save", "--save", str(store)]
    out = CliRunner().invoke(
        app, args, input="Who designed the Eiffel Tower?\nWho built it?\nWho built it?\n"
    )
    assert out.exit_code == 0, out.output
    records = list(open_store(store).records())
    assert len(records) == 2, [r["question"] for r in records]
    by_q = {r["question"]: r for r in records}
    rec = by_q["Who designed the Eiffel Tower?"]
    assert rec["final_answer"] == "Gustave Eiffel" and rec["status"] == "answered"
    assert rec["thread_id"] == "t-save" and rec["id"].startswith("chat-")
    assert [m["role"] for m in rec["messages"]][:2] == ["system", "user"]
    exported = tmp_path / "out.jsonl"
    res = CliRunner().invoke(
        app, ["export", "--records", str(store), "-f", "trl", "--out", str(exported), "--all"]
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert {row["id"].split(":")[0] for row in rows} == {r["id"] for r in records}
