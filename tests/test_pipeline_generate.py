"""`generate` through the real LangGraph graph with scripted models and an in-memory retriever."""

from __future__ import annotations

import sqlite3

import pytest
from langgraph.types import RetryPolicy

from masksearch.graph import Context
from masksearch.graph.testing import KeywordRetriever
from masksearch.nodes.common import is_transient
from masksearch.pipeline.generate import GenerateSettings, generate
from masksearch.pipeline.testing import LatencyChatModel, team_respond
from masksearch.resources import Resources
from masksearch.store.trajectories import TrajectoryStore, iter_records
from masksearch.types import MaskedExample, Passage, Span

FAST = RetryPolicy(max_attempts=3, initial_interval=0.001, jitter=False, retry_on=is_transient)
PASSAGES = [
    Passage(f"p{i}", f"Topic {i}", f"Item {i} is about the colour number {i}.") for i in range(12)
]


def make_examples(n: int) -> list[MaskedExample]:
    out = []
    for i in range(n):
        k = 1 + i % 2
        spans = [Span(0, 4, "Item"), Span(8, 10, f"{i}")][:k]
        q = f"Item {i} is about the colour number [mask]." + (" Also [mask]." if k == 2 else "")
        out.append(
            MaskedExample(id=f"ex{i}", question=q, answers=[s.text for s in spans], spans=spans)
        )
    return out


def right_for_even(question: str) -> str:
    """Correct answer (all spans) for even items, wrong for odd ones."""
    i = int(question.split()[1])
    ex = make_examples(i + 1)[i]
    return " ; ".join(ex.answers) if i % 2 == 0 else "wrong"


def team_resources(latency_s: float = 0.005) -> Resources:
    model = LatencyChatModel(respond=team_respond(right_for_even), latency_s=latency_s)
    return Resources(
        models={"fake:team": model}, retrievers={"mem:tiny": KeywordRetriever(PASSAGES)}
    )


@pytest.fixture
def res() -> Resources:
    return team_resources()


@pytest.fixture
def team(res: Resources) -> LatencyChatModel:
    return res.get_model("fake:team")


def context(**kw) -> Context:
    base = dict(
        planner_model="fake:team",
        rewriter_model="fake:team",
        observer_model="fake:team",
        retriever="mem:tiny",
        top_k=2,
        max_turns=2,
    )
    return Context(**{**base, **kw})


async def test_generate_counts_accepts_and_exports(tmp_path, res, team):
    store = tmp_path / "traj.sqlite"
    s = await generate(
        make_examples(10),
        context(),
        store,
        GenerateSettings(
            checkpointer_url="memory",
            concurrency=4,
            progress=False,
            graph_options={"retry_policy": FAST},
        ),
        resources=res,
    )
    assert (s.done, s.accepted, s.failed) == (10, 5, 0)
    assert s.by_status == {"answered": 10}
    assert s.by_k == {1: [5, 5], 2: [5, 0]}  # even ids have k=1 and get it right
    assert s.mean_turns == pytest.approx(1.0)  # meta.turns: one search round each
    assert s.search_calls == 10 and s.prompt_tokens > 0 and s.throughput > 0
    assert team.calls == 30
    with TrajectoryStore(store) as st:
        assert st.stats()["count"] == 10 and st.stats()["accepted"] == 5
        assert st.export_jsonl(tmp_path / "acc.jsonl") == 5
    recs = list(iter_records(tmp_path / "acc.jsonl"))
    assert sorted(r["id"] for r in recs) == ["ex0", "ex2", "ex4", "ex6", "ex8"]
    assert all(r["accepted"] and r["status"] == "answered" for r in recs)


async def test_resume_with_sqlite_checkpointer_skips_done(tmp_path, res, team):
    store, ckpt = tmp_path / "traj.sqlite", f"sqlite:///{tmp_path / 'ckpt.sqlite'}"
    await generate(
        make_examples(4),
        context(),
        store,
        GenerateSettings(checkpointer_url=ckpt, concurrency=2, progress=False),
        resources=res,
    )
    assert team.calls == 12
    s = await generate(
        make_examples(6),
        context(),
        store,
        GenerateSettings(checkpointer_url=ckpt, concurrency=2, progress=False),
        resources=res,
    )
    assert s.skipped_existing == 4 and s.done == 2 and team.calls == 18
    # finished threads are removed from the checkpointer (their records are in the store)
    db = sqlite3.connect(tmp_path / "ckpt.sqlite")
    assert db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 0
    db.close()


async def test_judge_model_counts(tmp_path, res):
    s = await generate(
        make_examples(4),
        context(judge_model="fake:team"),
        tmp_path / "t.sqlite",
        GenerateSettings(checkpointer_url="memory", concurrency=2, progress=False),
        resources=res,
    )
    assert s.accepted == 2
    with TrajectoryStore(tmp_path / "t.sqlite") as st:
        assert st.get("ex0")["scores"]["judge"] == 1.0
        assert "judge" in st.get("ex0")["models"]


async def test_high_concurrency_overlaps_calls(tmp_path):
    s = await generate(
        make_examples(32),
        context(),
        tmp_path / "t.sqlite",
        GenerateSettings(checkpointer_url="memory", concurrency=32, progress=False),
        resources=team_resources(latency_s=0.1),
    )
    assert s.done == 32
    assert s.elapsed_s < 32 * 3 * 0.1 / 4  # far below serial time (9.6 s)


async def test_steady_throughput_counts_only_the_window_with_every_slot_busy(tmp_path):
    """`Summary.steady_throughput`: from when the first `concurrency` examples had finished to
    the last start; none for a batch no larger than the pool; Ray workers' rates add up."""
    import asyncio

    from masksearch.graph.records import failed_record
    from masksearch.pipeline.summary import Summary, merge

    async def run_one(ex):  # a 20 ms example (its record's content does not matter here)
        await asyncio.sleep(0.02)
        return failed_record(ex, None, "stand-in")

    async def run(n: int) -> Summary:  # n examples, 4 at a time
        store = tmp_path / f"{n}.sqlite"
        return await generate(
            make_examples(n),
            None,
            store,
            GenerateSettings(concurrency=4, progress=False),
            run_one=run_one,
        )

    s = await run(40)
    assert s.done == 40 and 0 < s.steady_done < 40 and 0 < s.steady_s < s.elapsed_s
    assert s.steady_throughput > 0
    small = await run(4)
    assert small.done == 4 and small.steady_throughput == 0
    both = merge(
        [Summary(done=5, steady_done=10, steady_s=1.0), Summary(steady_done=10, steady_s=0.5)]
    )
    assert both.steady_throughput == pytest.approx(30.0)
