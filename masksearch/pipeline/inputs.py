"""Masked-data input for `generate`: validated streaming via `masksearch.masking.load_masked`."""

from __future__ import annotations

import os

from masksearch.errors import InputError
from masksearch.jsonl import count_nonblank_lines
from masksearch.masking.io import MAX_FIELD_CHARS
from masksearch.masking.io import load_masked as iter_examples

__all__ = ["MAX_FIELD_CHARS", "count_lines", "iter_examples"]


def count_lines(path: str | os.PathLike[str]) -> int | None:
    """Non-blank lines in a (possibly gzipped) file, for the progress bar total; None if unreadable."""
    try:
        return count_nonblank_lines(path)  # bounded memory whatever the line lengths
    except (InputError, OSError):
        return None
