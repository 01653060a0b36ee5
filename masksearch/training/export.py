"""Exporters from trajectory records to the formats other trainers read.

- TRL conversational (`messages` + `tools` columns), with tagged text or OpenAI-style tool calls.
- LLaMA-Factory ShareGPT JSON (`conversations` with human/gpt/function_call/observation, `system`,
  `tools`) plus its `dataset_info.json` entry.
- Search-R1 / veRL parquet (`data_source`, `prompt`, `ability`, `reward_model`, `extra_info`).

All use the prompts the graph used: records already carry the rendered system prompt, and RL rows
are rendered with `masksearch.prompts.render_student_prompt`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from masksearch.errors import InputError
from masksearch.records import TrajectoryRecord
from masksearch.student import SEARCH_TOOL_NAME
from masksearch.tagformat import extract_tag, split_queries
from masksearch.training.data import SEARCH_TOOL, record_k, record_messages

Style = Literal["tags", "tool_calls"]
_ROLE_TO_SHAREGPT = {"user": "human", "assistant": "gpt", "tool": "observation"}


def _split_search_turn(content: str) -> tuple[str, list[str]] | None:
    """(text before <search>, queries) for a search turn; None for any other turn."""
    block = extract_tag(content, "search")
    if block is None or extract_tag(content, "answer") is not None:
        return None
    head = content[: content.lower().find("<search>")].rstrip()
    return head, split_queries(block)


def to_trl(record: TrajectoryRecord, *, style: Style = "tags") -> dict[str, Any]:
    """One TRL conversational row. `tags`: the student text as generated; `tool_calls`: search
    turns become `tool_calls` on the assistant message (thought kept as content)."""
    messages = record_messages(record)
    if style == "tool_calls":
        converted = []
        for m in messages:
            parsed = _split_search_turn(m["content"]) if m["role"] == "assistant" else None
            if parsed is None:
                converted.append(m)
                continue
            head, queries = parsed
            converted.append(
                {
                    "role": "assistant",
                    "content": head,
                    "tool_calls": [
                        {
                            "type": "function",
                            "function": {
                                "name": SEARCH_TOOL_NAME,
                                "arguments": {"queries": queries},
                            },
                        }
                    ],
                }
            )
        messages = converted
    return {
        "id": record["id"],
        "messages": messages,
        "tools": [SEARCH_TOOL],
        "answers": list(record["answers"]),
        "k": record_k(record),
        "task": record.get("task", ""),
    }


def to_sharegpt(record: TrajectoryRecord, *, style: Style = "tags") -> dict[str, Any]:
    """One LLaMA-Factory ShareGPT row; the system prompt goes to `system`, the tool schema to `tools`."""
    system = ""
    conversations: list[dict[str, str]] = []
    for m in record_messages(record):
        if m["role"] == "system":
            system = m["content"]
            continue
        parsed = (
            _split_search_turn(m["content"])
            if (style == "tool_calls" and m["role"] == "assistant")
            else None
        )
        if parsed is not None:
            conversations.append(
                {
                    "from": "function_call",
                    "value": json.dumps(
                        {"name": SEARCH_TOOL_NAME, "arguments": {"queries": parsed[1]}},
                        ensure_ascii=False,
                    ),
                }
            )
        else:
            conversations.append({"from": _ROLE_TO_SHAREGPT[m["role"]], "value": m["content"]})
    return {
        "conversations": conversations,
        "system": system,
        "tools": json.dumps([SEARCH_TOOL["function"]], ensure_ascii=False),
    }


def sharegpt_dataset_info(name: str, file_name: str) -> dict[str, Any]:
    """The `dataset_info.json` entry LLaMA-Factory needs for `to_sharegpt` rows."""
    return {
        name: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
            "tags": {
                "role_tag": "from",
                "content_tag": "value",
                "user_tag": "human",
                "assistant_tag": "gpt",
                "observation_tag": "observation",
                "function_tag": "function_call",
                "system_tag": "system",
            },
        }
    }


def verl_prompt(question: str, *, system_in_user: bool = True) -> list[dict[str, str]]:
    """The student prompt as veRL rows carry it. Search-R1's rollout reads one user message, so by
    default the system prompt leads the user turn; `system_in_user=False` keeps both messages."""
    from masksearch.prompts import render_student_prompt

    msgs = render_student_prompt(question)
    if not system_in_user:
        return msgs
    system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
    user = "\n\n".join(m["content"] for m in msgs if m["role"] == "user")
    return [{"role": "user", "content": f"{system}\n\nQuestion: {user}\n" if system else user}]


def to_verl(
    row: dict[str, Any],
    index: int,
    *,
    split: str = "train",
    data_source: str | None = None,
    system_in_user: bool = True,
) -> dict[str, Any]:
    """One Search-R1/veRL row from a record or a question row (`question`, `answers`, `k`, `task`)."""
    task = row.get("task") or "ramp"
    k = record_k(row)
    return {
        "data_source": data_source or f"masksearch_{task}",
        "prompt": verl_prompt(row["question"], system_in_user=system_in_user),
        "ability": "fact-reasoning",
        "reward_model": {
            "style": "rule",
            "ground_truth": {"target": [str(a) for a in row["answers"]]},
        },
        "extra_info": {
            "split": split,
            "index": index,
            "k": k,
            "id": str(row.get("id", index)),
            "task": task,
        },
    }


def write_trl(
    records: Iterable[TrajectoryRecord], out: str | os.PathLike[str], *, style: Style = "tags"
) -> int:
    from masksearch.jsonl import write_jsonl

    return write_jsonl(out, (to_trl(r, style=style) for r in records))


def write_sharegpt(
    records: Iterable[TrajectoryRecord],
    out: str | os.PathLike[str],
    *,
    style: Style = "tags",
    dataset_name: str = "masksearch",
) -> int:
    """Write the ShareGPT JSON array and merge its entry into `dataset_info.json` beside it."""
    out = Path(out)
    rows = [to_sharegpt(r, style=style) for r in records]
    _atomic_write(out, json.dumps(rows, ensure_ascii=False, indent=1))
    info_path = out.parent / "dataset_info.json"
    info: dict[str, Any] = {}
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(
                f"existing dataset_info.json is not valid JSON ({e.msg})",
                path=str(info_path),
                line=e.lineno,
            ) from None
    info.update(sharegpt_dataset_info(dataset_name, out.name))
    _atomic_write(info_path, json.dumps(info, ensure_ascii=False, indent=2))
    return len(rows)


def write_verl(
    rows: Iterable[dict[str, Any]],
    out: str | os.PathLike[str],
    *,
    split: str = "train",
    data_source: str | None = None,
    system_in_user: bool = True,
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table_rows = [
        to_verl(r, i, split=split, data_source=data_source, system_in_user=system_in_user)
        for i, r in enumerate(rows)
    ]
    if not table_rows:
        raise InputError("nothing to export", path=str(out))
    from masksearch.fileio import atomic_write

    with atomic_write(out, "wb") as fh:  # fsynced temp file + rename; no .tmp left on error
        pq.write_table(pa.Table.from_pylist(table_rows), fh)
    return len(table_rows)


def _atomic_write(path: Path, text: str) -> None:
    from masksearch.fileio import atomic_write_text
    from masksearch.redact import redact

    atomic_write_text(path, redact(text))


def export(
    records_path: str | os.PathLike[str],
    fmt: str,
    out: str | os.PathLike[str],
    *,
    accepted_only: bool = True,
    style: Style = "tags",
    split: str = "train",
    dataset_name: str = "masksearch",
    system_in_user: bool = True,
) -> int:
    """Read records (store or JSONL) and write `fmt` (`trl`, `sharegpt`, `verl`); returns the count."""
    from masksearch.fileio import check_output_file
    from masksearch.training.data import load_questions, load_training_records

    if fmt not in ("trl", "sharegpt", "verl"):
        raise InputError(f"unknown format {fmt!r} (choose trl, sharegpt or verl)", field="format")
    check_output_file(out, what="--out")  # before reading: a folder, /dev/full, read-only
    if fmt == "verl":
        rows = load_questions(records_path, accepted_only=accepted_only)
        return write_verl(rows, out, split=split, system_in_user=system_in_user)
    records = load_training_records(records_path, accepted_only=accepted_only)
    if fmt == "trl":
        return write_trl(records, out, style=style)
    return write_sharegpt(records, out, style=style, dataset_name=dataset_name)
