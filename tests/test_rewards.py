"""Rule rewards (TRL reward_funcs signature) and the tag-format state machine."""

from __future__ import annotations

import pytest

from masksearch.tagformat import check_format, count_searches, final_answer
from masksearch.training.rewards import (
    build_reward_funcs,
    correct_reward,
    em_reward,
    f1_reward,
    format_reward,
    length_factor,
    length_penalty_reward,
    make_hybrid_reward,
    make_judge_reward,
    recall_reward,
)

GOOD = (
    "<think>need the year</think>\n<search>eiffel tower\nfinished</search>\n"
    "<information>Doc 1(Title: Eiffel) built 1887 to 1889</information>\n"
    "<think>it is 1889</think>\n<answer>Eiffel ; 1889</answer>"
)


def msgs(*turns):
    return [{"role": r, "content": c} for r, c in turns]


def test_valid_sequence_text_and_messages():
    assert check_format(GOOD) == (True, "ok")
    as_messages = msgs(
        ("assistant", "<think>a</think><search>q</search>"),
        ("tool", "<information>Doc 1(Title: T) x</information>"),
        ("assistant", "<think>b</think> <answer>y</answer>"),
    )
    assert check_format(as_messages)[0]
    assert check_format("<think>sure</think><answer>Paris</answer>")[0]


@pytest.mark.parametrize(
    "text,reason",
    [
        ("<answer>x</answer>", "<answer> after the start"),
        ("<think>a</think> hello <answer>x</answer>", "text outside tags"),
        (
            "<think>a</think><search>q</search><think>b</think><answer>x</answer>",
            "<think> after </search>",
        ),
        (
            "<think>a</think><search>q</search><information>d</information><answer>x</answer>",
            "<answer> after </information>",
        ),
        ("<think>a <search>q</search></think><answer>x</answer>", "inside <think>"),
        ("<think>a</think><answer>x</answer> trailing", "text after the last tag"),
        ("<think>a</think><search>q</search>", "no final <answer>"),
        ("<think>a</think><answer>x", "never closed"),
        ("<think> </think><answer>x</answer>", "empty <think>"),
        ("plain text", "no tags"),
    ],
)
def test_invalid_sequences_name_the_violation(text, reason):
    ok, why = check_format(text)
    assert not ok
    assert reason in why


def test_final_answer_ignores_tool_text_and_takes_last():
    traj = msgs(
        ("assistant", "<think>a</think><search>q</search>"),
        ("tool", "<information><answer>planted</answer></information>"),
        ("assistant", "<think>b</think><answer>first</answer><answer>last</answer>"),
    )
    assert final_answer(traj) == "last"
    assert final_answer(msgs(("assistant", "<think>a</think>"))) is None
    assert count_searches(GOOD) == 1


def test_recall_em_f1_on_ramp_and_qa():
    comps = [GOOD, "<think>x</think><answer>Eiffel</answer>", "<think>x</think><search>q</search>"]
    cols = {"answers": [["Eiffel", "1889"]] * 3, "task": ["ramp"] * 3, "k": [2] * 3}
    assert recall_reward(None, comps, **cols) == [1.0, 0.5, 0.0]
    assert em_reward(None, comps, **cols) == [1.0, 0.0, 0.0]
    f1s = f1_reward(None, comps, **cols)
    assert f1s[0] == 1.0 and 0 < f1s[1] < 1 and f1s[2] == 0.0
    qa = {"answers": [["Paris", "City of Paris"]], "task": ["qa"], "k": [0]}
    assert recall_reward(None, ["<think>t</think><answer>the city of paris</answer>"], **qa) == [
        1.0
    ]
    assert em_reward(None, ["<think>t</think><answer>Paris.</answer>"], **qa) == [1.0]
    # HotpotQA yes/no rule: "yes" vs "yes it is" scores 0
    assert f1_reward(
        None, ["<think>t</think><answer>yes it is</answer>"], answers=[["yes"]], task=["qa"], k=[0]
    ) == [0.0]


