"""The RAMP acceptance rule (span by span, in order, not padded) and `score_answer`."""

from __future__ import annotations

import pytest

from masksearch.scoring import (
    SPAN_F1_THRESHOLD,
    answer_correct,
    mask_recall,
    ramp_correct,
    score_answer,
    span_matches,
)

SPANS = ["Gustave Eiffel", "1889"]
PASSAGE = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris designed by the company of "
    "Gustave Eiffel and completed in 1889 for the World's Fair."
)


@pytest.mark.parametrize(
    "prediction,matches,correct",
    [
        ("Gustave Eiffel ; 1889", [True, True], True),
        ("gustave eiffel;1889.", [True, True], True),  # normalised, any spacing around ';'
        ("Alexandre Gustave Eiffel ; 1889", [True, True], True),  # per-span F1 = 0.8
        ("1889 ; Gustave Eiffel", [False, False], False),  # order matters
        ("Gustave Eiffel", [True, False], False),  # a span missing
        ("Gustave Eiffel ; 1889 ; Paris", [True, True], False),  # an extra part
        ("Eiffel ; in the year 1889", [False, False], False),  # F1 below threshold
        (PASSAGE, [False, False], False),  # the pasted passage recalls everything, fails
        (f"{PASSAGE} ; {PASSAGE}", [False, False], False),
        ("", [False, False], False),
    ],
)
def test_span_rule(prediction, matches, correct):
    assert span_matches(prediction, SPANS) == matches
    assert ramp_correct(prediction, SPANS) is correct


def test_padding_passes_recall_but_not_the_rule():
    assert mask_recall(PASSAGE, SPANS) == 1.0 and not ramp_correct(PASSAGE, SPANS)
    assert SPAN_F1_THRESHOLD == 0.8


def test_score_answer_and_answer_correct_by_task():
    s = score_answer("Gustave Eiffel ; 1889", SPANS, "ramp")
    assert s == {"recall": 1.0, "em": 1.0, "f1": 1.0, "span_recall": 1.0, "correct": 1.0}
    assert score_answer("", SPANS, "ramp")["correct"] == 0.0
    assert score_answer("Dijon", ["dijon", "Dijon, France"], "qa") == {
        "recall": 1.0,
        "em": 1.0,
        "f1": 1.0,
    }
    assert score_answer("x", [" "], "qa") == {}
    assert answer_correct("Gustave Eiffel ; 1889", SPANS, "ramp")
    assert not answer_correct(PASSAGE, SPANS, "ramp")
    assert answer_correct("the city of Dijon", ["Dijon"], "qa", recall_threshold=0.5)
    assert not answer_correct(None, ["Dijon"], "qa")
