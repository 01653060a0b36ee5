"""Training inputs: trajectory records (SFT/export) and question sets (RL prompts).

Records come from the pipeline's store (`.sqlite`) or its JSONL export; RL questions come from
RAMP masked data (`MaskedExample` JSONL), FlashRAG QA JSONL (`question`, `golden_answers`) or
trajectory records. Every reader raises `InputError` naming file, line and field.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from masksearch.errors import InputError
from masksearch.jsonl import iter_jsonl
from masksearch.records import Message, TrajectoryRecord, validate_record
from masksearch.student import SEARCH_TOOL_NAME

log = logging.getLogger(__name__)


# JSON schema of the search tool, as TRL / LLaMA-Factory / OpenAI expect it.
SEARCH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": SEARCH_TOOL_NAME,
        "description": (
            "Search the corpus. Each query returns the top passages as "
            "'Doc i(Title: T) text' lines inside <information></information>."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "queries": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "One or more search queries.",
                }
            },
            "required": ["queries"],
        },
    },
}


def iter_training_records(
    path: str | os.PathLike[str], *, accepted_only: bool = True
) -> Iterator[TrajectoryRecord]:
    """Validated records from a store or JSONL export (accepted ones only by default)."""
    from masksearch.store.trajectories import iter_records

    yield from iter_records(path, accepted_only=accepted_only)


def load_training_records(
    path: str | os.PathLike[str], *, accepted_only: bool = True, require_messages: bool = True
) -> list[TrajectoryRecord]:
    """All usable records; `InputError` when the file holds none (names the reason)."""
    out: list[TrajectoryRecord] = []
    seen = 0
    unusable: list[str] = []
    for rec in iter_training_records(path, accepted_only=False):
        seen += 1
        if accepted_only and not rec["accepted"]:
            continue
        if require_messages:
            try:
                check_student_messages(rec["messages"], path=str(path), record_id=rec["id"])
            except InputError as e:  # a valid record whose run never produced a trainable view
                unusable.append(str(e))
                continue
        out.append(rec)
    if unusable:
        log.warning(
            "skipped %d record(s) without a trainable student view, e.g. %s",
            len(unusable),
            unusable[0],
        )
    if not out:
        why = (
            "no records"
            if not seen
            else unusable[0]
            if unusable
            else "no accepted records (pass --all to use rejected ones)"
        )
        raise InputError(f"nothing to train on: {why}", path=str(path))
    return out


def check_student_messages(
    messages: list[Message], *, path: str | None = None, record_id: str = ""
) -> None:
    """A trainable student view: system?, user, then assistant/tool turns ending on assistant."""
    where = f"record {record_id!r}: " if record_id else ""
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        raise InputError(f"{where}no assistant turn", path=path, field="messages")
    first_turn = 1 if roles and roles[0] == "system" else 0
    if len(roles) <= first_turn or roles[first_turn] != "user":
        raise InputError(
            f"{where}expected a user turn after the system prompt",
            path=path,
            field=f"messages[{first_turn}].role",
        )
    if roles[-1] != "assistant":
        raise InputError(
            f"{where}last turn must be the assistant's",
            path=path,
            field=f"messages[{len(roles) - 1}].role",
        )


def record_messages(record: TrajectoryRecord) -> list[dict[str, str]]:
    """The record's student view (`messages`, rendered by `student.student_messages`) as plain `{role, content}` dicts (tool turns keep `name`)."""
    out = []
    for m in record["messages"]:
        msg = {"role": m["role"], "content": m["content"]}
        if m["role"] == "tool":
            msg["name"] = m.get("name") or SEARCH_TOOL_NAME
        out.append(msg)
    return out


def record_k(record: TrajectoryRecord | dict[str, Any]) -> int:
    """Number of masks of a record or question row (0 for QA)."""
    meta = record.get("meta") or {}
    k: Any = record.get("k", meta.get("k", 0))
    try:
        return int(k or 0)
    except (TypeError, ValueError):
        return 0


def load_questions(
    path: str | os.PathLike[str], *, accepted_only: bool = False, limit: int | None = None
) -> list[dict[str, Any]]:
    """RL prompts: `{id, question, answers, task, k}` from masked data, FlashRAG QA or records."""
    p = Path(path)
    if p.suffix.lower() in (".sqlite", ".sqlite3", ".db"):
        rows = [
            _question_from_record(r) for r in iter_training_records(p, accepted_only=accepted_only)
        ]
    else:
        rows = []
        for lineno, obj in iter_jsonl(p):
            if "messages" in obj:
                rec = validate_record(obj, path=str(p), line=lineno)
                if accepted_only and not rec["accepted"]:
                    continue
                rows.append(_question_from_record(rec))
            else:
                rows.append(_question_from_example(obj, str(p), lineno))
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise InputError("no questions found", path=str(p))
    return rows[:limit] if limit is not None else rows


def _question_from_record(rec: TrajectoryRecord) -> dict[str, Any]:
    return {
        "id": rec["id"],
        "question": rec["question"],
        "answers": list(rec["answers"]),
        "task": rec.get("task", "ramp"),
        "k": record_k(rec),
    }


def _question_from_example(obj: dict[str, Any], path: str, line: int) -> dict[str, Any]:
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError("missing or empty question", path=path, line=line, field="question")
    answers = obj.get("answers", obj.get("golden_answers"))
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers:
        raise InputError(
            "expected a non-empty list of answers", path=path, line=line, field="answers"
        )
    task = obj.get("task") or ("ramp" if obj.get("spans") else "qa")
    k = obj.get("k")
    if k is None:
        k = len(obj.get("spans") or []) if task == "ramp" else 0
    return {
        "id": str(obj.get("id", line)),
        "question": question,
        "answers": [str(a) for a in answers],
        "task": task,
        "k": int(k),
        "dataset": str(obj.get("dataset") or obj.get("data_source") or ""),
    }