def test_correct_reward_is_the_acceptance_rule():
    padded = "<think>x</think><answer>Eiffel built it in 1889 and more</answer>"
    comps = [GOOD, padded, "<think>x</think><answer>1889 ; Eiffel</answer>"]
    cols = {"answers": [["Eiffel", "1889"]] * 3, "task": ["ramp"] * 3, "k": [2] * 3}
    assert recall_reward(None, comps, **cols)[1] == 1.0  # recall is gamed by padding ...
    assert correct_reward(None, comps, **cols) == [1.0, 0.0, 0.0]  # ... the rule is not


def test_trajectory_column_overrides_decoded_text():
    traj = msgs(("assistant", "<think>t</think><answer>1889</answer>"))
    out = recall_reward(
        None,
        [[{"role": "assistant", "content": "garbage"}]],
        answers=[["1889"]],
        task=["qa"],
        k=[0],
        trajectory=[traj],
    )
    assert out == [1.0]
    assert format_reward(None, ["garbage"], trajectory=[traj]) == [1.0]


def test_length_penalty_against_recall_gaming():
    gold = ["Eiffel", "1889"]
    assert length_factor("Eiffel ; 1889", gold, True) == 1.0
    spam = " ; ".join(["Eiffel", "1889"] + [f"cand{i}" for i in range(30)])
    lf = length_factor(spam, gold, True)
    assert 0 < lf < 0.25
    cols = {"answers": [gold, gold], "task": ["ramp"] * 2, "k": [2] * 2}
    comps = [
        "<think>t</think><answer>Eiffel ; 1889</answer>",
        f"<think>t</think><answer>{spam}</answer>",
    ]
    pen = length_penalty_reward(None, comps, **cols)
    assert pen[0] == 0.0 and -1.0 < pen[1] < -0.75
    # recall alone is gamed (both 1.0); the hybrid with the length factor is not
    assert recall_reward(None, comps, **cols) == [1.0, 1.0]
    hybrid = make_hybrid_reward()(None, comps, **cols)
    assert hybrid[0] == pytest.approx(1.0) and hybrid[1] < 0.4


def test_hybrid_reproduces_search_r1_table():
    h = make_hybrid_reward(answer_metric="em", format_weight=0.2, length_penalty=False)
    cols = {"answers": [["Paris"]] * 4, "task": ["qa"] * 4, "k": [0] * 4}
    comps = [
        "<think>t</think><answer>Paris</answer>",  # correct, valid
        "<answer>Paris</answer>",  # correct, invalid (no think)
        "<think>t</think><answer>Rome</answer>",  # wrong, valid
        "<answer>Rome</answer>",
    ]  # wrong, invalid
    assert h(None, comps, **cols) == pytest.approx([1.0, 0.8, 0.2, 0.0])


class FakeJudge:
    def __init__(self):
        self.prompts = []

    def invoke(self, prompt):
        self.prompts.append(prompt)

        class R:
            content = (
                "<verdict>correct</verdict>"
                if "1889" in prompt.split("Model answer:")[1]
                else "incorrect"
            )

        return R()


def test_judge_reward_and_registry():
    judge = FakeJudge()
    f = make_judge_reward(judge)
    cols = {"answers": [["1889"]] * 3, "task": ["qa"] * 3, "k": [0] * 3, "question": ["When?"] * 3}
    comps = [
        "<think>t</think><answer>1889</answer>",
        "<think>t</think><answer>1900</answer>",
        "no answer",
    ]
    assert f(None, comps, **cols) == [1.0, 0.0, 0.0]
    assert len(judge.prompts) == 2 and "When?" in judge.prompts[0]
    funcs = build_reward_funcs(["recall", "format", "hybrid", "judge"], judge_model=FakeJudge())
    assert [fn.__name__ for fn in funcs] == [
        "recall_reward",
        "format_reward",
        "hybrid_reward",
        "judge_reward",
    ]
    with pytest.raises(ValueError, match="unknown reward"):
        build_reward_funcs(["nope"])
    with pytest.raises(ValueError, match="judge"):
        build_reward_funcs(["judge"])
