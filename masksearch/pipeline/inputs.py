"""Streaming, validated reading of masked-data JSONL for `generate` (located errors, `--skip-bad`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from masksearch.errors import InputError
from masksearch.jsonl import SkipCounter, iter_jsonl, open_text
from masksearch.types import MaskedExample

MAX_FIELD_CHARS = 200_000  # a passage/question longer than this is rejected as bad input


def iter_examples(path: str | os.PathLike[str], *, skip_bad: bool = False,
                  counter: SkipCounter | None = None,
                  max_chars: int = MAX_FIELD_CHARS) -> Iterator[MaskedExample]:
    """Yield `MaskedExample`s from masked-data JSONL (RAMP, or QA incl. FlashRAG), line by line.

    Records are checked by `masksearch.masking.io.parse_example` plus a length limit. A bad line
    (invalid JSON or UTF-8, missing/mistyped field, over-long text) raises `InputError` naming the
    file, line and field; with `skip_bad` it is counted in `counter` and skipped. An empty file
    is an error.
    """
    from masksearch.masking.io import parse_example

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


def check_lengths(obj: dict[str, Any], *, path: str | None = None, line: int | None = None,
                  max_chars: int = MAX_FIELD_CHARS) -> None:
    """Reject a text field longer than `max_chars` (a runaway passage would blow every prompt)."""
    for name in ("question", "text", "masked_text", "title"):
        value = obj.get(name)
        if isinstance(value, str) and len(value) > max_chars:
            raise InputError(f"too long ({len(value):,} characters; limit {max_chars:,})",
                             path=path, line=line, field=name)


def count_lines(path: str | os.PathLike[str]) -> int | None:
    """Non-blank lines in a (possibly gzipped) file, for the progress bar total; None if unreadable."""
    try:
        with open_text(path) as fh:
            return sum(1 for line in fh if line.strip())
    except (InputError, OSError, UnicodeDecodeError):
        return None
