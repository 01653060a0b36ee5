"""Reading masked (RAMP) and QA example files with located validation errors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from masksearch.errors import InputError
from masksearch.jsonl import SkipCounter, check_unicode, id_problem, iter_jsonl
from masksearch.masking.select import MASK_TOKEN
from masksearch.types import MaskedExample, Span

MAX_FIELD_CHARS = 200_000  # a passage/question longer than this is rejected as bad input
MAX_RESUME_LINE_BYTES = 8 * 1024 * 1024  # resume scans skip longer lines (never read whole)


def load_masked(
    path: str | os.PathLike[str],
    skip_bad: bool = False,
    counter: SkipCounter | None = None,
    max_chars: int = MAX_FIELD_CHARS,
) -> Iterator[MaskedExample]:
    """Yield validated examples from a RAMP JSONL (`MaskedExample.to_dict()` lines), a QA JSONL
    in the same schema (`task: "qa"`, no spans), or FlashRAG QA JSONL (`id`, `question`,
    `golden_answers`; HotpotQA-style `answer` strings are accepted too).

    Bad records (including a text field over `max_chars`: a runaway passage would blow every
    prompt) raise `InputError` naming file, line and field; with `skip_bad` they are counted in
    `counter` instead. An empty file is an error.
    """
    path = str(path)
    for lineno, obj in iter_jsonl(path, skip_bad=skip_bad, counter=counter):
        try:
            check_lengths(obj, path=path, line=lineno, max_chars=max_chars)
            yield parse_example(obj, path=path, line=lineno)
        except InputError as err:
            if not skip_bad:
                raise
            if counter is not None:
                counter.add(err)


def check_lengths(
    obj: dict[str, Any],
    *,
    path: str | None = None,
    line: int | None = None,
    max_chars: int = MAX_FIELD_CHARS,
) -> None:
    """Reject a text field longer than `max_chars`."""
    check_unicode(
        obj, path=path, line=line
    )  # (iter_jsonl checks lines too; records from elsewhere)
    for name in ("question", "text", "masked_text", "title"):
        value = obj.get(name)
        if isinstance(value, str) and len(value) > max_chars:
            raise InputError(
                f"too long ({len(value):,} characters; limit {max_chars:,})",
                path=path,
                line=line,
                field=name,
            )


def check_id(value: str, fld: str, fail: Any) -> None:
    """An id is one printable line (see `masksearch.jsonl.id_problem`)."""
    problem = id_problem(value)
    if problem:
        raise fail(problem, fld)


def parse_example(
    obj: dict[str, Any], *, path: str | None = None, line: int | None = None
) -> MaskedExample:
    """One record → `MaskedExample`, checking types, offsets and mask counts."""

    def fail(msg: str, fld: str | None = None) -> InputError:
        return InputError(msg, path=path, line=line, field=fld)

    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise fail("must be a non-empty string", "question")
    if "answers" not in obj and ("golden_answers" in obj or "answer" in obj):
        return _qa_example(obj, question, fail)
    for key in ("id", "answers"):
        if key not in obj:
            raise fail("missing required field", key)
    if not isinstance(obj["id"], str | int) or isinstance(obj["id"], bool) or str(obj["id"]) == "":
        raise fail("must be a non-empty string or integer", "id")
    check_id(str(obj["id"]), "id", fail)
    answers = obj["answers"]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise fail("must be a non-empty list of strings", "answers")
    # no `task`: a question with [mask] blanks is RAMP, any other a plain QA question (so a
    # user's {id, question, answers} file needs nothing more)
    task = obj.get("task") or ("ramp" if "[mask]" in question.lower() else "qa")
    obj = {**obj, "task": task}
    if task not in ("ramp", "qa"):
        raise fail(f"unknown task {task!r} (ramp | qa)", "task")
    for key in ("source_id", "title", "text", "masked_text", "strategy"):
        value = obj.get(key)
        if value is not None and (not isinstance(value, str | int) or isinstance(value, bool)):
            raise fail("must be a string", key)
    if obj.get("source_id") is not None:
        check_id(str(obj["source_id"]), "source_id", fail)
    spans_raw = obj.get("spans", [])
    if not isinstance(spans_raw, list):
        raise fail("must be a list", "spans")
    if task == "qa":
        if spans_raw:
            raise fail("QA examples have no spans", "spans")
        return MaskedExample.from_dict({**obj, "spans": []})
    spans = [_span(s, i, fail) for i, s in enumerate(spans_raw)]
    _check_ramp(obj, spans, answers, fail)
    return MaskedExample.from_dict({**obj, "spans": spans})


def _span(raw: Any, i: int, fail: Any) -> Span:
    fld = f"spans[{i}]"
    if not isinstance(raw, dict):
        raise fail("must be an object", fld)
    for key, typ in (("start", int), ("end", int), ("text", str)):
        if not isinstance(raw.get(key), typ) or isinstance(raw.get(key), bool):
            raise fail(f"must be {typ.__name__}", f"{fld}.{key}")
    label = raw.get("label", "ENTITY")
    if not isinstance(label, str):
        raise fail("must be a string", f"{fld}.label")
    return Span(raw["start"], raw["end"], raw["text"], label)


def _check_ramp(obj: dict[str, Any], spans: list[Span], answers: list[str], fail: Any) -> None:
    if not spans:
        raise fail("a RAMP example needs at least one span", "spans")
    if [s.text for s in spans] != answers:
        raise fail("answers must be the span texts in order", "answers")
    masked = obj.get("masked_text", "") or ""
    if masked and masked.count(MASK_TOKEN) != len(spans):
        raise fail(
            f"has {masked.count(MASK_TOKEN)} {MASK_TOKEN} but {len(spans)} spans", "masked_text"
        )
    question = obj["question"]
    if MASK_TOKEN not in question:
        raise fail(f"a RAMP question must contain {MASK_TOKEN}", "question")
    if question.count(MASK_TOKEN) < len(spans):  # (the instruction may name the token too)
        raise fail(
            f"has {question.count(MASK_TOKEN)} {MASK_TOKEN} but {len(spans)} spans", "question"
        )
    # the passage the offsets refer to: `text`, else rebuilt from the masked text (exact), else
    # from the question (which may carry a title before the passage: an upper bound only)
    text = obj.get("text", "") or ""
    exact = bool(text)
    if not text:
        exact = bool(masked)
        text = fill_masks(masked or question, [s.text for s in spans])
    prev_end = -1
    for i, s in enumerate(spans):
        if s.start < prev_end or s.end <= s.start or s.start < 0:
            raise fail("spans must be ordered, non-empty and non-overlapping", f"spans[{i}]")
        if s.end > len(text):
            raise fail(
                f"offsets {s.start}:{s.end} lie beyond the record's text ({len(text)} characters)",
                f"spans[{i}]",
            )
        if exact and text[s.start : s.end] != s.text:
            raise fail(
                f"text[{s.start}:{s.end}] is {text[s.start : s.end]!r}, not {s.text!r}",
                f"spans[{i}]",
            )
        prev_end = s.end
    if "k" in obj and obj["k"] != len(spans):
        raise fail(f"k={obj['k']!r} but {len(spans)} spans", "k")


def fill_masks(masked: str, answers: list[str]) -> str:
    """The passage a masked text came from: each mask token replaced by its answer, in order."""
    parts = masked.split(MASK_TOKEN)
    out = [parts[0]]
    for answer, part in zip(answers, parts[1:], strict=False):
        out += [answer, part]
    return "".join(out)


def _qa_example(obj: dict[str, Any], question: str, fail: Any) -> MaskedExample:
    """FlashRAG (`golden_answers`) or HotpotQA-style (`answer`) QA record."""
    if "golden_answers" in obj:
        answers, fld = obj["golden_answers"], "golden_answers"
        if isinstance(answers, str):
            answers = [answers]
    else:
        answers, fld = obj["answer"], "answer"
        answers = [answers] if isinstance(answers, str) else answers
    if (
        not isinstance(answers, list)
        or not answers
        or not all(isinstance(a, str | int | float) and not isinstance(a, bool) for a in answers)
    ):
        raise fail("must be a non-empty list of strings", fld)
    raw_id = obj.get("id", obj.get("_id"))
    if raw_id is None or str(raw_id) == "":
        raw_id = "qa-" + hashlib.sha1(question.encode("utf-8")).hexdigest()[:16]
    return MaskedExample(
        id=str(raw_id), question=question, answers=[str(a) for a in answers], task="qa", strategy=""
    )


def existing_source_ids(path: str | os.PathLike[str]) -> set[str]:
    """Source ids already present in an output file (for resume); missing file → empty set."""
    if not Path(path).exists():
        return set()
    ids: set[str] = set()
    for _, obj in iter_jsonl(
        path,
        skip_bad=True,
        counter=SkipCounter(),
        allow_empty=True,
        max_line_bytes=MAX_RESUME_LINE_BYTES,
    ):
        sid = obj.get("source_id")
        if sid is not None:
            ids.add(str(sid))
    return ids
