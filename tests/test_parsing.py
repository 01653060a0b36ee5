"""LLM-output parsing: tags by regex, JSON by json + schema checks, strict judge verdicts."""

from __future__ import annotations

import pytest

from masksearch import parsing
from masksearch.parsing import (
    ParseError,
    extract_json_object,
    extract_tag,
    parse_action,
    parse_rewrites,
    parse_verdict,
    truncate_after_action,
)


def test_extract_tag_first_last_and_missing():
    text = "<think> a </think> x <think>b</think>"
    assert extract_tag(text, "think") == "a"
    assert extract_tag(text, "think", last=True) == "b"
    assert extract_tag("<think>unclosed", "think") is None
    assert extract_tag("", "answer") is None


def test_parse_action_search_lines_dedupe_and_first_action_wins():
    a = parse_action("<think>plan</think>\n<search> q1 \nq2\nQ1\n\n</search><answer>x</answer>")
    assert a.kind == "search" and a.think == "plan" and a.queries == ["q1", "q2"]


def test_parse_action_answer_and_whitespace():
    a = parse_action("<think>t</think> <answer>  Paris ;\n 1889 </answer>")
    assert (a.kind, a.answer) == ("answer", "Paris ; 1889")


@pytest.mark.parametrize(
    "text,reason",
    [
        ("", "empty output"),
        ("<think>only thinking</think>", "no <search> or <answer> tag"),
        ("<search>unclosed", "no <search> or <answer> tag"),
        ("<answer>  </answer>", "empty <answer>"),
        ("<search>\n \n</search>", "empty <search>"),
    ],
)
def test_parse_action_invalid(text, reason):
    a = parse_action(text)
    assert a.kind == "invalid" and a.error == reason


def test_parse_action_nested_tags_take_outer_first_close():
    a = parse_action("<think>x <search>inner</search> y</think><answer>A</answer>")
    # Search-R1 rule: the first complete action tag wins, even inside think.
    assert a.kind == "search" and a.queries == ["inner"]


def test_search_block_accepts_reference_json_list():
    a = parse_action(
        '<search> [{"query": "who built it", "intent": 1}, {"query": "when"}] </search>'
    )
    assert a.queries == ["who built it", "when"]


def test_truncate_after_action():
    assert (
        truncate_after_action("<search>a</search> garbage <answer>b</answer>")
        == "<search>a</search>"
    )
    assert truncate_after_action("no tags") == "no tags"


def test_extract_json_object_from_prose_and_fences():
    text = 'Sure! Here you go:\n```json\n{"queries": ["a", "b"], "n": {"x": 1}}\n```\nthanks {not json}'
    assert extract_json_object(text) == {"queries": ["a", "b"], "n": {"x": 1}}
    assert extract_json_object('{bad} then {"ok": true}') == {"ok": True}
    assert extract_json_object("[1, 2]") is None
    assert extract_json_object("nothing") is None


def test_parse_rewrites_schema_dedupe_and_cap():
    assert parse_rewrites('{"queries": [" a  b ", "A B", "c", "", "d"]}', max_queries=2) == [
        "a b",
        "c",
    ]
    for bad in (
        '{"queries": "a"}',
        '{"queries": [1, "a"]}',
        '{"queries": ["", " "]}',
        "no json",
        '{"other": []}',
    ):
        with pytest.raises(ParseError):
            parse_rewrites(bad, max_queries=3)


def test_rewrites_never_evaluated():
    # Python-literal payloads that eval() would run/accept are rejected, not executed.
    with pytest.raises(ParseError):
        parse_rewrites("{'queries': [__import__('os').getcwd()]}", max_queries=3)
    assert "eval(" not in open(parsing.__file__).read()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<verdict>correct</verdict>", True),
        ("correct", True),
        ("The answer is incorrect.", False),
        ("<verdict>incorrect</verdict>", False),
        ("The answer is not correct", False),
        ("I think the model did fine", None),  # the reference counted this as correct
        ("correct ... actually incorrect", None),
        ("", None),
    ],
)
def test_parse_verdict_is_strict(text, expected):
    assert parse_verdict(text) is expected
