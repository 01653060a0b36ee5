"""Streaming readers for the supported corpus formats, with format auto-detection."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masksearch.errors import InputError
from masksearch.jsonl import SkipCounter, id_problem, iter_jsonl, open_text

FORMATS = ("wikiextractor", "flashrag", "textdir")


@dataclass(frozen=True, slots=True)
class Document:
    """One source document: raw lines (paragraphs) plus where it came from."""

    id: str
    title: str
    lines: list[str]
    presplit: bool = False  # FlashRAG rows are already passages: keep their ids when short


def iter_files(path: str | os.PathLike[str]) -> Iterator[Path]:
    """`path` itself, or every non-hidden file under the directory `path` in sorted order."""
    root = Path(path)
    if not root.is_dir():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _sniff(path: Path) -> dict[str, Any] | None:
    """The first non-blank line of `path` as a JSON object, or None if it is not one."""
    try:
        with open_text(path) as fh:
            for line in fh:
                if line.strip():
                    obj = json.loads(line)
                    return obj if isinstance(obj, dict) else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return None


def detect_format(path: str | os.PathLike[str]) -> str:
    """JSON lines with `contents` → `flashrag`; with `title` + `text` → `wikiextractor`
    (a file, or a directory of them such as WikiExtractor's `AA/wiki_00`); other directory → `textdir`."""
    p = Path(path)
    if not p.exists():
        raise InputError("corpus not found", path=str(p))
    first = next(iter_files(p), None)
    if first is None:
        raise InputError("corpus directory is empty", path=str(p))
    obj = _sniff(first)
    if obj is not None and "contents" in obj:
        return "flashrag"
    if obj is not None and "text" in obj and "title" in obj:
        return "wikiextractor"
    if p.is_dir():
        return "textdir"
    raise InputError(
        "cannot detect format: expected JSON lines with `contents` (FlashRAG/"
        "Search-R1) or `title` and `text` (WikiExtractor); pass --format",
        path=str(p),
        line=1,
    )


def _str_field(obj: dict[str, Any], key: str, path: str, lineno: int) -> str:
    value = obj[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "id":
        return str(value)
    if not isinstance(value, str):
        raise InputError(
            f"expected a string, got {type(value).__name__}", path=path, line=lineno, field=key
        )
    if key == "id" and (problem := id_problem(value)):
        raise InputError(problem, path=path, line=lineno, field=key)
    return value


def _guarded(make, skip_bad: bool, counter: SkipCounter | None):
    """Run `make()`; on InputError raise or (with skip_bad) count and return None."""
    try:
        return make()
    except InputError as err:
        if not skip_bad:
            raise
        if counter is not None:
            counter.add(err)
        return None


def read_wikiextractor(
    path: str | os.PathLike[str], *, skip_bad: bool = False, counter: SkipCounter | None = None
) -> Iterator[Document]:
    """WikiExtractor `--json` output: one `{"id","url","title","text"}` object per line.

    `path` may be one file or WikiExtractor's output directory (`AA/wiki_00`, ... read in order).
    """
    for file in iter_files(path):
        yield from _read_wikiextractor_file(str(file), skip_bad, counter)


def _read_wikiextractor_file(path: str, skip_bad: bool, counter: SkipCounter | None):
    for lineno, obj in iter_jsonl(
        path, required=("id", "title", "text"), skip_bad=skip_bad, counter=counter, allow_empty=True
    ):

        def make(obj=obj, lineno=lineno):
            doc_id = _str_field(obj, "id", path, lineno).strip()
            if not doc_id:
                raise InputError("empty id", path=path, line=lineno, field="id")
            title = _str_field(obj, "title", path, lineno).strip()
            text = _str_field(obj, "text", path, lineno)
            return Document(doc_id, title, text.split("\n"))

        doc = _guarded(make, skip_bad, counter)
        if doc is not None:
            yield doc


def read_flashrag(
    path: str | os.PathLike[str], *, skip_bad: bool = False, counter: SkipCounter | None = None
) -> Iterator[Document]:
    """FlashRAG / Search-R1 jsonl: `{"id", "contents"}`, contents = title + newline + text.

    The title may be wrapped in double quotes (Search-R1 wiki-18); quotes are removed.
    """
    for file in iter_files(path):
        yield from _read_flashrag_file(str(file), skip_bad, counter)


def _read_flashrag_file(path: str, skip_bad: bool, counter: SkipCounter | None):
    for lineno, obj in iter_jsonl(
        path, required=("id", "contents"), skip_bad=skip_bad, counter=counter, allow_empty=True
    ):

        def make(obj=obj, lineno=lineno):
            doc_id = _str_field(obj, "id", path, lineno).strip()
            if not doc_id:
                raise InputError("empty id", path=path, line=lineno, field="id")
            contents = _str_field(obj, "contents", path, lineno)
            title, sep, text = contents.partition("\n")
            if not sep:
                raise InputError(
                    "expected 'title\\ntext' (no newline found)",
                    path=path,
                    line=lineno,
                    field="contents",
                )
            title = title.strip()
            if len(title) >= 2 and title[0] == title[-1] == '"':
                title = title[1:-1]
            return Document(doc_id, title, [text], presplit=True)

        doc = _guarded(make, skip_bad, counter)
        if doc is not None:
            yield doc


def _title_from_filename(name: str) -> str:
    for suffix in (".gz", ".txt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def read_textdir(
    path: str | os.PathLike[str], *, skip_bad: bool = False, counter: SkipCounter | None = None
) -> Iterator[Document]:
    """A directory tree with one article per file; the file name (minus .txt/.gz) is the title.

    Files are visited in sorted order, hidden files skipped; doc id = relative path without suffix.
    Each line is one paragraph. Undecodable files raise `InputError` with file and line.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError("not a directory", path=str(root))
    for fpath in iter_files(root):
        rel = fpath.relative_to(root).as_posix()
        doc = _guarded(lambda f=fpath, r=rel: _read_text_file(f, r), skip_bad, counter)
        if doc is not None:
            yield doc


def _read_text_file(fpath: Path, rel: str) -> Document:
    """Read one article; lines are decoded one by one so a bad byte is located exactly."""
    opener = gzip.open if fpath.suffix == ".gz" else open
    lines: list[str] = []
    with opener(fpath, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise InputError(
                    f"not valid UTF-8 ({e.reason} at byte {e.start} of the line)",
                    path=str(fpath),
                    line=lineno,
                ) from None
    return Document(_title_from_filename(rel), _title_from_filename(fpath.name), lines)


READERS = {"wikiextractor": read_wikiextractor, "flashrag": read_flashrag, "textdir": read_textdir}
