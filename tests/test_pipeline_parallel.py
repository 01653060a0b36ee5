"""Sharded multi-process generation: every id exactly once, merged summary, resume across
different process counts."""

from __future__ import annotations

import json

import pytest

from masksearch.graph import Context, resources
from masksearch.graph.testing import KeywordRetriever
from masksearch.pipeline.parallel import shard_of
from masksearch.pipeline.runner import run_generate
from masksearch.pipeline.store import TrajectoryStore
from masksearch.pipeline.testing import LatencyChatModel, team_respond
from masksearch.types import MaskedExample, Passage, Span


@pytest.fixture
def data(tmp_path):
    resources.clear()
    resources.register_model(
        "fake:team",
        LatencyChatModel(
            respond=team_respond(lambda q: q.split()[1] if int(q.split()[1]) % 3 else "no"),
            latency_s=0.01,
        ),
    )
    resources.register_retriever(
        "mem:x",
        KeywordRetriever(
            [Passage(f"p{i}", f"T{i}", f"Item {i} is about number {i}.") for i in range(30)]
        ),
    )
    path = tmp_path / "in.jsonl"
    with path.open("w") as fh:
        for i in range(30):
            ex = MaskedExample(
                id=f"ex{i}",
                question=f"Item {i} is about number [mask].",
                answers=[str(i)],
                spans=[Span(0, len(str(i)), str(i))],
            )
            fh.write(json.dumps(ex.to_dict()) + "\n")
    yield path
    resources.clear()


def ctx() -> Context:
    return Context(
        planner_model="fake:team",
        rewriter_model="fake:team",
        observer_model="fake:team",
        retriever="mem:x",
        max_turns=1,
    )


def test_shards_are_stable_and_cover_everything():
    ids = [f"ex{i}" for i in range(1000)]
    shards = [shard_of(i, 4) for i in ids]
    assert set(shards) == {0, 1, 2, 3} and min(shards.count(k) for k in range(4)) > 200
    assert shards == [shard_of(i, 4) for i in ids]


def test_processes_write_each_id_once_and_resume(tmp_path, data):
    store = tmp_path / "t.sqlite"
    ckpt = f"sqlite:///{tmp_path / 'ckpt.sqlite'}"
    summary_json = tmp_path / "s.json"
    assert (
        run_generate(
            data,
            store,
            ctx(),
            ckpt,
            concurrency=8,
            processes=3,
            limit=24,
            summary_json=summary_json,
            progress=False,
        )
        == 0
    )
    s = json.loads(summary_json.read_text())
    assert s["run"]["done"] == 24 and s["run"]["accepted"] == 16 and s["store"]["count"] == 24
    with TrajectoryStore(store) as st:
        assert st.ids() == {f"ex{i}" for i in range(24)}
    assert (
        run_generate(
            data,
            store,
            ctx(),
            ckpt,
            concurrency=4,
            processes=2,
            summary_json=summary_json,
            progress=False,
        )
        == 0
    )
    s = json.loads(summary_json.read_text())
    assert s["run"]["done"] == 6 and s["run"]["skipped"]["existing"] == 24
    assert s["store"]["count"] == 30
