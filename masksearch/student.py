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

`Decoding` is THE decoding config of a student turn (temperature, top-p, repetition penalty,
stop strings): the graph's student step (and so eval) takes it from `Context.decoding()`, the RL
rollouts from the trainer's config (`Decoding.from_trl_args`), and eval reports it in `run.json`.
No runtime adds a penalty of its own (a repetition penalty discourages copying a span the
student just read).

Token-level details (env masks, EOS kept on the last turn) belong to `training/rollout.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from masksearch import prompts
from masksearch.tagformat import (
    STOP_STRINGS,
    Action,
    parse_action,
    restore_stop,
    split_queries,
    truncate_after_action,
)

FORCE_STOP: tuple[str, ...] = ("</answer>",)
SEARCH_TOOL_NAME = "search"

StepKind = Literal["search", "answer", "invalid", "force_answer", "no_answer"]

__all__ = [
    "Decoding",
    "FORCE_STOP",
    "STOP_STRINGS",
    "StudentStep",
    "force_answer_messages",
    "student_messages",
    "student_step",
]


@dataclass(frozen=True, slots=True)
class Decoding:
    """How a student turn is decoded, the same in RL rollouts, eval and the graph's student step.

    `temperature` 0 is greedy (top-p then has no effect); `repetition_penalty` 1.0 is none.
    `stop` ends a normal turn after its action, `force_stop` the forced answer."""

    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = field(default=STOP_STRINGS)
    force_stop: tuple[str, ...] = field(default=FORCE_STOP)

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "temperature": (0.0, 2.0),
        "top_p": (1e-6, 1.0),
        "repetition_penalty": (1e-3, 10.0),
    }

    def __post_init__(self) -> None:
        for name, (lo, hi) in self.RANGES.items():
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not lo <= value <= hi
            ):
                raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def to_dict(self) -> dict[str, Any]:
        """As reported (eval's `run.json`, the trainer's start-up summary)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "stop": list(self.stop),
            "force_stop": list(self.force_stop),
        }

    def hf_generate_kwargs(self) -> dict[str, Any]:
        """`transformers` `generate` sampling arguments (stop strings are passed per call)."""
        kw: dict[str, Any] = {"repetition_penalty": self.repetition_penalty}
        if self.greedy:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kw.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0)
        return kw

    def vllm_sampling_kwargs(self) -> dict[str, Any]:
        """vLLM `SamplingParams` arguments."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
        }

    @classmethod
    def from_trl_args(cls, args: Any) -> Decoding:
        """The RL rollouts' decoding from a TRL `GRPOConfig` (`temperature`, `top_p`,
        `repetition_penalty`)."""
        return cls(
            temperature=float(getattr(args, "temperature", 1.0)),
            top_p=float(getattr(args, "top_p", 1.0) or 1.0),
            repetition_penalty=float(getattr(args, "repetition_penalty", 1.0) or 1.0),
        )


def student_messages(question: str, rounds: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The student's conversation so far, exactly as records render it. A round is a
    `masksearch.state.Round`: `kind` "search" (think, queries, observation = formatted docs) or
    "invalid" (raw = the malformed turn, observation = the corrective message). A multi-agent
    round's `<search>` holds its sub-query (what the thought says it searches for), not the
    rewriter's queries."""
    msgs = prompts.render_student_prompt(question)
    for r in rounds:
        if r["kind"] == "search":
            # a teacher's round shows its sub-query, the query its thought names (the rewriter's
            # fan-out is how the results were found, as in the reference's `function_call`)
            queries = split_queries(r["subquery"]) if r.get("subquery") else r["queries"]
            content = prompts.assistant_search_turn(r["think"], queries)
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
