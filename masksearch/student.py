"""THE student-agent step: one model writes `<think>` then `<search>` or `<answer>` per turn.

Used by the graph's single-agent node, the RL rollout and eval, so the policy is trained and
evaluated under the same rules (Search-R1's `run_llm_loop`):

- the conversation is `student_messages(question, rounds)`: system + user prompt
  (`prompts.render_student_prompt`), then per executed round an assistant turn and a tool turn
  (`<information>` for a search, the corrective message for an invalid turn);
- generation stops at `STOP_STRINGS` (`</search>`, `</answer>`); `student_step` re-closes a tag
  the provider's stop cut off and drops anything after the first action;
- an invalid turn (no complete action) is answered with `prompts.INVALID_ACTION` as the next tool
  turn and costs one turn; searching continues while `turn < max_turns`;
- at the turn limit, a turn that does not answer leads to ONE forced generation
  (`force_answer_messages`, stop `FORCE_STOP`): it answers, or the episode ends without answer.

Token-level details (env masks, EOS kept on the last turn) belong to `training/rollout.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from masksearch import prompts
from masksearch.tagformat import (
    STOP_STRINGS,
    Action,
    parse_action,
    restore_stop,
    truncate_after_action,
)

FORCE_STOP: tuple[str, ...] = ("</answer>",)
SEARCH_TOOL_NAME = "search"

StepKind = Literal["search", "answer", "invalid", "force_answer", "no_answer"]

__all__ = [
    "FORCE_STOP",
    "STOP_STRINGS",
    "StudentStep",
    "force_answer_messages",
    "student_messages",
    "student_step",
]


def student_messages(question: str, rounds: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The student's conversation so far, exactly as records render it. A round is a
    `masksearch.state.Round`: `kind` "search" (think, queries, observation = formatted docs) or
    "invalid" (raw = the malformed turn, observation = the corrective message)."""
    msgs = prompts.render_student_prompt(question)
    for r in rounds:
        if r["kind"] == "search":
            content = prompts.assistant_search_turn(r["think"], r["queries"])
            observation = prompts.information_block(r["observation"])
        else:
            content, observation = r.get("raw", ""), r["observation"]
        msgs.append({"role": "assistant", "content": content})
        msgs.append({"role": "tool", "name": SEARCH_TOOL_NAME, "content": observation})
    return msgs


def force_answer_messages(
    question: str, rounds: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """The last, must-answer generation's input (Search-R1's final no-search step)."""
    return [
        *student_messages(question, rounds),
        {"role": "user", "content": prompts.AGENT_FORCE_ANSWER},
    ]


@dataclass(frozen=True, slots=True)
class StudentStep:
    """What happens after one student turn.

    - `search`: run `action.queries`, append `<information>`, next turn.
    - `answer`: `action.answer` is final.
    - `invalid`: append `text` + `observation` (the corrective message) as a round, next turn.
    - `force_answer`: the turn limit is reached without an answer; generate once more from
      `force_answer_messages` (this turn's text is not kept in the conversation).
    - `no_answer`: the forced generation did not answer; the episode ends (`max_turns`).
    """

    kind: StepKind
    text: str  # the turn as kept: stop re-closed, cut after the first action
    action: Action
    observation: str = ""

    @property
    def queries(self) -> list[str]:
        return self.action.queries

    @property
    def answer(self) -> str:
        return self.action.answer

    @property
    def error(self) -> str:
        """Why the turn was not a usable action ("" when it was)."""
        return "turn limit reached" if self.kind == "force_answer" else self.action.error


def student_step(
    raw_output: str, turn: int, max_turns: int, *, forced: bool = False
) -> StudentStep:
    """Decide what one generated turn means. `turn` counts the rounds already executed (search
    and invalid turns); `forced` marks the output of the forced-answer generation."""
    text = truncate_after_action(restore_stop(raw_output))
    action = parse_action(text)
    if action.kind == "answer":
        return StudentStep("answer", text, action)
    if forced:
        return StudentStep("no_answer", text, action)
    if turn >= max_turns:
        return StudentStep("force_answer", text, action)
    if action.kind == "search":
        return StudentStep("search", text, action)
    return StudentStep("invalid", text, action, observation=prompts.INVALID_ACTION)
