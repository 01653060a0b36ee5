"""The one student-agent step (graph single-agent node, RL rollout, eval)."""

from __future__ import annotations

from masksearch import prompts
from masksearch.student import force_answer_messages, student_messages, student_step


def test_search_answer_and_truncation():
    s = student_step("<think>t</think>\n<search>a ; b\nc</search> junk <answer>x</answer>", 0, 4)
    assert s.kind == "search" and s.queries == ["a", "b", "c"] and s.text.endswith("</search>")
    s = student_step("<think>t</think><answer> Paris ; 1889", 1, 4)  # provider cut the stop
    assert s.kind == "answer" and s.answer == "Paris ; 1889" and s.text.endswith("</answer>")


def test_invalid_turn_gets_the_corrective_message():
    s = student_step("<think>hmm</think> I guess", 0, 4)
    assert s.kind == "invalid" and s.observation == prompts.INVALID_ACTION
    assert s.error == "no <search> or <answer> tag"


def test_turn_limit_forces_one_answer_then_ends():
    s = student_step("<think>t</think><search>q</search>", 4, 4)
    assert s.kind == "force_answer" and s.error == "turn limit reached"
    assert student_step("<answer>A</answer>", 4, 4).kind == "answer"  # answering is always fine
    assert student_step("<think>t</think>", 4, 4, forced=True).kind == "no_answer"
    assert student_step("<answer>A</answer>", 4, 4, forced=True).kind == "answer"


def test_messages_render_rounds():
    rounds = [
        {
            "kind": "search",
            "think": "t",
            "queries": ["q1", "q2"],
            "observation": "Doc 1(Title: T) x",
        },
        {"kind": "invalid", "raw": "oops", "observation": prompts.INVALID_ACTION},
    ]
    msgs = student_messages("Q?", rounds)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert msgs[2]["content"] == "<think>t</think>\n<search>q1\nq2</search>"
    assert msgs[3]["content"] == "<information>Doc 1(Title: T) x</information>"
    assert msgs[4]["content"] == "oops" and msgs[5]["content"] == prompts.INVALID_ACTION
    forced = force_answer_messages("Q?", rounds)
    assert forced[:-1] == msgs and forced[-1] == {
        "role": "user",
        "content": prompts.AGENT_FORCE_ANSWER,
    }
