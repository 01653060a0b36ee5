"""Streaming, validated reading of masked-data JSONL for `generate` (located errors, `--skip-bad`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from masksearch.errors import InputError
from masksearch.jsonl import SkipCounter, iter_jsonl, open_text
from masksearch.types import MaskedExample, Span

MAX_FIELD_CHARS = 200_000  # a passage/question longer than this is rejected as bad input


def iter_examples(path: str | os.PathLike[str], *, skip_bad: bool = False,
                  counter: SkipCounter | None = None,
                  max_chars: int = MAX_FIELD_CHARS) -> Iterator[MaskedExample]:
    """Yield `MaskedExample`s from a masked-data JSONL file, one line at a time.

    A bad line (invalid JSON or UTF-8, missing/mistyped field, over-long text) raises `InputError`
    naming the file, line and field; with `skip_bad` it is counted in `counter` and skipped.
    An empty file is an error.
    """
    path = str(path)
    for lineno, obj in iter_jsonl(path, required=("id", "question", "answers"),
                                  skip_bad=skip_bad, counter=counter):
        try:
            yield parse_example(obj, path=path, line=lineno, max_chars=max_chars)
        except InputError as err:
            if not skip_bad:
                raise
            if counter is not None:
                counter.add(err)


def parse_example(obj: dict[str, Any], *, path: str | None = None, line: int | None = None,
                  max_chars: int = MAX_FIELD_CHARS) -> MaskedExample:
    """Check one decoded line's fields and build the example."""

    def bad(field: str, msg: str) -> InputError:
        return InputError(msg, path=path, line=line, field=field)

    ex_id = obj["id"]
    if isinstance(ex_id, bool) or not isinstance(ex_id, str | int) or str(ex_id).strip() == "":
        raise bad("id", "must be a non-empty string or integer")
    for name in ("question", "task", "source_id", "title", "text", "masked_text", "strategy"):
        value = obj.get(name, "")
        if name == "source_id" and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, str):
            raise bad(name, f"expected a string, got {type(value).__name__}")
        if len(value) > max_chars:
            raise bad(name, f"too long ({len(value):,} characters; limit {max_chars:,})")
    if not obj["question"].strip():
        raise bad("question", "is empty")
    answers = obj["answers"]
    if not isinstance(answers, list) or not answers:
        raise bad("answers", "must be a non-empty list")
    for i, a in enumerate(answers):
        if not isinstance(a, str | int | float) or isinstance(a, bool):
            raise bad(f"answers[{i}]", f"expected a string, got {type(a).__name__}")
    task = obj.get("task", "ramp")
    if task not in ("ramp", "qa"):
        raise bad("task", f"must be 'ramp' or 'qa', got {task!r}")
    spans = obj.get("spans", [])
    if not isinstance(spans, list):
        raise bad("spans", f"expected a list, got {type(spans).__name__}")
    parsed = []
    for i, s in enumerate(spans):
        try:
            parsed.append(Span(start=int(s["start"]), end=int(s["end"]), text=str(s["text"]),
                               label=str(s.get("label", "ENTITY"))))
        except (TypeError, KeyError, ValueError) as e:
            raise bad(f"spans[{i}]", f"needs integer start/end and text ({type(e).__name__}: {e})") from None
    if task == "ramp" and not parsed:
        raise bad("spans", "a 'ramp' example needs at least one masked span")
    return MaskedExample.from_dict({**obj, "spans": parsed})


def count_lines(path: str | os.PathLike[str]) -> int | None:
    """Non-blank lines in a (possibly gzipped) file, for the progress bar total; None if unreadable."""
    try:
        with open_text(path) as fh:
            return sum(1 for line in fh if line.strip())
    except (InputError, OSError, UnicodeDecodeError):
        return None
