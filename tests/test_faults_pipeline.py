"""Fault injection during a batch: LLM 429/500/timeouts/empty/malformed output and a failing
retriever. The batch finishes, transient errors are retried (RetryPolicy), the rest are recorded
as failed with the reason, `retry_failed` redoes them, and nothing already written changes."""

from __future__ import annotations

import json
import threading

import pytest
from langgraph.types import RetryPolicy

from masksearch.graph import Context
from masksearch.graph.testing import KeywordRetriever
from masksearch.models.fake import http_error
from masksearch.nodes.common import is_transient
from masksearch.pipeline.generate import GenerateSettings, generate
from masksearch.pipeline.testing import LatencyChatModel, team_respond
from masksearch.resources import Resources
from masksearch.store.trajectories import TrajectoryStore
from masksearch.types import MaskedExample, Passage, Span

FAST = {
    "retry_policy": RetryPolicy(
        max_attempts=3, initial_interval=0.001, jitter=False, retry_on=is_transient
    )
}
PASSAGES = [Passage(f"p{i}", f"Topic {i}", f"Item {i} is about number {i}.") for i in range(20)]
N = 14


def examples() -> list[MaskedExample]:
    return [
        MaskedExample(
            id=f"ex{i}",
            question=f"Item {i} is about number [mask].",
            answers=[str(i)],
            spans=[Span(0, len(str(i)), str(i))],
        )
        for i in range(N)
    ]


def item(question: str) -> int:
    return int(question.split()[1])


class Faults:
    """Per-(role, item) scripted failures; `once` faults fire only on the first call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fired: set[tuple[str, int]] = set()
        self.enabled = True

    def __call__(self, role: str, question: str):
        if not self.enabled or "Item" not in question:
            return None
        i = item(question)
        plan = {
            (0, "planner"): ("once", http_error(429)),
            (1, "rewriter"): ("once", TimeoutError("scripted timeout")),
            (2, "observer"): ("once", http_error(503)),
            (3, "planner"): ("always", http_error(500)),  # exhausts the retries -> failed
            (4, "planner"): ("always", ""),  # empty output -> the graph's fallback
            (5, "rewriter"): ("always", "not json {{{"),  # malformed -> fallback
            (6, "observer"): ("always", "<answer>unterminated"),  # malformed answer
            (7, "planner"): ("always", ValueError("400 bad request")),  # non-transient -> failed
        }.get((i, role))
        if plan is None:
            return None
        kind, value = plan
        with self.lock:
            if kind == "once" and (role, i) in self.fired:
                return None
            self.fired.add((role, i))
        return value


class FlakyRetriever(KeywordRetriever):
    """Raises for item 8 (always: RuntimeError) and item 9 (once: ConnectionError)."""

    def __init__(self, passages):
        super().__init__(passages)
        self.enabled = True
        self.flaked = False

    def search(self, queries, k):
        text = " ".join(queries)
        if self.enabled and "Item 8" in text:
            raise RuntimeError("search backend down")
        if self.enabled and "Item 9" in text and not self.flaked:
            self.flaked = True
            raise ConnectionError("connection reset")
        return super().search(queries, k)


@pytest.fixture
def setup() -> tuple[Faults, FlakyRetriever, Resources]:
    faults = Faults()
    model = LatencyChatModel(
        respond=team_respond(lambda q: str(item(q)), faults=faults), latency_s=0.002
    )
    retriever = FlakyRetriever(PASSAGES)
    res = Resources(models={"fake:team": model}, retrievers={"mem:flaky": retriever})
    return faults, retriever, res


def context() -> Context:
    return Context(
        planner_model="fake:team",
        rewriter_model="fake:team",
        observer_model="fake:team",
        retriever="mem:flaky",
        top_k=2,
        max_turns=2,
    )


async def test_batch_survives_faults_and_retry_failed_recovers(tmp_path, setup):
    faults, retriever, res = setup
    store = tmp_path / "t.sqlite"
    ckpt = f"sqlite:///{tmp_path / 'ckpt.sqlite'}"
    s = await generate(
        examples(),
        context(),
        store,
        GenerateSettings(checkpointer_url=ckpt, concurrency=4, progress=False, graph_options=FAST),
        resources=res,
    )
    assert s.done == N and not s.interrupted
    with TrajectoryStore(store) as st:
        recs = {r["id"]: r for r in st.records()}
    assert set(recs) == {f"ex{i}" for i in range(N)}
    failed = {i for i in range(N) if recs[f"ex{i}"]["status"] == "failed"}
    assert failed == {3, 7, 8}
    assert "500" in recs["ex3"]["error"] and "400 bad request" in recs["ex7"]["error"]
    assert "search backend down" in recs["ex8"]["error"]
    for i in (0, 1, 2, 9):  # transient errors were retried by the RetryPolicy
        assert recs[f"ex{i}"]["status"] == "answered" and recs[f"ex{i}"]["accepted"], i
    for i in (4, 5, 6):  # empty / malformed output: handled, recorded, not a crash
        assert recs[f"ex{i}"]["status"] in ("answered", "max_turns", "failed")
    assert s.failed == 3 and sum(s.fail_reasons.values()) == 3
    assert "top failure reasons" in s.format()

    # the failures go away; --retry-failed redoes exactly the failed ids, nothing else changes
    faults.enabled, retriever.enabled = False, False
    before = {
        k: json.dumps(v, sort_keys=True) for k, v in recs.items() if k not in {"ex3", "ex7", "ex8"}
    }
    s2 = await generate(
        examples(),
        context(),
        store,
        GenerateSettings(
            checkpointer_url=ckpt,
            concurrency=4,
            progress=False,
            retry_failed=True,
            graph_options=FAST,
        ),
        resources=res,
    )
    assert s2.done == 3 and s2.skipped_existing == N - 3 and s2.failed == 0
    with TrajectoryStore(store) as st:
        after = {r["id"]: r for r in st.records()}
    assert len(after) == N
    assert all(after[f"ex{i}"]["status"] == "answered" for i in (3, 7, 8))
    assert {k: json.dumps(after[k], sort_keys=True) for k in before} == before


async def test_rerun_without_retry_failed_keeps_failures(tmp_path, setup):
    res = setup[2]
    store = tmp_path / "t.sqlite"
    await generate(
        examples(),
        context(),
        store,
        GenerateSettings(
            checkpointer_url="memory", concurrency=2, progress=False, graph_options=FAST
        ),
        resources=res,
    )
    s = await generate(
        examples(),
        context(),
        store,
        GenerateSettings(
            checkpointer_url="memory", concurrency=2, progress=False, graph_options=FAST
        ),
        resources=res,
    )
    assert s.done == 0 and s.skipped_existing == N
