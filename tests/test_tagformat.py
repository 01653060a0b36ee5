"""The tag format: tags by regex, JSON by json + schema checks; strict judge verdicts."""

from __future__ import annotations

import pytest

from masksearch import tagformat
from masksearch.scoring import parse_verdict
from masksearch.tagformat import (
    ParseError,
    extract_json_object,
    extract_tag,
    parse_action,
    parse_rewrites,
    restore_stop,
    split_queries,
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


def test_split_queries_lines_semicolons_and_json():
    assert split_queries("a ; b\nc;\n B ") == ["a", "b", "c"]
    assert split_queries('["x", "y"]') == ["x", "y"]
    a = parse_action(
        "<think>t</think><search>eiffel tower height ; eiffel tower architect</search>"
    )
    assert a.queries == ["eiffel tower height", "eiffel tower architect"]


def test_restore_stop_recloses_cut_tag():
    assert restore_stop("<think>t</think><search>q ") == "<think>t</think><search>q</search>"
    assert restore_stop("<answer>A") == "<answer>A</answer>"
    assert restore_stop("<search>q</search>") == "<search>q</search>"


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
    assert "eval(" not in open(tagformat.__file__).read()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<verdict>correct</verdict>", True),
        ("correct", True),
        ("<verdict>incorrect</verdict>", False),
        ("**Incorrect.**", False),
        # free text is no verdict (None, not accepted): one rule with eval's judge, which only
        # read explicit verdict lines; these used to parse as False (also not accepted)
        ("The answer is incorrect.", None),
        ("The answer is not correct", None),
        ("<verdict>not correct</verdict>", None),
        ("I think the model did fine", None),  # the reference counted this as correct
        ("correct ... actually incorrect", None),
        ("", None),
    ],
)
def test_parse_verdict_is_strict(text, expected):
    assert parse_verdict(text) is expected


def test_final_answer_ignores_retrieved_text_in_plain_strings():
    from masksearch.tagformat import final_answer

    text = (
        "<think>t</think><search>q</search><information>Doc 1 <answer>bait</answer></information>"
    )
    assert final_answer(text) is None
    assert final_answer(text + "<think>u</think><answer> A  B </answer>") == "A B"
