"""Corpus ingestion: stream documents from a dump and split them into titled passages.

Formats: `wikiextractor` (WikiExtractor `--json` lines), `flashrag` (FlashRAG / Search-R1 jsonl,
`contents` = title + newline + text) and `textdir` (one article per file, file name = title).
`.gz` files are read transparently. Nothing is held in memory beyond one document.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from masksearch.corpus.readers import FORMATS, READERS, Document, detect_format
from masksearch.corpus.split import clean_paragraphs, split_passages
from masksearch.errors import InputError
from masksearch.jsonl import SkipCounter
from masksearch.types import Passage

# the help of the commands' corpus format option (`index --format`, `mask --corpus-format`)
FORMAT_HELP = "auto (detected) | " + " | ".join(FORMATS) + "."

__all__ = [
    "FORMATS",
    "FORMAT_HELP",
    "Document",
    "SkipCounter",
    "detect_format",
    "document_passages",
    "iter_documents",
    "iter_passages",
]


def iter_documents(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    *,
    skip_bad: bool = False,
    counter: SkipCounter | None = None,
) -> Iterator[Document]:
    """Stream `Document`s from `path` in format `fmt` (`auto` detects it)."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in READERS:
        raise InputError(
            f"unknown corpus format {fmt!r}; choose one of auto, {', '.join(FORMATS)}",
            path=str(path),
        )
    return READERS[fmt](path, skip_bad=skip_bad, counter=counter)


def document_passages(doc: Document, words_per_passage: int = 100) -> list[Passage]:
    """Split one document into passages with ids `<doc_id>#<n>` (n from 0).

    A FlashRAG row (already a passage) keeps its own id unless it is longer than twice
    `words_per_passage`, in which case it is split like any other document.
    """
    if doc.presplit:
        text = " ".join(doc.lines[0].split()) if doc.lines else ""
        if not text:
            return []
        if len(text.split()) <= 2 * words_per_passage:
            return [Passage(id=doc.id, title=doc.title, text=text)]
        paragraphs = [text]
    else:
        paragraphs = clean_paragraphs(doc.lines, title=doc.title)
    chunks = split_passages(paragraphs, words_per_passage)
    return [
        Passage(id=f"{doc.id}#{n}", title=doc.title, text=chunk) for n, chunk in enumerate(chunks)
    ]


def iter_passages(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    words_per_passage: int = 100,
    skip_bad: bool = False,
    counter: SkipCounter | None = None,
) -> Iterator[Passage]:
    """Stream passages (~`words_per_passage` words, sentence-aligned) from a corpus.

    Malformed input raises `InputError` naming file, line and field; with `skip_bad=True` bad
    records are skipped and counted in `counter` (a `SkipCounter`).
    """
    if words_per_passage < 1:
        raise ValueError("words_per_passage must be >= 1")
    for doc in iter_documents(path, fmt, skip_bad=skip_bad, counter=counter):
        yield from document_passages(doc, words_per_passage)
