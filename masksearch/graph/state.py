"""Graph state: typed dicts with explicit reducers (lists append, scalars last-write-wins)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired, TypedDict

RunStatus = Literal["running", "answered", "max_turns", "failed"]


class Round(TypedDict):
    """One executed turn of the student view.

    `kind == "search"`: an assistant `<think>…</think><search>queries</search>` turn and the
    tool turn `observation` (the formatted docs, without the `<information>` wrapper).
    `kind == "invalid"` (single-agent): the assistant's raw malformed output and the corrective message.
    """

    turn: int
    kind: Literal["search", "invalid"]
    think: str
    subquery: str
    queries: list[str]
    observation: str
    passages: list[dict[str, Any]]
    raw: NotRequired[str]


class Pending(TypedDict):
    """The next search the team decided on (set by planner/observer/agent, consumed by search)."""

    think: str
    subquery: str
    queries: list[str]


class InputState(TypedDict, total=False):
    """What a caller passes: the question, and optionally gold answers for scoring."""

    question: str
    answers: list[str]
    task: str  # "ramp" | "qa"; inferred from [mask] when absent
    example_id: str


class GraphState(InputState, total=False):
    rounds: Annotated[list[Round], operator.add]
    summaries: Annotated[list[str], operator.add]  # observer summary per search round
    steps: Annotated[list[dict[str, Any]], operator.add]  # records.Step dicts, every node call
    turn: int  # search rounds executed (invalid single-agent turns count too)
    pending: Pending | None
    final_think: str
    final_answer: str
    forced: bool  # the answer came from the forced-answer step
    status: RunStatus
    scores: dict[str, float]
    accepted: bool
