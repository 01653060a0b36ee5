"""Graph routing with scripted models: direct answer, re-search, turn limits, forced answer,
malformed output, retries, judge, single-agent mode."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import pytest
from langgraph.types import RetryPolicy
from pydantic import Field

from masksearch import prompts
from masksearch.errors import ConfigError
from masksearch.graph import Context, Resources, build_graph, run_example
from masksearch.graph.testing import KeywordRetriever, scripted_team
from masksearch.models.fake import ScriptedChatModel, http_error
from masksearch.nodes.common import is_transient
from masksearch.nodes.search import merge_results
from masksearch.types import MaskedExample, Passage

PASSAGES = [
    Passage(
        "p1", "Eiffel Tower", "The Eiffel Tower is a lattice tower in Paris, completed in 1889."
    ),
    Passage(
        "p2",
        "Gustave Eiffel",
        "Gustave Eiffel was a French engineer whose company built the tower.",
    ),
    Passage("p3", "Paris", "Paris is the capital and largest city of France."),
]
EX = MaskedExample(
    id="ex1",
    question="The Eiffel Tower is in [mask] and was completed in [mask].",
    answers=["Paris", "1889"],
)
FAST = RetryPolicy(max_attempts=3, initial_interval=0.001, jitter=False, retry_on=is_transient)

PLAN = "<think>Find where the tower is.</think>\n<search>Where is the Eiffel Tower?</search>"
REWRITE = '{"queries": ["Eiffel Tower location", "Eiffel Tower Paris"]}'
ANSWER = "<think>The tower is in Paris, completed 1889.</think>\n<answer>Paris ; 1889</answer>"


@pytest.fixture(autouse=True)
def _registry():
    """The retriever of this test's graphs (a fresh `Resources` per graph, nothing global)."""
    global _retriever
    _retriever = KeywordRetriever(PASSAGES)
    return _retriever


_retriever: KeywordRetriever | None = None


def res(model) -> Resources:
    return Resources(models={"fake:team": model}, retrievers={"mem:tiny": _retriever})


def ctx(**kw) -> Context:
    base = dict(
        planner_model="fake:team",
        rewriter_model="fake:team",
        observer_model="fake:team",
        retriever="mem:tiny",
        top_k=2,
    )
    return Context(**{**base, **kw})


async def run(model, example=EX, **kw):
    return await run_example(
        build_graph(resources=res(model), retry_policy=FAST), example, ctx(**kw)
    )


async def test_direct_answer_from_planner():
    model = scripted_team(planner=[ANSWER])
    rec = await run(model)
    assert rec["status"] == "answered" and rec["final_answer"] == "Paris ; 1889"
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
    assert rec["usage"]["search_calls"] == 0 and rec["accepted"] is True
    # RAMP records also carry the acceptance rule's span scores (masksearch.scoring)
    assert rec["scores"] == {
        "recall": 1.0,
        "em": 1.0,
        "f1": 1.0,
        "span_recall": 1.0,
        "correct": 1.0,
    }


