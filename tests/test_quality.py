"""Teacher data quality (`masksearch.quality`, `nodes/thought.py`, `nodes/evidence.py`): complete
thoughts, the question's script, evidence quoted from the cited result, distinct rewrites, QA
trajectories accepted by the scoring rule, and the run summary's quality report."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any, ClassVar

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.types import RetryPolicy

from masksearch import grammars, prompts, quality
from masksearch.eval.items import EvalItem
from masksearch.eval.scoring import score_prediction
from masksearch.graph import Context, Resources, build_graph, run_example
from masksearch.graph.testing import KeywordRetriever
from masksearch.masking.io import load_masked
from masksearch.models.fake import ScriptedChatModel
from masksearch.nodes.common import is_transient
from masksearch.nodes.evidence import (
    answer_thought,
    passage_with_every_blank,
    plan_thought,
    search_thought,
    wording_matches,
)
from masksearch.pipeline.generate import GenerateSettings, generate
from masksearch.pipeline.summary import Summary
from masksearch.scoring import answer_correct
from masksearch.store.trajectories import TrajectoryStore
from masksearch.types import MaskedExample, Passage

FAST = RetryPolicy(max_attempts=2, initial_interval=0.001, jitter=False, retry_on=is_transient)


class GrammarScripted(ScriptedChatModel):
    """A scripted model that claims grammar support (as the llama.cpp model does)."""

    supports_output_format: ClassVar[bool] = True


# -- sentences, scripts, rewrites -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("The tower opened in 1889.", True),
        ("Is it the magnitude 7.7 one?", True),
        ('He said "it is done."', True),
        ("The missing facts are:\n1. The first and the", False),
        ("real numbers, and complex чис,", False),
        ("It was built by Dr.", False),
        ("described as having a magnitude of 7.7 or greater on the Mw", False),
        ("", False),
    ],
)
def test_a_thought_is_complete_only_at_a_sentence_end(text, complete):
    assert quality.ends_sentence(text) is complete
    assert quality.is_cut(text) is (not complete)


def test_a_cut_thought_is_cut_back_to_its_last_complete_sentence():
    text = "The passage is about Tibet. The missing facts are:\n1. The first and the"
    assert quality.last_complete_sentence(text) == "The passage is about Tibet."
    assert quality.last_complete_sentence("no sentence end here") == ""


def test_foreign_script_letters_are_those_absent_from_what_was_read():
    assert quality.foreign_letters("real numbers and complex чис", "real numbers") == "чис"
    assert quality.foreign_letters("Zürich café", "Zürich") == ""  # Latin: the question's script
    assert quality.foreign_letters("Москва is the capital", "Москва (Moscow)") == ""
    assert quality.foreign_letters("東京", "Tokyo") == "東京"


def test_distinct_queries_keep_no_near_duplicate_pair():
    rng = random.Random(0)
    vocab = "central tibetan administration tibet government exile dharamshala india".split()
    for _ in range(200):
        queries = [" ".join(rng.sample(vocab, rng.randint(1, 4))) for _ in range(rng.randint(1, 5))]
        kept = quality.distinct_queries(queries)
        assert kept and kept[0] == queries[0] and set(kept) <= set(queries)
        assert all(
            quality.jaccard(a, b) < quality.NEAR_DUPLICATE_JACCARD
            for i, a in enumerate(kept)
            for b in kept[i + 1 :]
        )
    assert quality.distinct_queries(
        ["0 is the additive identity of the integers", "0 is the additive identity of the reals"]
    ) == ["0 is the additive identity of the integers"]


# -- evidence -----------------------------------------------------------------------------------

_WORDS = 'the tower "Iron Lady" of Paris , 1889 was built by Gustave Eiffel ; in it . (1887) and'


def _random_passage(rng: random.Random) -> str:
    words = _WORDS.split()
    return "  ".join(rng.choice(words) + rng.choice(["", "\n", " "]) for _ in range(40))


def test_a_quoted_evidence_string_always_occurs_in_the_cited_passage():
    rng = random.Random(1)
    for _ in range(500):
        text = _random_passage(rng)
        words = quality.normalize_space(text).split(" ")
        i = rng.randrange(len(words))
        span = " ".join(words[i : i + rng.randint(1, 3)])
        left = " ".join(words[max(0, i - 4) : i])
        quote = quality.quote_around(text, span, left_hint=left)
        if '"' in span:
            assert quote is None or span not in quote
            continue
        assert quote is not None and span in quote
        assert quote in quality.normalize_space(text) and '"' not in quote


QUESTION = prompts.RAMP_QUESTION.substitute(
    masked_text="The Eiffel Tower is a lattice tower in [mask], completed in [mask] for the fair."
)
QA_QUESTION = "In which city is the lattice tower completed for the 1889 fair?"
P_TOWER = {
    "id": "p2",
    "title": "Eiffel Tower",
    "text": "The Eiffel Tower is a lattice tower in  Paris, completed in 1889 for the fair.",
}
P_OTHER = {"id": "p1", "title": "Gustave Eiffel", "text": "Gustave Eiffel was a French engineer."}


def test_the_composed_answer_thought_cites_the_result_and_quotes_each_blank():
    obs = prompts.information_block(prompts.format_docs([P_OTHER, P_TOWER]))
    thought = answer_thought(
        QUESTION, ["Paris", "1889"], P_TOWER, quality.citation(2, "Eiffel Tower")
    )
    assert thought.startswith("Doc 2 (Title: Eiffel Tower) has the passage's wording")
    assert quality.quotes_evidence(thought, [obs], k=2) and quality.ends_sentence(thought)
    # the same quotes attributed to the other result, or too few quotes, do not count
    wrong = thought.replace("Doc 2 (Title: Eiffel Tower)", "Doc 1 (Title: Gustave Eiffel)")
    assert not quality.quotes_evidence(wrong, [obs], k=2)
    assert not quality.quotes_evidence(thought, [obs], k=3)


def test_the_search_again_thought_says_what_is_missing_and_why_the_query_should_find_it():
    thought = search_thought(QUESTION, [P_OTHER], "Eiffel Tower lattice tower")
    assert "The result lacks the passage's wording around the blanks." in thought
    assert "Still missing: the words hidden by [mask 1] and [mask 2]." in thought
    assert "Eiffel, Tower and lattice" in thought and quality.ends_sentence(thought)


def test_a_result_holds_every_blank_only_with_the_words_on_both_sides():
    assert passage_with_every_blank(QUESTION, [P_OTHER, P_TOWER]) == 1
    assert passage_with_every_blank(QUESTION, [P_OTHER]) is None
    half = {"text": "The Eiffel Tower is a lattice tower in Paris, finished in 1889 for the fair."}
    assert passage_with_every_blank(QUESTION, [half]) is None  # "completed in" is not there


# -- the graph with a grammar-capable scripted model ---------------------------------------------

PASSAGES = [
    Passage("p1", "Gustave Eiffel", "Gustave Eiffel was a French engineer."),
    Passage("p2", "Eiffel Tower", P_TOWER["text"]),
]


def _team(planner_replies: list[str]) -> tuple[GrammarScripted, list[list[BaseMessage]]]:
    """Plans with `planner_replies`; the first round finds only the engineer's page (the rewriter
    gives two near-duplicates and a distinct query), the observer searches again, then answers."""
    seen: list[list[BaseMessage]] = []
    rewrites = iter(
        [
            '{"queries": ["French engineer", "french engineer", "Gustave"]}',
            '{"queries": ["Eiffel Tower lattice"]}',
        ]
    )
    decisions = iter(["<search>Eiffel Tower lattice tower</search>", "<answer>"])

    def reply(messages: list[BaseMessage]) -> str:
        seen.append(messages)
        text, last = str(messages[0].content), messages[-1]
        if "You are the planner" in text:
            return planner_replies.pop(0)
        if "keyword-style" in text:
            return next(rewrites)
        if isinstance(last, AIMessage) and last.content == "Doc ":
            return "1" if "Doc 1(Title: Eiffel Tower)" in text else "2"
        if isinstance(last, AIMessage):
            left = str(last.content)
            return " 1889 for the" if left.endswith("completed in") else " Paris, completed"
        return next(decisions)

    return GrammarScripted(responses=[reply] * 20), seen


RAMP_EXAMPLE = MaskedExample(id="ex1", question=QUESTION, answers=["Paris", "1889"], task="ramp")


async def _run(
    model: GrammarScripted,
    example: MaskedExample = RAMP_EXAMPLE,
    passages: list[Passage] = PASSAGES,
    **context: Any,
):
    """`example` through the graph, every role on `model`, retrieving from `passages`."""
    res = Resources(models={"fake:g": model}, retrievers={"kw": KeywordRetriever(passages)})
    roles = {f"{r}_model": "fake:g" for r in ("planner", "rewriter", "observer")}
    ctx = Context(**{**roles, "retriever": "kw", "max_turns": 3, "num_rewrites": 3, **context})
    return await run_example(build_graph(resources=res, retry_policy=FAST), example, ctx)


async def _think(replies: list[str]) -> tuple[str, list[list[BaseMessage]]]:
    """`think_then_act` for the QA planner on a grammar-capable model scripted with `replies`."""
    from masksearch.nodes.thought import think_then_act

    seen: list[list[BaseMessage]] = []

    def reply(messages: list[BaseMessage]) -> str:
        seen.append(messages)
        return replies.pop(0)

    res = Resources(models={"fake:g": GrammarScripted(responses=[reply] * 2)})
    text, _ = await think_then_act(
        Context(planner_model="fake:g"),
        "planner",
        [{"role": "user", "content": prompts.planner_prompt(QA_QUESTION)}],
        grammars.for_role("planner", QA_QUESTION, context=QA_QUESTION),
        resources=res,
        context=QA_QUESTION,
        think_tokens=grammars.THINK_TOKENS,
    )
    return text, seen


async def test_a_thought_cut_by_its_budget_ends_at_its_last_sentence_and_then_acts():
    text, seen = await _think(
        [
            "<think>The passage is about the Eiffel Tower. The plan is to look for the tow",
            "<search>Gustave Eiffel engineer</search>",
        ]
    )
    assert text.startswith("<think>The passage is about the Eiffel Tower.</think>\n<search>")
    assert seen[1][-1].content == "<think>The passage is about the Eiffel Tower.</think>\n"


async def test_a_thought_cut_in_its_first_sentence_finishes_that_sentence():
    text, _ = await _think(
        ["<think>The passage is about the Eiffel Tow", "er.</think>\n<search>Eiffel</search>"]
    )
    assert text.startswith("<think>The passage is about the Eiffel Tower.</think>")


async def test_a_ramp_planner_chooses_the_query_and_its_thought_places_the_blanks():
    model, seen = _team(["<search>Gustave Eiffel engineer</search>"])
    rec = await _run(model)
    first = rec["messages"][2]["content"]
    assert first.startswith(
        '<think>The passage hides 2 spans: [mask 1] after "lattice tower in"; [mask 2] after '
        '"completed in". They cannot be known without the passage itself. So I first search for '
        "Gustave Eiffel engineer: it has the passage's own word Eiffel,"
    )
    assert "You are the planner" in str(seen[0][0].content)
    assert "<think>" not in str(seen[0][0].content)  # the model is asked for the query only
    assert quality.record_quality(rec).cut == 0


async def test_observer_thoughts_are_grounded_and_rewrites_distinct():
    model, _ = _team(["<think>Find the passage.</think>\n<search>Gustave Eiffel</search>"])
    rec = await _run(model)
    assert rec["final_answer"] == "Paris ; 1889" and rec["accepted"] is True
    assistant = [m["content"] for m in rec["messages"] if m["role"] == "assistant"]
    # the student sees the query its thought names; the rewriter's near-duplicate was dropped:
    # two distinct queries searched
    assert assistant[0].endswith(
        "So I first search for Gustave Eiffel: it has the passage's own "
        "word Eiffel, which should retrieve the passage that holds them."
        "</think>\n<search>Gustave Eiffel</search>"
    )
    rewrites = [st["queries"] for st in rec["steps"] if st["agent"] == "rewriter"]
    assert rewrites[0] == ["French engineer", "Gustave"]
    # the observer searched again: what is missing and why the query should find it
    assert "The result lacks the passage's wording around the blanks." in assistant[1]
    assert "Still missing: the words hidden by [mask 1] and [mask 2]." in assistant[1]
    assert "own words Eiffel, Tower and lattice" in assistant[1]
    # ... then answered: the cited result, a verbatim quote per blank
    q = quality.record_quality(rec)
    assert (q.answering, q.evidence, q.cut, q.foreign, q.near_duplicates) == (1, 1, 0, 0, 0)
    assert 'For [mask 1] it reads "a lattice tower in Paris, completed in"' in assistant[-1]
    assert 'for [mask 2] it reads "in Paris, completed in 1889 for the fair"' in assistant[-1]


# -- the real grammar under a wild sampler -------------------------------------------------------


class RandomThinker(ScriptedChatModel):
    """A grammar-capable stand-in that writes random words past any budget: a reply starts a
    thought and is cut (no sentence end, or several sentences then a fragment); a continued
    turn gets what the grammar it is asked for allows (the action, or a sentence's end first)."""

    supports_output_format: ClassVar[bool] = True


def _random_thinker(rng: random.Random) -> RandomThinker:
    words = "the tower passage search blank Paris engineer of 1889 lattice fair".split()

    def phrase(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    def reply(messages: list[BaseMessage]) -> str:
        last = messages[-1]
        if isinstance(last, AIMessage):  # a continuation: the tail grammar ends the sentence
            tail = (
                ""
                if last.content.endswith("</think>\n")
                else phrase(rng.randint(0, 3)) + ".</think>\n"
            )
            return tail + "<search>" + phrase(2) + "</search>"
        sentences = [
            phrase(rng.randint(2, 8)) + rng.choice([".", "!", "?"])
            for _ in range(rng.randint(0, 3))
        ]
        return "<think>" + " ".join([*sentences, phrase(rng.randint(1, 6))])

    return RandomThinker(responses=[reply] * 4)


async def test_a_random_writer_past_its_budget_never_leaves_a_cut_thought():
    from masksearch.nodes.thought import think_then_act
    from masksearch.tagformat import parse_action

    rng = random.Random(5)
    for _ in range(40):
        res = Resources(models={"fake:r": _random_thinker(rng)})
        text, meta = await think_then_act(
            Context(planner_model="fake:r"),
            "planner",
            [{"role": "user", "content": "plan"}],
            grammars.for_role("planner", QA_QUESTION, context=QA_QUESTION),
            resources=res,
            context=QUESTION,
            think_tokens=8,
        )
        action = parse_action(text)
        assert action.kind == "search" and quality.ends_sentence(action.think), text
        assert meta["calls"] == 2


@pytest.fixture(scope="module")
def wild():
    pytest.importorskip("llama_cpp")
    from masksearch.models import load_chat_model

    m = load_chat_model("local:smollm2-135m", temperature=2.0, max_tokens=64, seed=3)
    return m.model_copy(update={"top_k": 0, "top_p": 1.0})


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
async def test_a_high_temperature_sampler_never_yields_a_cut_or_foreign_thought(wild, seed):
    """The real thinking grammar and a tiny thought budget: the sampler at temperature 2 (no
    truncation) runs past the budget, and the stored thought still ends at a sentence end, in
    the question's script. (Slow: a sampler this wild keeps falling back to a grammar check of
    the whole vocabulary.)"""
    from masksearch.nodes.thought import think_then_act
    from masksearch.tagformat import parse_action

    model = wild.model_copy(update={"seed": seed})
    res = Resources(models={"local:wild": model})
    ctx = Context(planner_model="local:wild", llm_timeout_s=3600)
    fmt = grammars.for_role("planner", QA_QUESTION, context=QA_QUESTION)
    text, _ = await think_then_act(
        ctx,
        "planner",
        [{"role": "user", "content": prompts.planner_prompt(QUESTION)}],
        fmt,
        resources=res,
        context=QUESTION,
        think_tokens=6,
        action_tokens=4,
    )
    action = parse_action(text)
    assert action.kind == "search" and action.queries, text
    assert quality.ends_sentence(action.think), text
    assert quality.foreign_letters(action.think, QUESTION) == "", text


def test_the_thinking_grammars_compile_in_llama_cpp():
    pytest.importorskip("llama_cpp")
    from masksearch.models import load_chat_model
    from masksearch.models.llamacpp_capi import GrammarCheck

    model = load_chat_model("local:smollm2-135m").load().model
    context = QUESTION + " Zürich Москва 東京 ქართული"
    for gbnf in (
        grammars.ramp_action(may_search=True),
        grammars.ramp_action(may_search=False),
        grammars.for_role("planner", QUESTION, context=context),
    ):
        GrammarCheck(model, gbnf).close()
    for fmt in (
        grammars.for_role("planner", "Who built it?", context=context),
        grammars.for_role("observer", "Who built it?", may_search=False, context=context),
    ):
        for gbnf in (fmt, grammars.after_thought(fmt), grammars.thought_tail(fmt, context)):
            GrammarCheck(model, gbnf).close()


# -- QA trajectories ----------------------------------------------------------------------------

QA_PASSAGES = [
    Passage("q1", "Eiffel Tower", "The Eiffel Tower was designed by the engineer Gustave Eiffel."),
    Passage("q2", "Louvre", "The Louvre is the world's most-visited museum, in Paris."),
]


def _qa_team() -> ScriptedChatModel:
    """Answers the tower question right (copying the passage) and the museum one wrong."""

    def reply(messages: list[BaseMessage]) -> str:
        text = str(messages[0].content)
        tower = "tower" in text.lower()
        if "You are the planner" in text:
            q = "Eiffel Tower designer" if tower else "Louvre museum city"
            return f"<think>I need to look this up.</think>\n<search>{q}</search>"
        if "keyword-style" in text:
            return '{"queries": ["Eiffel Tower"]}' if tower else '{"queries": ["Louvre"]}'
        answer = "Gustave Eiffel" if tower else "London"
        return f"<think>Doc 1 answers it.</think>\n<answer>{answer}</answer>"

    return ScriptedChatModel(responses=[reply] * 20)


async def test_qa_trajectories_are_accepted_by_the_same_rule_as_eval(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [
        {"id": "t", "question": "Who designed the Eiffel Tower?", "answers": ["Gustave Eiffel"]},
        {"id": "m", "question": "In which city is the Louvre?", "answers": ["Paris"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = list(load_masked(path))
    assert [e.task for e in examples] == ["qa", "qa"]  # no `task`, no [mask]: QA
    res = Resources(
        models={"fake:qa": _qa_team()}, retrievers={"kw": KeywordRetriever(QA_PASSAGES)}
    )
    ctx = Context(
        planner_model="fake:qa",
        rewriter_model="fake:qa",
        observer_model="fake:qa",
        retriever="kw",
        max_turns=2,
    )
    store = tmp_path / "t.sqlite"
    settings = GenerateSettings(concurrency=1, progress=False, graph_options={"retry_policy": FAST})
    summary = await generate(examples, ctx, store, settings, resources=res)
    with TrajectoryStore(store) as st:
        records = {r["id"]: r for r in st.records()}
        assert st.export_jsonl(tmp_path / "out.jsonl") == 1
    assert records["t"]["accepted"] and not records["m"]["accepted"]
    for rec in records.values():
        item = EvalItem(rec["id"], rec["question"], rec["answers"], dataset="mine")
        recall = score_prediction(rec["final_answer"], item)["recall"]
        rule = answer_correct(rec["final_answer"], rec["answers"], "qa", recall_threshold=0.5)
        assert rec["accepted"] is rule is (recall >= ctx.recall_threshold)
    exported = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in exported] == ["t"] and exported[0]["task"] == "qa"
    # the answering thought quotes the passage holding the answer
    assert 'Doc 1 (Title: Eiffel Tower) reads "' in records["t"]["messages"][-1]["content"]
    q = summary.quality.to_dict()["by_group"]["qa"]
    assert (q["records"], q["accepted"], q["answering"], q["evidence"]) == (2, 1, 2, 1)


def test_the_summary_reports_quality_by_task_and_k():
    s = Summary()
    rec = {
        "id": "a",
        "task": "ramp",
        "status": "answered",
        "accepted": True,
        "question": QUESTION,
        "answers": ["Paris", "1889"],
        "meta": {"k": 2},
        "messages": [
            {"role": "system", "content": "x"},
            {"role": "user", "content": QUESTION},
            {
                "role": "assistant",
                "content": "<think>Find the tow</think>\n<search>a b\nA b</search>",
            },
            {"role": "tool", "content": prompts.information_block(prompts.format_docs([P_TOWER]))},
            {"role": "assistant", "content": "<think>Doc 1 чис.</think>\n<answer>x ; y</answer>"},
        ],
    }
    s.add(rec)  # type: ignore[arg-type]
    q = s.to_dict()["quality"]["by_group"]
    assert set(q) == {"all", "ramp k=2"}
    g = q["ramp k=2"]
    assert (g["thoughts"], g["cut"], g["foreign"], g["answering"], g["evidence"]) == (2, 1, 1, 1, 0)
    assert (g["near_duplicates"], g["rewrite_pairs"], g["accepted"]) == (1, 1, 1)
    assert "ramp k=2: thoughts 2, cut mid-sentence 1, foreign script 1" in s.format()


def _accepts(model: Any, gbnf: str, text: str) -> bool:
    """Whether the grammar accepts `text` whole (token by token, then end of generation)."""
    import numpy as np

    from masksearch.models.llamacpp_capi import GrammarCheck

    check = GrammarCheck(model, gbnf)
    try:
        for t in model.tokenize(text, special=False):
            if not np.isfinite(check.allowed(np.array([t]), np.zeros(1, np.float32)))[0]:
                return False
            check.accept(t)
        return bool(np.isfinite(check.allowed(np.array([model.eos]), np.zeros(1, np.float32)))[0])
    finally:
        check.close()


def test_thoughts_are_bounded_by_sentences_and_queries_by_whole_words():
    """A thought written under a grammar: at most `THINK_SENTENCES` sentences on one line, each
    ending at `!`, `?` or a `.` not followed by a digit or small letter (7.7 and e.g. continue
    it); a keyword query (a RAMP planner's or observer's, a rewrite): whole words, no `[` (a
    masked passage's `[mask]`)."""
    pytest.importorskip("llama_cpp")
    from masksearch.models import load_chat_model

    model = load_chat_model("local:smollm2-135m").load().model
    qa = grammars.for_role("planner", QA_QUESTION, context=QA_QUESTION)
    assert grammars.THINK_SENTENCES == 3
    ok = "<think>It was finished near 7.7 on the scale, e.g. late. Search the tower!</think>\n"
    assert _accepts(model, qa, ok + "<search>Eiffel Tower completion</search>")
    assert not _accepts(model, qa, "<think>One. Two. Three. Four.</think>\n<search>x</search>")
    assert not _accepts(model, qa, "<think>One?Two.</think>\n<search>x</search>")
    assert not _accepts(model, qa, "<think>No end</think>\n<search>x</search>")
    assert not _accepts(model, qa, "<think>Line one.\nLine two.</think>\n<search>x</search>")
    ramp = grammars.for_role("planner", QUESTION, context=QUESTION)
    assert _accepts(model, ramp, "<search>Eiffel Tower completion</search>")
    assert not _accepts(model, ramp, "<search>Eiffel [mask</search>")
    eleven = " ".join(["word"] * (grammars.MAX_KEYWORD_WORDS + 1))
    assert not _accepts(model, ramp, f"<search>{eleven}</search>")
    ten = " ".join(["word"] * (grammars.MAX_KEYWORD_WORDS - 1) + ["thefirst"])
    assert _accepts(model, ramp, f"<search>{ten}</search>")  # a glued last word ...
    assert grammars.whole_words(ten) == " ".join(["word"] * 9)  # ... is dropped
    assert grammars.whole_words("Eiffel Tower") == "Eiffel Tower"
    observer = grammars.ramp_action(may_search=True)
    assert _accepts(model, observer, "<answer>") and not _accepts(model, observer, "<think>")
    rewrites = grammars.grammar_for(grammars.rewrites(2))
    assert _accepts(model, rewrites, '{"queries": ["Eiffel Tower", "Paris 1889"]}')
    assert not _accepts(model, rewrites, '{"queries": ["Eiffel [mask]"]}')


def test_a_repeated_query_becomes_the_passages_own_words():
    from masksearch.nodes.evidence import fresh_query
    from masksearch.nodes.multi_agent import ramp_choice

    longest = "The Eiffel Tower is a lattice tower in"
    assert fresh_query(QUESTION, []) == longest
    assert fresh_query(QUESTION, [longest.upper()]) == "for the fair"
    res = Resources(
        models={"fake:g": GrammarScripted(responses=["<search>Gustave Eiffel</search>"])}
    )
    text, _ = asyncio.run(
        ramp_choice(
            Context(observer_model="fake:g"),
            "PROMPT",
            QUESTION,
            [PASSAGES[0].to_dict()],
            may_search=True,
            resources=res,
            searched=["gustave  eiffel"],
        )
    )
    assert text.endswith(f"<search>{longest}</search>")
    assert f"So I search for {longest}: it has the passage's own words Eiffel, Tower and" in text


def test_a_blank_is_copied_from_where_the_passage_continues_its_left_words():
    text = P_TOWER["text"]
    fmt = grammars.fill_grammar([text], after="a lattice tower in")
    start = fmt.splitlines()[1].removeprefix("span ::= ")
    assert " | " not in start and f'{start} ::= "Paris"' in fmt  # right after "tower in"
    anywhere = grammars.fill_grammar([text], after="words the passage does not hold")
    assert anywhere == grammars.fill_grammar([text])  # not found: any span of the passage


def test_a_blank_between_two_blanks_goes_with_its_neighbours():
    q = prompts.RAMP_QUESTION.substitute(
        masked_text="It is led from the Central Tibetan Administration in [mask], [mask]."
    )
    text = "It is led from the Central Tibetan Administration in Dharamshala, India."
    assert wording_matches(q, text, both=True) == [True, True]
    assert passage_with_every_blank(q, [{"text": text}]) == 0
    assert wording_matches(q, "Nothing alike.") == [False, False]
    thought = plan_thought(q, "Tibetan exile")
    assert '[mask 1] after "Tibetan Administration in"; [mask 2] right after [mask 1].' in thought
    assert "the passage's own word Tibetan," in thought


def test_a_qa_answer_is_a_short_span_copied_from_the_results():
    """A plain question's answer on a grammar model is copied from a result: at most
    `MAX_QA_SPAN_TOKENS` words and punctuation marks, so a small teacher can neither write its
    thought again as the answer nor copy a whole sentence."""
    pytest.importorskip("llama_cpp")
    from masksearch.models import load_chat_model

    model = load_chat_model("local:smollm2-135m").load().model
    passage = (
        "Older than The Game by 23 years, the Harvard-Yale Regatta was the original source of "
        "the athletic rivalry between the two schools."
    )
    span = grammars.qa_span([passage])
    assert grammars.MAX_QA_SPAN_TOKENS == 10
    assert _accepts(model, span, "23 years")
    assert _accepts(model, span, "the Harvard-Yale Regatta")  # 5: the, Harvard, -, Yale, Regatta
    assert not _accepts(model, span, "Doc 1 establishes that")
    assert not _accepts(model, span, "twenty-three years")
    ten = "Older than The Game by 23 years, the Harvard"  # 10 words and marks
    assert _accepts(model, span, ten) and not _accepts(model, span, ten + "-Yale")
    closed = grammars.qa_span([passage], close=True)  # a turn continued after <answer>
    assert _accepts(model, closed, "23 years</answer>")
    assert not _accepts(model, closed, "23 years")


def test_a_result_supports_an_answer_when_its_sentence_holds_the_questions_words():
    from masksearch.nodes.evidence import supports

    regatta = {
        "text": "Older than The Game by 23 years, the Harvard-Yale Regatta was the original "
        "source of the athletic rivalry between the two schools. It is held annually in June."
    }
    question = 'Harvard - Yale Regatta predates "The Game" by how many years?'
    assert supports(question, "23 years", regatta)
    assert not supports(question, "June", regatta)  # its sentence shares none of the words
    assert not supports(question, "1875", regatta)  # not in the passage
    assert not supports(question, "", regatta)
    louvre = {"text": "The Louvre is the world's most-visited museum, in Paris."}
    assert supports("In which city is the Louvre?", "Paris", louvre)
    assert not supports("In which city is the Eiffel Tower?", "Paris", louvre)


async def test_a_qa_teacher_chooses_and_its_thoughts_are_composed():
    """QA on a grammar model, as RAMP: the planner decodes a keyword query only; the observer
    copies an answer from the results and answers when a result's sentence supports it; the
    thoughts are composed, the answer's quoting its result."""

    def reply(messages: list[BaseMessage]) -> str:
        text = str(messages[0].content)
        if "You are the planner" in text:
            return "<search>Louvre museum</search>"
        if "keyword-style" in text:
            return '{"queries": ["Louvre museum"]}'
        if isinstance(messages[-1], AIMessage) and messages[-1].content == "<answer>":
            # the observer's prompt continued after <answer>: a span of the latest results
            return "Paris</answer>" if "Doc 1(Title: Louvre)" in text else "Gustave Eiffel</answer>"
        return "<search>Louvre museum</search>"

    question = "In which city is the Louvre?"
    ex = MaskedExample(id="m", question=question, answers=["Paris"], task="qa")
    model = GrammarScripted(responses=[reply] * 20)
    rec = await _run(model, ex, QA_PASSAGES, top_k=1)
    turns = [m["content"] for m in rec["messages"] if m["role"] == "assistant"]
    assert turns[0] == (
        "<think>I need a source that states the answer, so I search for Louvre museum.</think>\n"
        "<search>Louvre museum</search>"
    )
    assert turns[-1].startswith("<think>Doc 1 (Title: Louvre)")
    assert turns[-1].endswith("So the answer is Paris.</think>\n<answer>Paris</answer>")
    assert rec["final_answer"] == "Paris" and rec["accepted"]


async def test_a_qa_observer_with_nothing_new_to_search_answers():
    """A QA observer whose next query and the question itself were both searched already
    answers from what it has (measured: one query searched three times)."""
    from masksearch.nodes.evidence import was_searched
    from masksearch.nodes.multi_agent import qa_choice

    assert was_searched("Louvre  MUSEUM", ["louvre museum"]) and not was_searched("Paris", [])
    replies = ["Louvre</answer>", "<search>Louvre museum</search>"]  # unsupported span, repeat
    res = Resources(models={"fake:g": GrammarScripted(responses=replies)})
    question = "In which city is the Louvre?"
    louvre = {"id": "q2", "title": "Louvre", "text": QA_PASSAGES[1].text}
    rounds = [
        {"subquery": "Louvre museum", "queries": ["Louvre museum"], "passages": [louvre]},
        {"subquery": "In which city is the Louvre", "queries": [], "passages": [louvre]},
    ]
    text, _ = await qa_choice(
        Context(observer_model="fake:g"),
        "PROMPT",
        question,
        rounds,  # type: ignore[arg-type]
        may_search=True,
        resources=res,
    )
    assert text.endswith("<answer>Louvre</answer>")
