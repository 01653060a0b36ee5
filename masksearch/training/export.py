"""Exporters from trajectory records to the formats other trainers read.

- TRL: one conversational prompt-completion row per assistant turn (`prompt` = the conversation
  before the turn, `completion` = the turn), so a stock `SFTTrainer` (whose `completion_only_loss`
  is on for prompt-completion data) trains only the agent's own tokens — never the system prompt,
  the question or `<information>`. Tagged text (default; no `tools` column, the tag format is in
  the system prompt) or OpenAI-style `tool_calls` (with the `tools` schema).
- LLaMA-Factory ShareGPT JSON (`conversations`, `system`; `tools` only for `tool_calls`) plus its
  `dataset_info.json` entry. LLaMA-Factory trains only `gpt`/`function_call` turns; a
  `function_call` is `<think>\n…\n</think>\n\n` then the JSON call — LLaMA-Factory's thought
  words (`THOUGHT_WORDS`), which its `FunctionFormatter` cuts off before parsing the JSON (any
  other layout fails to load: "Invalid JSON format in function message").
- Search-R1 / veRL parquet (`data_source`, `prompt`, `ability`, `reward_model`, `extra_info`), for
  a stock Search-R1 checkout (its `data_source` names and EM reward) and for upstream veRL with
  our `masksearch/training/verl_reward.py` (`custom_reward_function.path`).

In the tags style, `<information>` turns go out as user turns: the graph sends retrieved text back
to the model as a user turn, so the exported tokens are the ones the model sees at inference.

All use the student prompt the graph, RL and eval render (`masksearch.prompts.render_student_prompt`,
one per task): a record's stored system prompt is replaced by the current one for its task.
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
# LLaMA-Factory's default `thought_words` (template.py): the reasoning in front of a function call
THOUGHT_WORDS = ("<think>\n", "\n</think>\n\n")
_ROLE_TO_SHAREGPT = {"user": "human", "assistant": "gpt", "tool": "observation"}


def _split_search_turn(content: str) -> tuple[str, list[str]] | None:
    """(text before <search>, queries) for a search turn; None for any other turn."""
    block = extract_tag(content, "search")
    if block is None or extract_tag(content, "answer") is not None:
        return None
    head = content[: content.lower().find("<search>")].rstrip()
    return head, split_queries(block)


def _student_view(record: TrajectoryRecord, style: Style) -> list[dict[str, Any]]:
    """The record's messages behind the student system prompt of its task as it is rendered now
    (`prompts.student_system_prompt`: the RAMP prompt for a masked passage, the QA prompt
    otherwise) — a record stored with an older prompt trains on the prompt eval and RL use; tags
    style sends tool turns as user turns (what the graph sends)."""
    from masksearch.prompts import student_system_prompt

    messages = record_messages(record)
    if messages and messages[0]["role"] == "system":
        messages = messages[1:]
    system = student_system_prompt(record["question"], record.get("task") or None)
    messages = [{"role": "system", "content": system}, *messages]
    if style == "tags":
        messages = [
            {"role": "user", "content": m["content"]} if m["role"] == "tool" else m
            for m in messages
        ]
    return messages


def to_trl_turns(record: TrajectoryRecord, *, style: Style = "tags") -> list[dict[str, Any]]:
    """TRL prompt-completion rows, one per assistant turn (see the module docstring)."""
    messages = to_trl(record, style=style)["messages"]
    rows = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        row: dict[str, Any] = {
            "id": f"{record['id']}:{i}",
            "prompt": messages[:i],
            "completion": [m],
            "answers": list(record["answers"]),
            "k": record_k(record),
            "task": record.get("task", ""),
        }
        if style == "tool_calls":
            row["tools"] = [SEARCH_TOOL]
        rows.append(row)
    return rows


def to_trl(record: TrajectoryRecord, *, style: Style = "tags") -> dict[str, Any]:
    """One TRL conversational row (the whole conversation). `tags`: the student text as
    generated; `tool_calls`: search turns become `tool_calls` on the assistant message (thought
    kept as content). The export writes `to_trl_turns` rows instead (assistant-only loss)."""
    messages = _student_view(record, style)
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
    row: dict[str, Any] = {
        "id": record["id"],
        "messages": messages,
        "answers": list(record["answers"]),
        "k": record_k(record),
        "task": record.get("task", ""),
    }
    if style == "tool_calls":  # a tool schema only where the turns are tool calls
        row["tools"] = [SEARCH_TOOL]
    return row


def to_sharegpt(record: TrajectoryRecord, *, style: Style = "tags") -> dict[str, Any]:
    """One LLaMA-Factory ShareGPT row; the system prompt goes to `system` (and, for `tool_calls`,
    the tool schema to `tools`). Search turns as `function_call` keep their `<think>` in front
    of the JSON call, which LLaMA-Factory renders before the tool call."""
    system = ""
    conversations: list[dict[str, str]] = []
    for m in _student_view(record, style):
        if m["role"] == "system":
            system = m["content"]
            continue
        parsed = (
            _split_search_turn(m["content"])
            if (style == "tool_calls" and m["role"] == "assistant")
            else None
        )
        if parsed is not None:
            call = json.dumps(
                {"name": SEARCH_TOOL_NAME, "arguments": {"queries": parsed[1]}},
                ensure_ascii=False,
            )
            conversations.append(
                {"from": "function_call", "value": function_call_value(*parsed[:1], call)}
            )
        else:
            conversations.append({"from": _ROLE_TO_SHAREGPT[m["role"]], "value": m["content"]})
    row = {"conversations": conversations, "system": system}
    if style == "tool_calls":
        row["tools"] = json.dumps([SEARCH_TOOL["function"]], ensure_ascii=False)
    return row


def function_call_value(head: str, call: str) -> str:
    """A `function_call` turn as LLaMA-Factory parses it: the thought between its thought words,
    then the JSON call (no thought: the call alone)."""
    think = extract_tag(head, "think")
    if think is None:  # text without <think> tags before the call
        think = head.strip()
    if not think:
        return call
    return f"{THOUGHT_WORDS[0]}{think}{THOUGHT_WORDS[1]}{call}"


def sharegpt_dataset_info(name: str, file_name: str, *, style: Style = "tags") -> dict[str, Any]:
    """The `dataset_info.json` entry LLaMA-Factory needs for `to_sharegpt` rows."""
    columns = {"messages": "conversations", "system": "system"}
    if style == "tool_calls":
        columns["tools"] = "tools"
    return {
        name: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": columns,
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


def verl_prompt(
    question: str, *, system_in_user: bool = True, task: str | None = None
) -> list[dict[str, str]]:
    """The student prompt as veRL rows carry it. Search-R1's rollout reads one user message, so by
    default the system prompt leads the user turn, ending like Search-R1's prefix with
    `Question: <question>` (its answer extractor needs exactly one complete `<answer>` tag in the
    prompt, which each student prompt has); `system_in_user=False` keeps both messages."""
    from masksearch.prompts import render_student_prompt

    msgs = render_student_prompt(question, task)
    if not system_in_user:
        return msgs
    system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
    user = "\n\n".join(m["content"] for m in msgs if m["role"] == "user")
    return [{"role": "user", "content": f"{system}\n\nQuestion: {user}\n" if system else user}]


def verl_data_source(row: dict[str, Any]) -> str:
    """A `data_source` stock Search-R1 accepts: the row's dataset when Search-R1 knows it, else
    `nq` (its EM reward; RAMP rows are scored on the ` ; `-joined spans). `extra_info.task`
    tells our `verl_reward.compute_score` which reward to use."""
    from masksearch.training.verl_reward import SEARCH_R1_SOURCES

    name = str(row.get("dataset") or row.get("data_source") or "").lower()
    return name if name in SEARCH_R1_SOURCES else "nq"


def to_verl(
    row: dict[str, Any],
    index: int,
    *,
    split: str = "train",
    data_source: str | None = None,
    system_in_user: bool = True,
) -> dict[str, Any]:
    """One Search-R1/veRL row from a record or a question row (`question`, `answers`, `k`, `task`).

    `reward_model.ground_truth.target` holds the accepted answers as Search-R1 expects them:
    QA aliases, or for RAMP the one string `span1 ; span2` (so `Eiffel ; 1889` is an exact match);
    `spans` keeps the RAMP spans for the recall reward."""
    from masksearch.prompts import SPAN_SEPARATOR

    task = row.get("task") or "ramp"
    answers = [str(a) for a in row["answers"]]
    ramp = task == "ramp"
    return {
        "data_source": data_source or verl_data_source(row),
        "prompt": verl_prompt(row["question"], system_in_user=system_in_user, task=task),
        "ability": "fact-reasoning",
        "reward_model": {
            "style": "rule",
            "ground_truth": {
                "target": [SPAN_SEPARATOR.join(answers)] if ramp else answers,
                "spans": answers if ramp else [],
            },
        },
        "extra_info": {
            "split": split,
            "index": index,
            "k": record_k(row),
            "id": str(row.get("id", index)),
            "task": task,
            "question": row["question"].strip(),
        },
    }


def write_trl(
    records: Iterable[TrajectoryRecord], out: str | os.PathLike[str], *, style: Style = "tags"
) -> int:
    from masksearch.jsonl import write_jsonl

    return write_jsonl(out, (row for r in records for row in to_trl_turns(r, style=style)))


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
    info.update(sharegpt_dataset_info(dataset_name, out.name, style=style))
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
    from masksearch.fileio import OutputKind, check_output_file
    from masksearch.training.data import load_questions, load_training_records

    if fmt not in ("trl", "sharegpt", "verl"):
        raise InputError(f"unknown format {fmt!r} (choose trl, sharegpt or verl)", field="format")
    kind: OutputKind = {"trl": "jsonl", "sharegpt": "json", "verl": "parquet"}[fmt]  # type: ignore[assignment]
    # before reading: a folder, /dev/full, read-only, the records themselves, a foreign file
    check_output_file(out, what="--out", inputs={"--records": records_path}, kind=kind)
    if fmt == "sharegpt":
        check_output_file(
            Path(out).parent / "dataset_info.json",
            what="dataset_info.json",
            inputs={"--records": records_path},
            kind="json",
        )
    if fmt == "verl":
        rows = load_questions(records_path, accepted_only=accepted_only)
        return write_verl(rows, out, split=split, system_in_user=system_in_user)
    records = load_training_records(records_path, accepted_only=accepted_only)
    if fmt == "trl":
        return write_trl(records, out, style=style)
    return write_sharegpt(records, out, style=style, dataset_name=dataset_name)