async def test_search_then_research_then_answer(_registry):
    model = scripted_team(
        planner=[PLAN],
        rewriter=[REWRITE, 'Here: {"queries": ["tower completion year"]}'],
        observer=[
            "<think>Tower is in Paris; year unknown.</think><search>When was it completed?</search>",
            ANSWER,
        ],
    )
    rec = await run(model)
    assert rec["status"] == "answered" and rec["meta"]["turns"] == 2
    # one batched retriever call per round, with every rewritten query
    assert _registry.calls == [
        ["Eiffel Tower location", "Eiffel Tower Paris"],
        ["tower completion year"],
    ]
    roles = [m["role"] for m in rec["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    # the student sees the sub-query its thought names; the rewrites found the results
    assert rec["messages"][2]["content"] == (
        "<think>Find where the tower is.</think>\n<search>Where is the Eiffel Tower?</search>"
    )
    assert rec["messages"][4]["content"] == (
        "<think>Tower is in Paris; year unknown.</think>\n<search>When was it completed?</search>"
    )
    info = rec["messages"][3]["content"]
    assert info.startswith(
        "<information>Doc 1(Title: Eiffel Tower) The Eiffel Tower"
    ) and info.endswith("</information>")
    assert rec["messages"][0]["content"] == prompts.student_system_prompt(rec["question"])
    # the second observer prompt carries the first round's summary (all previous observations)
    observer_prompts = [
        c[-1].content for c in model.calls if "observer of a search team" in c[-1].content
    ]
    assert "Tower is in Paris; year unknown." in observer_prompts[1]
    assert [s["agent"] for s in rec["steps"]] == [
        "planner",
        "rewriter",
        "search",
        "observer",
        "rewriter",
        "search",
        "observer",
    ]


async def test_search_merge_dedupes_and_caps(_registry):
    rewrite = '{"queries": ["Eiffel tower", "Eiffel engineer", "capital city France"]}'
    rec = await run(scripted_team(planner=[PLAN], rewriter=[rewrite], observer=[ANSWER]), top_k=2)
    passages = next(s for s in rec["steps"] if s["agent"] == "search")["passages"]
    assert [p["id"] for p in passages] == ["p1", "p2", "p3"]  # round-robin, deduped by id
    rec = await run(
        scripted_team(planner=[PLAN], rewriter=[rewrite], observer=[ANSWER]),
        example=MaskedExample(id="ex2", question=EX.question, answers=EX.answers),
        top_k=2,
        max_passages=2,
    )
    passages = next(s for s in rec["steps"] if s["agent"] == "search")["passages"]
    assert [p["id"] for p in passages] == ["p1", "p2"]


def test_merge_results_round_robin():
    a, b, c = (Passage(i, i, i) for i in "abc")
    assert merge_results([[a, b], [b, c], [c]], cap=10) == [a, b, c]
    assert merge_results([[a, b], [c]], cap=2) == [a, c]
    assert merge_results([], cap=3) == []


async def test_last_turn_answer_is_kept():
    model = scripted_team(
        planner=[PLAN],
        rewriter=[REWRITE, REWRITE],
        observer=["<think>need year</think><search>year?</search>", ANSWER],
    )
    rec = await run(model, max_turns=2)
    assert rec["status"] == "answered" and rec["final_answer"] == "Paris ; 1889"
    assert rec["meta"]["forced_answer"] is False and rec["meta"]["turns"] == 2
    last_observer = [
        c[-1].content for c in model.calls if "observer of a search team" in c[-1].content
    ][-1]
    assert prompts.OBSERVER_LAST in last_observer


async def test_forced_answer_when_turns_run_out():
    model = scripted_team(
        planner=[PLAN],
        rewriter=[REWRITE],
        observer=["<think>still unsure</think><search>more?</search>"],
        answer=["<think>best guess</think><answer>Paris ; 1889</answer>"],
    )
    rec = await run(model, max_turns=1)
    assert rec["status"] == "answered" and rec["meta"]["forced_answer"] is True
    assert (
        rec["messages"][-1]["content"] == "<think>best guess</think>\n<answer>Paris ; 1889</answer>"
    )
    assert rec["steps"][-1]["agent"] == "answer"


async def test_max_turns_status_when_forced_answer_fails():
    model = scripted_team(
        planner=[PLAN],
        rewriter=[REWRITE],
        observer=["<think>x</think><search>more?</search>"],
        answer=["I don't know."],
    )
    rec = await run(model, max_turns=1)
    assert rec["status"] == "max_turns" and rec["final_answer"] == "" and rec["accepted"] is False
    assert rec["messages"][-1]["role"] == "tool"


async def test_malformed_planner_and_rewriter_fall_back(_registry):
    model = scripted_team(
        planner=["I would look up the tower."],
        rewriter=["queries: tower, paris"],
        observer=[ANSWER],
    )
    rec = await run(model)
    assert rec["status"] == "answered"
    planner_step, rewriter_step = rec["steps"][0], rec["steps"][1]
    assert planner_step["parse_error"] and planner_step["queries"] == [EX.question]
    assert rewriter_step["parse_error"].startswith("fallback to sub-query")
    assert _registry.calls == [[EX.question]]
    assert rec["messages"][2]["content"].startswith("<think>I would look up the tower.</think>")


async def test_transient_errors_are_retried():
    model = scripted_team(
        planner=[http_error(429), TimeoutError("slow"), PLAN],
        rewriter=[http_error(503), REWRITE],
        observer=[ANSWER],
    )
    rec = await run(model)
    assert rec["status"] == "answered" and rec["error"] is None
    assert len(model.calls) == 6


async def test_non_transient_error_fails_without_retry():
    model = scripted_team(planner=[ValueError("bad request"), PLAN])
    rec = await run(model)
    assert rec["status"] == "failed" and "ValueError: bad request" in rec["error"]
    assert len(model.calls) == 1


async def test_retries_exhausted_gives_failed_record():
    model = scripted_team(planner=[http_error(500)] * 3)
    rec = await run(model)
    assert rec["status"] == "failed" and "500" in rec["error"] and rec["final_answer"] == ""


async def test_per_call_timeout():
    def slow(messages):
        time.sleep(0.3)
        return ANSWER

    model = ScriptedChatModel(respond=slow)
    start = time.perf_counter()
    rec = await run(model, llm_timeout_s=0.05)
    assert rec["status"] == "failed" and "TimeoutError" in rec["error"]
    assert time.perf_counter() - start < 5


async def test_wrong_answer_not_accepted():
    model = scripted_team(planner=["<think>t</think><answer>London ; 1900</answer>"])
    rec = await run(model)
    assert (
        rec["status"] == "answered" and rec["scores"]["recall"] == 0.0 and rec["accepted"] is False
    )


@pytest.mark.parametrize(
    "verdict,accepted",
    [
        ("<verdict>correct</verdict>", True),
        ("Looks fine to me.", False),
        ("<verdict>incorrect</verdict>", False),
    ],
)
async def test_llm_judge_is_strict(verdict, accepted):
    model = scripted_team(planner=[ANSWER], judge=[verdict])
    rec = await run(model, judge_model="fake:team")
    assert rec["accepted"] is accepted
    assert rec["steps"][-1]["agent"] == "judge" and rec["models"]["judge"] == "fake:team"


async def test_single_agent_search_invalid_then_answer(_registry):
    outputs = ["<think>look it up</think>\n<search>Eiffel Tower Paris", "hmm, no tags here", ANSWER]
    model = ScriptedChatModel(responses=outputs)
    rec = await run(model, agent_mode="single_agent")
    assert rec["status"] == "answered" and rec["models"] == {"agent": "fake:team"}
    msgs = rec["messages"]
    assert msgs[2]["content"] == "<think>look it up</think>\n<search>Eiffel Tower Paris</search>"
    assert msgs[3]["content"].startswith("<information>Doc 1(Title:")
    assert (
        msgs[4]["content"] == "hmm, no tags here" and msgs[5]["content"] == prompts.INVALID_ACTION
    )
    assert msgs[-1]["content"] == ANSWER
    # the model saw exactly the student view the record stores (tool turns sent as user turns)
    assert [m.content for m in model.calls[-1]] == [m["content"] for m in msgs[:-1]]


async def test_single_agent_turn_limit_forces_answer():
    search = "<think>t</think><search>Eiffel</search>"
    model = ScriptedChatModel(
        responses=[search, search, "<think>done</think><answer>Paris ; 1889</answer>"]
    )
    rec = await run(model, agent_mode="single_agent", max_turns=1)
    assert rec["status"] == "answered" and rec["meta"]["forced_answer"] is True
    assert rec["usage"]["search_calls"] == 1
    assert prompts.AGENT_FORCE_ANSWER in model.calls[-1][-1].content


def _windowed(replies: list[str], limit: int, seen: list[int]):
    """A scripted student with a context window of `limit` words: a longer prompt is refused
    as llama.cpp (or a server's 400) refuses it; `seen` gets each accepted prompt's length."""
    from masksearch.errors import ContextOverflow
    from masksearch.models.fake import messages_text

    queue = list(replies)

    def respond(messages):
        words = len(messages_text(messages).split())
        if words > limit:
            raise ContextOverflow(f"prompt of {words} words does not fit n_ctx={limit}")
        seen.append(words)
        return queue.pop(0)

    return ScriptedChatModel(respond=respond)


async def test_single_agent_full_context_answers_from_what_fits():
    """Passages that fill the window end the search with the forced answer (no failed example);
    when even that prompt is too long, the oldest rounds are left out of it."""
    search = "<think>t</think><search>Eiffel</search>"
    answer = "<think>done</think><answer>Paris ; 1889</answer>"
    seen: list[int] = []
    # measure the prompt after one search round; the window holds the question, not that round
    probe = await run(ScriptedChatModel(responses=[search, answer]), agent_mode="single_agent")
    one_round = len(" ".join(m["content"] for m in probe["messages"][:-1]).split())
    model = _windowed([search, answer], one_round - 1, seen)
    rec = await run(model, agent_mode="single_agent", max_turns=4)
    assert rec["status"] == "answered" and rec["final_answer"] == "Paris ; 1889"
    assert rec["meta"]["forced_answer"] is True and rec["usage"]["search_calls"] == 1
    overflow = [s for s in rec["steps"] if "does not fit" in s.get("parse_error", "")]
    assert len(overflow) == 1 and overflow[0]["agent"] == "agent"
    # the forced prompt (one round + the must-answer turn) did not fit either: round 1 left out
    assert rec["steps"][-1]["rounds_dropped"] == 1 and rec["steps"][-1]["agent"] == "answer"
    assert len(seen) == 2 and seen[1] < one_round  # the forced prompt fitted without the round


async def test_single_agent_context_overflow_from_a_server_is_the_same():
    """A provider's 400 "maximum context length" becomes the same forced answer."""
    import httpx
    from openai import BadRequestError

    request = httpx.Request("POST", "http://fake-llm.invalid/v1/chat/completions")
    too_long = BadRequestError(
        "This model's maximum context length is 4096 tokens",
        response=httpx.Response(400, request=request),
        body={"code": "context_length_exceeded"},
    )
    answer = "<think>done</think><answer>Paris ; 1889</answer>"
    model = ScriptedChatModel(responses=[too_long, answer])
    rec = await run(model, agent_mode="single_agent")
    assert rec["status"] == "answered" and rec["meta"]["forced_answer"] is True
    assert "context window" in rec["steps"][0]["parse_error"]


async def test_observer_context_overflow_goes_to_the_forced_answer():
    """A multi-agent observer whose prompt does not fit answers through force_answer."""
    from masksearch.errors import ContextOverflow

    model = scripted_team(
        planner=[PLAN],
        rewriter=[REWRITE],
        observer=[ContextOverflow("prompt of 5000 tokens does not fit n_ctx=4096")],
        answer=["<answer>Paris ; 1889</answer>"],
    )
    rec = await run(model)
    assert rec["status"] == "answered" and rec["meta"]["forced_answer"] is True
    observer = [s for s in rec["steps"] if s["agent"] == "observer"]
    assert len(observer) == 1 and "does not fit" in observer[0]["parse_error"]


async def test_empty_question_fails_cleanly():
    model = scripted_team()
    rec = await run(model, example=MaskedExample(id="e", question="  ", answers=["x"], task="qa"))
    assert rec["status"] == "failed" and "question" in rec["error"]


async def test_runs_concurrently_share_one_model():
    model = scripted_team(planner=[ANSWER] * 4)
    graph = build_graph(resources=res(model), retry_policy=FAST)
    exs = [MaskedExample(id=f"e{i}", question=EX.question, answers=EX.answers) for i in range(4)]
    recs = await asyncio.gather(*(run_example(graph, e, ctx()) for e in exs))
    assert [r["id"] for r in recs] == ["e0", "e1", "e2", "e3"]
    assert all(r["status"] == "answered" for r in recs)


async def test_node_timeout_is_retried():
    calls = []

    def slow_then_fast(messages):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.5)
        return ANSWER

    model = ScriptedChatModel(respond=slow_then_fast)
    graph = build_graph(resources=res(model), retry_policy=FAST, node_timeout_s=0.2)
    rec = await run_example(graph, EX, ctx())
    assert rec["status"] == "answered" and len(calls) == 2


def _multi_agent_team():
    return scripted_team(planner=[PLAN], rewriter=[REWRITE], observer=[ANSWER])


def _student():
    return ScriptedChatModel(responses=["<think>t</think><search>Eiffel</search>", ANSWER])


@pytest.mark.parametrize(
    ("mode", "model", "absent"),
    [("multi_agent", _multi_agent_team, "agent"), ("single_agent", _student, "planner")],
)
async def test_one_mode_graph_runs_like_the_two_mode_graph(mode, model, absent):
    """A batch's one-mode graph (`build_graph(agent_mode=...)`): the other mode's nodes are left
    out, and the record is the one the two-mode graph gives; so with no review node, no
    `messages` chat view and no `prepare` node (`review=False, chat=False`, as `generate`
    compiles it)."""
    records = []
    for agent_mode, batch in ((None, False), (mode, False), (mode, True)):
        graph = build_graph(
            resources=res(model()), agent_mode=agent_mode, review=not batch, chat=not batch
        )
        assert (absent in graph.nodes) is (agent_mode is None)
        assert ("review" in graph.nodes) is ("messages" in graph.channels) is (not batch)
        assert ("prepare" in graph.nodes) is (not batch)  # a batch graph's input is the start
        rec = await run_example(graph, EX, ctx(agent_mode=mode))
        rec["steps"] = [{k: v for k, v in s.items() if k != "latency_s"} for s in rec["steps"]]
        records.append({k: v for k, v in rec.items() if k not in ("created_at", "timings")})
    assert records[0] == records[1] == records[2] and records[0]["status"] == "answered"
    with pytest.raises(ConfigError):
        build_graph(agent_mode="both")


async def test_teacher_prompts_give_qa_the_short_span_rule_and_ramp_the_span_list(_registry):
    """A plain question's teacher prompts carry no RAMP example to copy ("Paris ; 1889")."""
    model = scripted_team(
        planner=["<think>Find where the tower is.</think>\n<search>Eiffel Tower</search>"],
        rewriter=['{"queries": ["Eiffel Tower"]}'],
        observer=["<think>Doc 1 says Paris.</think>\n<answer>Paris</answer>"],
    )
    qa = MaskedExample(
        id="qa1", question="Where is the Eiffel Tower?", answers=["Paris"], task="qa"
    )
    await run(model, qa)
    role_prompts = [str(c[-1].content) for c in model.calls if "of a search team" in c[-1].content]
    assert len(role_prompts) == 2
    for text in role_prompts:
        assert prompts.QA_ANSWER_RULES in text and "Paris ; 1889" not in text
    masked = "The tower stands in [mask].\n\n" + prompts.RAMP_INSTRUCTION
    assert prompts.answer_rules(masked) == prompts.RAMP_ANSWER_RULES


class GrammarModel(ScriptedChatModel):
    """A scripted model that, like the llama.cpp one, decodes under grammars: records the
    `output_format` and stop strings of every call."""

    supports_output_format: ClassVar[bool] = True
    formats: list = Field(default_factory=list)

    def _record(self, kwargs, stop):
        self.formats.append((kwargs.get("output_format"), tuple(stop or ())))

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self._record(kwargs, stop)
        return super()._generate(messages, stop, run_manager, **kwargs)

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        self._record(kwargs, stop)
        yield from super()._stream(messages, stop, run_manager, **kwargs)

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        self._record(kwargs, stop)
        async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
            yield chunk


async def test_student_step_fits_the_task_and_decodes_under_the_action_grammar(_registry):
    """eval's `masksearch` method (the graph's single agent): a QA question gets the QA prompt
    (no RAMP instruction, no example answer), a grammar-capable model gets the teacher's action
    grammar on every turn (a masked passage must search first) and the decoding's stops."""
    search = "<think>t</think>\n<search>Eiffel Tower</search>"
    qa = MaskedExample(id="qa", question="Where is the Eiffel Tower?", answers=["Paris"], task="qa")
    model = GrammarModel(responses=[search, "<think>t</think>\n<answer>Paris</answer>"])
    rec = await run(model, example=qa, agent_mode="single_agent")
    system = model.calls[0][0].content
    assert system == prompts.student_system_prompt(qa.question) == rec["messages"][0]["content"]
    assert "[mask]" not in system and " ; " not in system and "Paris" not in system
    stops = ("</search>", "</answer>")
    assert model.formats == [("action", stops), ("action", stops)]
    # RAMP: first turn must search; the forced answer is think + answer
    forced = "<think>t</think><answer>Paris ; 1889</answer>"
    model = GrammarModel(responses=[search, search, forced])
    rec = await run(model, agent_mode="single_agent", max_turns=1)
    assert rec["meta"]["forced_answer"] is True
    assert [f for f, _ in model.formats] == ["search", "action", "answer"]
    assert model.formats[2][1] == ("</answer>",)
    assert "[mask]" in model.calls[0][0].content  # the RAMP prompt for a masked passage
