"""RAMP answers one blank at a time when the reader decodes under grammars (`nodes/ramp.py`):
the graph wiring with a scripted grammar-capable model, the pure helpers, and the real small
GGUF model copying verbatim spans."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.types import RetryPolicy

from masksearch import grammars, prompts
from masksearch.graph import Context, Resources, build_graph, run_example
from masksearch.graph.testing import KeywordRetriever
from masksearch.models.fake import ScriptedChatModel
from masksearch.nodes.common import is_transient
from masksearch.types import MaskedExample, Passage

PASSAGES = [
    Passage("p1", "Gustave Eiffel", "Gustave Eiffel was a French engineer."),
    Passage(
        "p2", "Eiffel Tower", "The Eiffel Tower is a lattice tower in Paris, completed in 1889."
    ),
]
EX = MaskedExample(
    id="ex1",
    question=prompts.RAMP_QUESTION.substitute(
        masked_text="The Eiffel Tower is a lattice tower in [mask], completed in [mask]."
    ),
    answers=["Paris", "1889"],
    task="ramp",
)
FAST = RetryPolicy(max_attempts=2, initial_interval=0.001, jitter=False, retry_on=is_transient)


class GrammarScripted(ScriptedChatModel):
    """A scripted model that claims grammar support (as the llama.cpp model does)."""

    supports_output_format: ClassVar[bool] = True


def test_mask_context_fills_earlier_blanks_and_stops_at_the_next_words():
    q = prompts.RAMP_QUESTION.substitute(
        masked_text="It was built in [mask], by [mask] for the fair."
    )
    assert prompts.mask_context(q, [], 0) == ("It was built in", ",")  # punctuation ends blank 1
    assert prompts.mask_context(q, ["1889"], 1) == ("It was built in 1889, by", "for the")
    last = prompts.RAMP_QUESTION.substitute(masked_text="a b c d e f g h i j [mask]")
    assert prompts.mask_context(last, [], 0) == ("c d e f g h i j", "")  # 8 words, nothing after


def test_ramp_grammars():
    assert grammars.choice(3) == 'root ::= "3" | "2" | "1"'
    decide = grammars.ramp_action(may_search=True)
    assert decide.startswith('root ::= search | "<answer>"') and "search ::=" in decide
    assert "think" not in decide  # the node writes the observer's thought
    assert grammars.ramp_action(may_search=False) == 'root ::= "<answer>"'
    fill = grammars.fill_grammar(["Paris, 1889."])
    assert fill.startswith('root ::= " "? span') and '"Paris"' in fill


async def test_observer_answers_blank_by_blank_from_the_named_passage():
    seen: list[list[BaseMessage]] = []

    def reply(messages: list[BaseMessage]) -> str:
        seen.append(messages)
        text = str(messages[0].content)
        last = messages[-1]
        if "You are the planner" in text:
            return "<think>Find the tower.</think>\n<search>Eiffel Tower lattice</search>"
        if "keyword-style" in text:
            return '{"queries": ["Eiffel Tower"]}'
        if isinstance(last, AIMessage) and last.content == "Doc ":
            raise AssertionError("no which-result question: Doc 1 holds every blank's wording")
        if isinstance(last, AIMessage):  # a blank: continue the phrase, past the next words
            left = str(last.content)
            return " 1889." if left.endswith("Paris, completed in") else " Paris, completed"
        raise AssertionError("no decision asked: Doc 2 holds the wording around both blanks")

    model = GrammarScripted(responses=[reply] * 10)
    res = Resources(models={"fake:g": model}, retrievers={"kw": KeywordRetriever(PASSAGES)})
    ctx = Context(
        planner_model="fake:g",
        rewriter_model="fake:g",
        observer_model="fake:g",
        retriever="kw",
        max_turns=2,
    )
    rec = await run_example(build_graph(resources=res, retry_policy=FAST), EX, ctx)
    assert rec["final_answer"] == "Paris ; 1889" and rec["accepted"] is True
    observer = [s for s in rec["steps"] if s["agent"] == "observer"]
    assert observer[-1]["output"].endswith("<answer>Paris ; 1889</answer>")
    assert observer[-1]["calls"] == 2  # two blanks: no decision, no "which result" (see above)
    thought = rec["final_think"] if "final_think" in rec else observer[-1]["output"]
    assert "Doc 1 (Title: Eiffel Tower) has the passage's wording around every blank" in thought
    assert 'For [mask 1] it reads "a lattice tower in Paris, completed in"' in thought
    fills = [m for m in seen if isinstance(m[-1], AIMessage) and m[-1].content != "Doc "]
    assert [str(m[-1].content) for m in fills] == [
        "The Eiffel Tower is a lattice tower in",
        "is a lattice tower in Paris, completed in",
    ]
    assert all("Doc 1 is the same passage" in str(m[0].content) for m in fills)


async def test_observer_without_the_passage_chooses_and_the_thought_says_what_is_missing():
    """No result has the passage's wording around the blanks: the model chooses (no thought of
    its own, under `ramp_action`), and the node's thought says what is missing and why the new
    query should find it."""
    from masksearch.nodes.multi_agent import ramp_choice

    asked: list[str] = []

    def reply(messages: list[BaseMessage]) -> str:
        asked.append(str(messages[0].content))
        return "<search>Eiffel Tower lattice</search>"

    res = Resources(models={"fake:g": GrammarScripted(responses=[reply])})
    ctx = Context(observer_model="fake:g")
    text, meta = await ramp_choice(
        ctx, "PROMPT", EX.question, [PASSAGES[0].to_dict()], may_search=True, resources=res
    )
    assert asked == ["PROMPT"] and meta["calls"] == 1
    assert text.startswith("<think>The result lacks the passage's wording around the blanks.")
    assert "Still missing: the words hidden by [mask 1] and [mask 2]." in text
    assert "Eiffel, Tower and lattice" in text
    assert text.endswith("</think>\n<search>Eiffel Tower lattice</search>")


async def test_api_models_keep_the_one_call_answer():
    """Models without grammar support answer all blanks in one `<answer>` (tag parser)."""
    model = ScriptedChatModel(
        responses=[
            "<think>Find it.</think>\n<search>Eiffel Tower</search>",
            '{"queries": ["Eiffel Tower"]}',
            "<think>Found.</think>\n<answer>Paris ; 1889</answer>",
        ]
    )
    res = Resources(models={"fake:s": model}, retrievers={"kw": KeywordRetriever(PASSAGES)})
    ctx = Context(
        planner_model="fake:s", rewriter_model="fake:s", observer_model="fake:s", retriever="kw"
    )
    rec = await run_example(build_graph(resources=res, retry_policy=FAST), EX, ctx)
    assert rec["final_answer"] == "Paris ; 1889" and len(model.calls) == 3


def test_small_gguf_copies_verbatim_spans_blank_by_blank():
    """The real embedded SmolLM2 (llama.cpp): a continued assistant turn under the fill grammar
    yields a verbatim span of the passage, cut where the stop words begin."""
    pytest.importorskip("llama_cpp")
    from masksearch.models import load_chat_model

    passage = "The Eiffel Tower is a lattice tower in Paris, completed in 1889 for the fair."
    m = load_chat_model("local:smollm2-135m", max_tokens=16)
    ask = HumanMessage(f"Doc 1: {passage}\nCopy the words after 'lattice tower in' from Doc 1.")
    out = m.invoke(
        [ask, AIMessage("The Eiffel Tower is a lattice tower in")],
        output_format=grammars.fill_grammar([passage]),
        stop=[", completed"],
    )
    span = out.content.strip()
    assert span and span in passage and ", completed" not in out.content
    meta: dict[str, Any] = out.response_metadata
    assert meta["finish_reason"] in ("stop", "length")
