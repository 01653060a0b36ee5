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


def test_verl_compute_score_is_the_project_reward_reversed_and_padded_score_below_exact():
    from masksearch.training.rewards import hybrid_score
    from masksearch.training.verl_reward import compute_score

    gt = {"target": ["Eiffel ; 1889"], "spans": ["Eiffel", "1889"]}
    info = {"task": "ramp", "question": "The [mask] Tower was finished in [mask]."}

    def score(answer):
        return compute_score("nq", f"<think>t</think>\n<answer>{answer}</answer>", gt, info)

    exact = score("Eiffel ; 1889")
    reversed_ = score("1889 ; Eiffel")
    padded = score("Paris ; Eiffel ; France ; 1889 ; tower ; Gustave ; iron ; 1887")
    short_pad = score("Eiffel ; 1889 ; Paris")
    assert exact == pytest.approx(1.0)
    assert reversed_ < exact and reversed_ == pytest.approx(0.2)  # format term only
    assert padded < 0.5 and short_pad < exact
    # one implementation: TRL's hybrid reward gives the same numbers on the same text
    hybrid = make_hybrid_reward()
    cols = {"answers": [gt["spans"]] * 3, "task": ["ramp"] * 3, "k": [2] * 3}
    texts = [
        f"<think>t</think>\n<answer>{a}</answer>"
        for a in ("Eiffel ; 1889", "1889 ; Eiffel", "Eiffel ; 1889 ; Paris")
    ]
    assert hybrid(None, texts, **cols) == pytest.approx([exact, reversed_, short_pad])
    assert hybrid_score(texts[0], gt["spans"], True) == pytest.approx(exact)
    # a chat-template-decoded response (Qwen markers between turns) is still a valid format
    qwen = (
        "<think>t</think>\n<search>q</search><|im_end|>\n<|im_start|>user\n<information>Doc 1"
        "</information><|im_end|>\n<|im_start|>assistant\n<think>t</think>\n"
        "<answer>Eiffel ; 1889</answer><|im_end|>"
    )
    assert compute_score("nq", qwen, gt, info) == pytest.approx(1.0)
    # QA: a padded list of candidates loses reward through the length factor
    qa_gt = {"target": ["Gustave Eiffel"], "spans": []}
    qa_info = {"task": "qa", "question": "Who?"}
    right = compute_score(
        "hotpotqa", "<think>t</think><answer>Gustave Eiffel</answer>", qa_gt, qa_info
    )
    pad = " ".join(["Gustave Eiffel"] + [f"name{i}" for i in range(20)])
    padded_qa = compute_score("hotpotqa", f"<think>t</think><answer>{pad}</answer>", qa_gt, qa_info)
    assert right == pytest.approx(1.0) and padded_qa < 0.5


def test_an_answer_copying_the_student_prompt_example_is_never_right():
    """The student prompt shows no copyable example answer; the one complete `<answer>` tag it
    holds ("<answer> and </answer>") scores 0 when copied, on every scoring path."""
    import re

    from masksearch import prompts, scoring
    from masksearch.training.verl_reward import compute_score

    shown = set()
    for question, task in (("Who built it?", "qa"), ("The [mask] Tower.", "ramp")):
        msgs = prompts.render_student_prompt(question, task)
        text = "\n".join(m["content"] for m in msgs) + prompts.AGENT_FORCE_ANSWER
        shown |= {" ".join(a.split()) for a in re.findall(r"<answer>(.*?)</answer>", text, re.S)}
    assert shown and shown <= set(prompts.STUDENT_PROMPT_EXAMPLES)
    assert "Paris ; 1889" not in prompts.student_system_prompt("The [mask] Tower.")
    assert "[mask]" not in prompts.student_system_prompt("Who built it?")
    for example in shown:
        for gold, task in (([example], "qa"), ([example, example], "ramp"), (["Paris"], "qa")):
            assert not any(scoring.score_answer(example, gold, task).values())
            assert not scoring.answer_correct(example, gold, task)
            text = f"<think>t</think><answer>{example}</answer>"
            cols = {"answers": [gold], "task": [task], "k": [len(gold)]}
            for name in ("recall", "em", "f1", "correct"):
                assert build_reward_funcs([name])[0](None, [text], **cols) == [0.0]
            gt = {"target": gold, "spans": gold if task == "ramp" else []}
            assert compute_score("nq", text, gt, {"task": task}) == pytest.approx(
                0.2
            )  # format only


def test_eval_scores_a_copied_prompt_example_zero():
    from masksearch.eval.items import EvalItem
    from masksearch.eval.scoring import score_prediction

    item = EvalItem(dataset="d", id="1", question="q", golden_answers=["Romeo and Juliet"])
    assert score_prediction("Romeo and Juliet", item)["em"] == 1.0
    assert not any(score_prediction("and", item).values())  # "and" would recall 1/3 otherwise


def test_no_answer_is_an_empty_normalized_answer_or_a_copied_prompt_example():
    from masksearch import prompts, scoring

    for nothing in (None, "", "  ", "...", "The", " , ."):
        assert scoring.is_no_answer(nothing), nothing
    assert all(scoring.is_no_answer(e) for e in prompts.STUDENT_PROMPT_EXAMPLES)
    for answer in ("1901", "Gustave Eiffel", "Romeo and Juliet", "and 1901"):
        assert not scoring.is_no_answer(answer), answer
