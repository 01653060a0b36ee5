"""Graph state: typed dicts with explicit reducers (lists append, scalars last-write-wins).

Defined below the nodes and the graph. `typing_extensions.TypedDict` (not `typing.TypedDict`)
so LangGraph can derive JSON schemas on Python 3.11 (Studio's input form).

One thread may answer several questions: each new input restarts the per-question fields
(`prepare` overwrites them), while `messages` keeps the whole conversation for the chat view.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired, Required

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from masksearch.context import AgentMode
from masksearch.records import Step

RunStatus = Literal["running", "answered", "max_turns", "failed"]
Decision = Literal["search", "answer", "invalid", "force"]
Task = Literal["ramp", "qa"]


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


class QuestionInput(TypedDict, total=False):
    """The question and, optionally, gold answers for scoring: what every run's input holds
    (Studio and chat add `messages`; a batch graph takes the whole start state)."""

    question: Required[str]
    answers: list[str]  # gold: masked spans in order (ramp) or answer aliases (qa)
    task: Task  # inferred from [mask] in the question when absent
    example_id: str


class InputState(QuestionInput, total=False):
    """What a caller passes: the question, and optionally gold answers for scoring.

    A chat client may send `messages` instead: the last human message becomes the question.
    """

    messages: Annotated[list[AnyMessage], add_messages]


class RouteView(TypedDict, total=False):
    """The fields the graph's routers read (their input schema). LangGraph hands a router a
    fresh copy of exactly these channels with the finishing node's writes applied, instead of
    the whole state with every message, round and step."""

    decision: Decision
    pending: Pending | None
    agent_mode: AgentMode
    review_queries: bool


class RunFields(TypedDict, total=False):
    """What one question's run adds to its input (the teacher and student views, the outcome)."""

    rounds: Annotated[list[Round], operator.add]
    summaries: Annotated[list[str], operator.add]  # observer summary per search round
    steps: Annotated[list[Step], operator.add]  # every node call (teacher view)
    turn: int  # search rounds executed (invalid single-agent turns count too)
    pending: Pending | None
    decision: Decision  # the last model decision; the routers read it
    final_think: str
    final_answer: str
    forced: bool  # the answer came from the forced-answer step
    status: RunStatus
    scores: dict[str, float]
    accepted: bool
    agent_mode: AgentMode  # this question's mode (copied from the Context; the routers read it)
    review_queries: bool  # pause before each search for a human review (copied from the Context)
    run_input: dict[str, Any]  # the question and gold fields this question's run started with
    trajectory_id: str  # the record id this question was saved under (`Context.save`), else ""


class GraphState(InputState, RunFields, total=False):
    """The whole state: input, run fields and the `messages` chat view (Studio, chat)."""


class OutputState(TypedDict, total=False):
    """What a Studio / API / MCP run returns (`build_graph(output="summary")`): the question,
    its answer and verdict, and the id of its saved trajectory (`Context.save`), not the whole
    state (which `threads.get_state` still gives)."""

    question: str
    final_answer: str
    status: RunStatus
    accepted: bool
    scores: dict[str, float]
    example_id: str
    trajectory_id: str


class BatchState(QuestionInput, RunFields, total=False):
    """`GraphState` without the `messages` chat view: what a batch run (`generate`) keeps and
    checkpoints. Records are built from the rounds and steps, so the chat view (a third copy of
    every observation) would only cost a reducer call per node and checkpoint bytes; the nodes'
    `messages` updates are dropped by the graph."""
