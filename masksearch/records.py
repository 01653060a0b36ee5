"""Trajectory record schema: what every finished graph run becomes, and what training reads.

A record holds two views of the run:
- `messages`: the single-agent (student) view rendered with `masksearch.prompts` —
  system, user question, then alternating assistant turns (`<think>…</think>` + `<search>…</search>`
  or `<answer>…</answer>`) and tool turns (`<information>…</information>`). Exporters train on this.
- `steps`: the multi-agent (teacher) view — every node call with its agent name, raw output,
  queries, retrieved passages, model id, latency and token usage. Debugging and analysis read this.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict

from masksearch.errors import InputError

SCHEMA_VERSION = 1

Role = Literal["system", "user", "assistant", "tool"]
Status = Literal["answered", "max_turns", "failed"]


class Message(TypedDict):
    role: Role
    content: str
    name: NotRequired[str]  # tool name for role == "tool" ("search")


class Step(TypedDict):
    agent: str  # planner | rewriter | search | observer | answer | judge | agent
    turn: int
    output: str  # raw model output, or formatted observation for "search"
    queries: NotRequired[list[str]]
    passages: NotRequired[list[dict[str, Any]]]
    model: NotRequired[str]
    latency_s: NotRequired[float]
    prompt_tokens: NotRequired[int]
    completion_tokens: NotRequired[int]
    parse_error: NotRequired[str]  # why the output was not used as written (fallback taken)
    rounds_dropped: NotRequired[int]  # oldest rounds left out of a prompt too long for n_ctx


class TrajectoryRecord(TypedDict):
    schema_version: int
    id: str  # example id (unique key in the store)
    thread_id: str
    task: str  # "ramp" | "qa"
    question: str
    answers: list[str]  # gold: masked spans (ramp) or answer aliases (qa)
    messages: list[Message]
    steps: list[Step]
    final_answer: str
    status: Status
    error: str | None
    scores: dict[str, float]  # recall, em, f1, format, judge (when run)
    accepted: bool  # passed the judge filter
    models: dict[str, str]  # role -> "provider:model"
    usage: dict[str, int]  # prompt_tokens, completion_tokens, search_calls
    timings: dict[str, float]  # total_s, llm_s, search_s
    meta: dict[str, Any]  # k, source_id, title, strategy, round, ...
    created_at: str


REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "question": str,
    "answers": list,
    "messages": list,
    "final_answer": str,
    "status": str,
    "scores": dict,
    "accepted": bool,
}


def validate_record(
    obj: Any, *, path: str | None = None, line: int | None = None
) -> TrajectoryRecord:
    """Check a loaded record's shape; raise `InputError` naming file, line and field."""
    if not isinstance(obj, dict):
        raise InputError("record must be a JSON object", path=path, line=line)
    for key, typ in REQUIRED_FIELDS.items():
        if key not in obj:
            raise InputError("missing required field", path=path, line=line, field=key)
        if not isinstance(obj[key], typ):
            raise InputError(
                f"expected {getattr(typ, '__name__', typ)}, got {type(obj[key]).__name__}",
                path=path,
                line=line,
                field=key,
            )
    for i, m in enumerate(obj["messages"]):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            raise InputError("bad role", path=path, line=line, field=f"messages[{i}].role")
        if not isinstance(m.get("content"), str):
            raise InputError(
                "content must be a string", path=path, line=line, field=f"messages[{i}].content"
            )
    return obj  # type: ignore[return-value]
