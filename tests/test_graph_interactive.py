"""Interactive use of the graph in process: edits at a breakpoint and forks continue (routing
reads the state), a reused thread starts each question clean, `review_queries` pauses before
search and searches the edited queries, the `messages` channel carries the trajectory, tokens
stream, and bad input fails up front with a clear error."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from masksearch.context import Context
from masksearch.errors import ConfigError, InputError
from masksearch.graph import build_graph
from masksearch.graph.testing import KeywordRetriever, scripted_team
from masksearch.models.fake import ScriptedChatModel
from masksearch.resources import Resources
from masksearch.types import Passage

PASSAGES = [
    Passage("p1", "Eiffel Tower", "The Eiffel Tower is a lattice tower in Paris, built 1889."),
    Passage("p2", "Gustave Eiffel", "Gustave Eiffel was a French engineer who built the tower."),
    Passage("p3", "Colosseum", "The Colosseum is an amphitheatre in Rome, Italy."),
]
PLAN = "<think>Look it up.</think>\n<search>Where is the Eiffel Tower?</search>"
REWRITE = '{"queries": ["Eiffel Tower"]}'
PARIS = "<think>Doc 1 says Paris.</think>\n<answer>Paris</answer>"
ROME = "<think>Doc 1 says Rome.</think>\n<answer>Rome</answer>"
AGAIN = "<think>Not yet.</think>\n<search>Eiffel Tower city</search>"
CTX = Context(
    planner_model="fake:team",
    rewriter_model="fake:team",
    observer_model="fake:team",
    retriever="mem:tiny",
    top_k=2,
)


def make(model, checkpointer=None, **graph_kw):
    retriever = KeywordRetriever(PASSAGES)
    res = Resources(models={"fake:team": model}, retrievers={"mem:tiny": retriever})
    return build_graph(checkpointer or InMemorySaver(), resources=res, **graph_kw), retriever


def cfg(thread: str = "t1") -> dict:
    return {"configurable": {"thread_id": thread}}


async def test_edit_at_breakpoint_continues_with_the_edit():
    model = scripted_team(planner=[PLAN], rewriter=[REWRITE], observer=[ROME])
    graph, retriever = make(model)
    await graph.ainvoke(
        {"question": "Where is the Eiffel Tower?"}, cfg(), context=CTX, interrupt_before=["search"]
    )
    snap = await graph.aget_state(cfg())
    assert snap.next == ("search",)
    pending = dict(snap.values["pending"], queries=["Colosseum Rome"])
    await graph.aupdate_state(cfg(), {"pending": pending})
    assert (await graph.aget_state(cfg())).next == ("search",)
    final = await graph.ainvoke(None, cfg(), context=CTX)
    assert retriever.calls == [["Colosseum Rome"]]  # the edited queries were searched
    assert final["final_answer"] == "Rome" and final["status"] == "answered"


async def test_fork_an_earlier_checkpoint_and_replay():
    model = scripted_team(planner=[PLAN], rewriter=[REWRITE], observer=[PARIS])
    graph, _ = make(model)
    await graph.ainvoke(
        {"question": "Where is the Eiffel Tower?", "answers": ["Paris"]}, cfg(), context=CTX
    )
    history = [s async for s in graph.aget_state_history(cfg())]
    before_judge = next(s for s in history if s.next == ("judge",))
    # fork: the observer's answer changed by hand; the judge must run on the fork
    forked = await graph.aupdate_state(before_judge.config, {"final_answer": "Lyon"})
    assert (await graph.aget_state(forked)).next == ("judge",)
    result = await graph.ainvoke(None, forked, context=CTX)
    assert result["final_answer"] == "Lyon" and result["accepted"] is False
    assert result["scores"]["recall"] == 0.0
    # the original branch is untouched
    assert (await graph.aget_state(cfg())).values["final_answer"] == "Lyon"  # latest = fork
    assert history[0].values["final_answer"] == "Paris"


async def test_fork_before_observer_reruns_it():
    model = scripted_team(
        planner=[PLAN], rewriter=[REWRITE, REWRITE, REWRITE], observer=[AGAIN, PARIS, ROME]
    )
    graph, _ = make(model)
    ctx = Context(**{**CTX.to_dict(), "max_turns": 3})
    await graph.ainvoke({"question": "Where is the Eiffel Tower?"}, cfg(), context=ctx)
    history = [s async for s in graph.aget_state_history(cfg())]
    first_observer = [s for s in history if s.next == ("observer",)][-1]  # oldest
    forked = await graph.aupdate_state(first_observer.config, {"turn": 1})
    result = await graph.ainvoke(None, forked, context=ctx)
    assert result["status"] == "answered" and result["final_answer"] == "Rome"


async def test_second_question_on_a_thread_starts_clean():
    observer_prompts: list[str] = []

    def observe(messages):
        observer_prompts.append(str(messages[-1].content))
        return PARIS

    model = scripted_team(
        planner=[PLAN, PLAN], rewriter=[REWRITE, REWRITE], observer=[observe, observe]
    )
    graph, _ = make(model)
    first = await graph.ainvoke(
        {"question": "Where is the Eiffel Tower?", "answers": ["Paris"], "task": "qa"},
        cfg(),
        context=CTX,
    )
    assert first["accepted"] is True and first["turn"] == 1
    second = await graph.ainvoke({"question": "Which city is it in?"}, cfg(), context=CTX)
    assert second["question"] == "Which city is it in?"
    assert second["turn"] == 1 and len(second["rounds"]) == 1 and len(second["summaries"]) == 1
    assert [s["agent"] for s in second["steps"]] == ["planner", "rewriter", "search", "observer"]
    assert second.get("answers") is None and second["scores"] == {}  # no stale gold answers
    assert second["accepted"] is False
    assert "Doc 1 says Paris" not in observer_prompts[1]  # no summary of question 1
    humans = [m.content for m in second["messages"] if isinstance(m, HumanMessage)]
    assert humans == ["Where is the Eiffel Tower?", "Which city is it in?"]  # the conversation


async def test_chat_message_input_becomes_the_question():
    model = scripted_team(planner=[PLAN], rewriter=[REWRITE], observer=[PARIS])
    graph, _ = make(model)
    out = await graph.ainvoke(
        {"messages": [HumanMessage("Where is the Eiffel Tower?")]}, cfg(), context=CTX
    )
    assert out["question"] == "Where is the Eiffel Tower?" and out["final_answer"] == "Paris"
    assert sum(isinstance(m, HumanMessage) for m in out["messages"]) == 1


async def test_review_queries_interrupts_and_searches_the_edit():
    model = scripted_team(planner=[PLAN], rewriter=[REWRITE], observer=[ROME])
    graph, retriever = make(model)
    ctx = Context(**{**CTX.to_dict(), "review_queries": True})
    out = await graph.ainvoke({"question": "Where is the Eiffel Tower?"}, cfg(), context=ctx)
    (intr,) = out["__interrupt__"]
    assert intr.value["queries"] == ["Eiffel Tower"] and retriever.calls == []
    final = await graph.ainvoke(Command(resume=["Colosseum", "Rome"]), cfg(), context=ctx)
    assert retriever.calls == [["Colosseum", "Rome"]]
    assert final["rounds"][0]["queries"] == ["Colosseum", "Rome"]
    assert final["final_answer"] == "Rome"


async def test_messages_channel_and_token_stream():
    model = scripted_team(planner=[PLAN], rewriter=[REWRITE], observer=[PARIS])
    graph, _ = make(model)
    chunks, names = [], []
    async for msg, meta in graph.astream(
        {"question": "Where is the Eiffel Tower?"}, cfg(), context=CTX, stream_mode="messages"
    ):
        chunks.append(msg)
        names.append(meta["langgraph_node"])
    tokens = [m for m in chunks if isinstance(m, AIMessageChunk)]
    assert len(tokens) > 5 and "planner" in names  # word-by-word tokens from the fake model
    assert any(isinstance(m, ToolMessage) for m in chunks)
    state = (await graph.aget_state(cfg())).values
    kinds = [(type(m).__name__, m.name) for m in state["messages"]]
    assert kinds == [
        ("HumanMessage", None),
        ("AIMessage", "planner"),
        ("AIMessage", "rewriter"),
        ("ToolMessage", "search"),
        ("AIMessage", "observer"),
    ]
    rewriter_turn, tool_turn = state["messages"][2], state["messages"][3]
    assert isinstance(rewriter_turn, AIMessage) and rewriter_turn.tool_calls[0]["args"] == {
        "queries": ["Eiffel Tower"]
    }
    assert tool_turn.tool_call_id == rewriter_turn.tool_calls[0]["id"]
    assert tool_turn.content.startswith("<information>") and "Eiffel Tower" in tool_turn.content
    # the streamed reply and the stored message share one id (the chat view shows it once)
    assert state["messages"][1].id in {m.id for m in tokens}


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"question": 42}, "question"),
        ({"question": "  "}, "question"),
        ({"question": "q", "answers": "Paris"}, "answers"),
        ({"question": "q", "task": "bogus"}, "task"),
    ],
)
async def test_bad_input_fails_before_any_model_call(payload, field):
    model = ScriptedChatModel(responses=[])
    graph, _ = make(model)
    with pytest.raises(InputError, match=field):
        await graph.ainvoke(payload, cfg(), context=CTX)
    assert model.calls == []


async def test_bad_retriever_fails_before_any_model_call():
    model = ScriptedChatModel(responses=[])
    graph, _ = make(model)
    with pytest.raises(ConfigError):
        await graph.ainvoke(
            {"question": "q"}, cfg(), context=Context(**{**CTX.to_dict(), "retriever": "nope:x"})
        )
    assert model.calls == []


def test_unknown_context_key_is_named():
    with pytest.raises(ConfigError, match="did you mean 'planner_model'"):
        Context.from_dict({"planner-model": "fake:x"})


@pytest.mark.parametrize("keep", [[], "", True, {"queries": []}])
async def test_review_resume_values_that_keep_the_proposed_queries(keep):
    """The documented ways to approve the proposed queries as they are (`None` is not one:
    LangGraph reads `Command(resume=None)` as no resume value)."""
    model = scripted_team(planner=[PLAN], rewriter=[REWRITE], observer=[PARIS])
    graph, retriever = make(model)
    ctx = Context(**{**CTX.to_dict(), "review_queries": True})
    await graph.ainvoke({"question": "Where is the Eiffel Tower?"}, cfg(), context=ctx)
    final = await graph.ainvoke(Command(resume=keep), cfg(), context=ctx)
    assert retriever.calls == [["Eiffel Tower"]]
    assert final["final_answer"] == "Paris" and "__interrupt__" not in final
