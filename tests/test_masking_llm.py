"""RAMP masking with the LLM strategy, driven by a local scripted fake chat model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from masksearch.masking import KDist, MaskConfig, MaskSummary, fill_masks, mask_passages
from masksearch.masking.llm import (
    LLMSpanProposer,
    SpanOutputError,
    locate_spans,
    outer_json_object,
    parse_span_reply,
)
from masksearch.types import Passage

EVEREST = Passage(
    "ev",
    "Mount Everest",
    "Mount Everest is the highest mountain above sea level, in "
    "the Mahalangur Himal sub-range of the Himalayas. Its elevation of 8,849 metres "
    "was most recently established in 2020 by Chinese and Nepali authorities.",
)
KYOTO = Passage(
    "ky",
    "Kyoto",
    "Kyoto is a city on the Japanese island of Honshu. It served as the "
    "capital of Japan for more than a thousand years, from 794 until 1869, when the "
    "imperial court moved to Tokyo.",
)


class PassageRoutedFake(BaseChatModel):
    """Replies chosen by which passage the prompt contains (thread-safe for `batch`)."""

    replies: dict[str, Any]
    prompts: list[str] = []

    @property
    def _llm_type(self) -> str:
        return "passage-routed-fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        self.prompts.append(prompt)
        for key, reply in self.replies.items():
            if key in prompt:
                if isinstance(reply, BaseException):
                    raise reply
                return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])
        raise AssertionError("unexpected prompt")


def spans_json(*items: tuple[str, str]) -> str:
    return json.dumps({"spans": [{"text": t, "label": lab} for t, lab in items]})


def run_llm(replies: dict[str, Any], passages, config=None):
    model = PassageRoutedFake(replies=replies)
    summary = MaskSummary()
    exs = list(
        mask_passages(
            passages, LLMSpanProposer(model, retries=0), config or MaskConfig(), summary=summary
        )
    )
    return exs, summary, model


def test_llm_spans_are_located_and_masked_by_offset():
    reply = (
        "Sure! Here are the spans:\n```json\n"
        + spans_json(
            ("Mahalangur Himal", "LOC"),
            ("8,849 metres", "quantity"),
            ("2020", "DATE"),
            ("Himalayas", "location"),
        )
        + "\n```\nHope this helps {not json}."
    )
    exs, summary, model = run_llm(
        {"Mahalangur": reply}, [EVEREST], MaskConfig(k_dist=KDist({4: 1}))
    )
    (ex,) = exs
    assert ex.strategy == "llm" and ex.k == 4
    assert ex.answers == ["Mahalangur Himal", "Himalayas", "8,849 metres", "2020"]
    assert [s.label for s in ex.spans] == ["LOC", "LOC", "NUMBER", "DATE"]
    assert fill_masks(ex.masked_text, ex.answers) == EVEREST.text
    assert "Mount Everest" in model.prompts[0] and EVEREST.text in model.prompts[0]


def test_llm_spans_not_found_repeated_or_title_are_rejected():
    text = KYOTO.text
    spans, rejected = locate_spans(
        text,
        [
            ("Honshu", "LOC"),
            ("honshu", "LOC"),
            ("Osaka", "LOC"),
            ("Japan", "LOC"),
            ("Toky", "LOC"),
            ("794", "DATE"),
        ],
    )
    # "honshu" is a duplicate proposal, "Osaka" absent, "Toky" not a whole word
    assert [s.text for s in spans] == ["Japan", "Honshu", "794"] or sorted(
        s.text for s in spans
    ) == ["794", "Honshu", "Japan"]
    assert rejected == 3
    for s in spans:
        assert text[s.start : s.end] == s.text
    # the title is filtered later by the shared filters
    city = Passage(
        "c",
        "Kyoto",
        "The old city of Kyoto lies on the island of Honshu and was the "
        "capital until the imperial court moved to Tokyo in 1869.",
    )
    reply = spans_json(("Kyoto", "LOC"), ("Honshu", "LOC"), ("Tokyo", "LOC"))
    for seed in range(10):
        exs, summary, _ = run_llm({"imperial court": reply}, [city], MaskConfig(seed=seed))
        (ex,) = exs
        assert "Kyoto" not in ex.answers and set(ex.answers) <= {"Honshu", "Tokyo"}
        assert summary.rejected_spans["title"] == 1


def test_llm_malformed_output_is_skipped_not_evaluated():
    replies = {
        "Mahalangur": "{'spans': [{'text': 'Himalayas'}]}",  # Python literal: eval would accept
        "imperial court": "I could not find any entities.",
    }
    exs, summary, _ = run_llm(replies, [EVEREST, KYOTO])
    assert exs == [] and summary.skipped["llm_bad_output"] == 2


def test_llm_schema_violations_and_errors():
    bad_schema = json.dumps({"spans": "Himalayas"})
    exs, summary, _ = run_llm(
        {"Mahalangur": bad_schema, "imperial court": TimeoutError("slow")}, [EVEREST, KYOTO]
    )
    assert exs == []
    assert summary.skipped == {"llm_bad_output": 1, "llm_error": 1}
    assert summary.read == 2


def test_llm_no_usable_spans_is_a_skip():
    exs, summary, _ = run_llm(
        {"Mahalangur": spans_json(("Mount Everest", "LOC"), ("Atlantis", "LOC"))}, [EVEREST]
    )
    assert exs == [] and summary.skipped["no_candidates"] == 1


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"spans": [{"text": "a}b", "label": "TERM"}]}', [("a}b", "TERM")]),
        ('prefix {"x": {"y": 1}} {"spans": []}', None),
        (
            '```\n{"spans": ["Paris", {"text": "Rome"}]}\n```',
            [("Paris", "ENTITY"), ("Rome", "ENTITY")],
        ),
        ('{broken {"spans": [{"text": "Oslo", "label": "weird"}]}', [("Oslo", "ENTITY")]),
    ],
)
def test_parse_span_reply(reply, expected):
    if expected is None:  # first complete object lacks "spans"
        with pytest.raises(SpanOutputError):
            parse_span_reply(reply)
    else:
        assert parse_span_reply(reply) == expected


def test_outer_json_object_errors():
    for bad in ("", "no braces", "{unterminated", "[1, 2]"):
        with pytest.raises(SpanOutputError):
            outer_json_object(bad)
    with pytest.raises(SpanOutputError):
        parse_span_reply('{"spans": [{"label": "LOC"}]}')


def test_llm_strategy_from_model_spec(tmp_path):
    """A spec string is resolved with masksearch.models.load_chat_model (fake: provider)."""
    from masksearch.masking.runner import make_strategy

    script = tmp_path / "script.json"
    script.write_text(json.dumps({"routes": {"Mahalangur": [spans_json(("Himalayas", "LOC"))]}}))
    proposer, scorer = make_strategy("llm", model=f"fake:{script}")
    assert scorer is None
    (spans,) = proposer.propose([EVEREST])
    assert [s.text for s in spans] == ["Himalayas"]


def test_llm_transient_failure_is_retried():
    calls = []

    def flaky(messages):
        calls.append(1)
        return ConnectionError("reset") if len(calls) == 1 else spans_json(("Himalayas", "LOC"))

    from masksearch.models.fake import ScriptedChatModel

    proposer = LLMSpanProposer(ScriptedChatModel(respond=flaky), retries=1)
    assert [[s.text for s in spans] for spans in proposer.propose([EVEREST])] == [["Himalayas"]]
    assert len(calls) == 2
