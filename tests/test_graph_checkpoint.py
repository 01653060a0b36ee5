"""Checkpointing: deterministic thread ids, resume after a failure, rebuild without re-running."""

from __future__ import annotations

import json

import pytest
from langgraph.types import RetryPolicy

from masksearch.errors import ConfigError
from masksearch.graph import (
    Context,
    Resources,
    build_graph,
    open_checkpointer,
    run_example,
    thread_id_for,
)
from masksearch.graph.testing import KeywordRetriever, scripted_team
from masksearch.models.fake import http_error
from masksearch.nodes.common import is_transient
from masksearch.types import MaskedExample, Passage

FAST = RetryPolicy(max_attempts=2, initial_interval=0.001, jitter=False, retry_on=is_transient)
EX = MaskedExample(
    id="q-7", question="Who designed the Eiffel Tower?", answers=["Gustave Eiffel"], task="qa"
)
PLAN = "<think>look up the designer</think><search>Eiffel Tower designer</search>"
REWRITE = '{"queries": ["Eiffel Tower designer", "Gustave Eiffel"]}'
ANSWER = "<think>The company of Gustave Eiffel built it.</think><answer>Gustave Eiffel</answer>"


def res(model) -> Resources:
    """This graph's models and retriever (nothing global)."""
    retriever = KeywordRetriever(
        [Passage("p1", "Gustave Eiffel", "Gustave Eiffel's company designed the Eiffel Tower.")]
    )
    return Resources(models={"fake:team": model}, retrievers={"mem:tiny": retriever})


def ctx(**kw) -> Context:
    return Context(
        **{
            "planner_model": "fake:team",
            "rewriter_model": "fake:team",
            "observer_model": "fake:team",
            "retriever": "mem:tiny",
            **kw,
        }
    )


def test_thread_id_deterministic_and_setting_sensitive():
    assert thread_id_for("a", ctx()) == thread_id_for("a", ctx())
    assert thread_id_for("a", ctx()) != thread_id_for("b", ctx())
    assert thread_id_for("a", ctx()) != thread_id_for("a", ctx(top_k=3))
    assert thread_id_for("a", ctx()) != thread_id_for("a", ctx(observer_model="openai:gpt-4o"))


async def test_resume_after_failure_continues_from_checkpoint(tmp_path):
    url = f"sqlite:///{tmp_path / 'ckpt' / 'runs.db'}"
    # Run 1: the observer (turn 1, after the first search) keeps failing with HTTP 500.
    broken = scripted_team(planner=[PLAN], rewriter=[REWRITE], observer=[http_error(500)] * 2)
    async with open_checkpointer(url) as saver:
        rec1 = await run_example(
            build_graph(saver, resources=res(broken), retry_policy=FAST), EX, ctx()
        )
    assert rec1["status"] == "failed" and "500" in rec1["error"]
    assert [s["agent"] for s in rec1["steps"]] == [
        "planner",
        "rewriter",
        "search",
    ]  # partial state kept

    # Run 2 (new process-like: fresh saver, fresh graph): a working model resumes at the observer.
    working = scripted_team(observer=[ANSWER])
    async with open_checkpointer(url) as saver:
        rec2 = await run_example(
            build_graph(saver, resources=res(working), retry_policy=FAST), EX, ctx()
        )
    assert rec2["status"] == "answered" and rec2["final_answer"] == "Gustave Eiffel"
    assert len(working.calls) == 1 and "observer of a search team" in working.calls[0][-1].content
    assert [s["agent"] for s in rec2["steps"]] == ["planner", "rewriter", "search", "observer"]
    assert rec2["thread_id"] == rec1["thread_id"] and rec2["accepted"] is True

    # Run 3: finished thread → rebuilt from the checkpoint, no model call at all.
    idle = scripted_team()
    async with open_checkpointer(url) as saver:
        rec3 = await run_example(
            build_graph(saver, resources=res(idle), retry_policy=FAST), EX, ctx()
        )
    assert idle.calls == []
    assert {k: v for k, v in rec3.items() if k != "created_at"} == {
        k: v for k, v in rec2.items() if k != "created_at"
    }


async def test_memory_checkpointer_and_bad_urls():
    async with open_checkpointer("memory") as saver:
        graph = build_graph(saver, resources=res(scripted_team(planner=[ANSWER])))
        rec = await run_example(graph, EX, ctx())
        assert rec["status"] == "answered"
    with pytest.raises(ConfigError):
        async with open_checkpointer("redis://localhost"):
            pass
    with pytest.raises(ConfigError):
        async with open_checkpointer("sqlite:///"):
            pass


async def test_no_secret_in_checkpoint_or_record(tmp_path, monkeypatch):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("DASHSCOPE_API_KEY", secret)
    team = scripted_team(planner=[PLAN], rewriter=[REWRITE], observer=[ANSWER])
    db = tmp_path / "c.db"
    async with open_checkpointer(f"sqlite:///{db}") as saver:
        rec = await run_example(build_graph(saver, resources=res(team)), EX, ctx())
    assert secret not in json.dumps(rec)
    assert secret.encode() not in db.read_bytes()


@pytest.mark.slow
async def test_local_default_model_end_to_end(tmp_path, tiny_corpus_path):
    """An embedded model (SmolLM2, the smallest) drives the single-agent graph offline; whatever
    it writes, the run ends within its turn budget with a valid record."""
    from masksearch.retrievers.build import build_index

    build_index(tiny_corpus_path, tmp_path / "idx", show_progress=False)
    context = Context(
        agent_mode="single_agent",
        planner_model="local:smollm2-135m",
        retriever=f"bm25:{tmp_path / 'idx'}",
        max_turns=1,
        max_tokens=24,
        top_k=2,
    )
    async with open_checkpointer(f"sqlite:///{tmp_path / 'c.db'}") as saver:
        rec = await run_example(build_graph(saver), EX, context)
    assert rec["status"] in ("answered", "max_turns") and rec["error"] is None
    assert rec["models"] == {"agent": "local:smollm2-135m"}
    assert all(s.get("completion_tokens", 1) <= 24 for s in rec["steps"])
    assert rec["usage"]["llm_calls"] >= 1
