"""Paragraph cleaning and sentence-aware splitting of documents into ~N-word passages."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

# Lines that are list items, tables, templates, headings markup or link-only lines in dumps.
_MARKUP_START = re.compile(
    r"^\s*([*#|!{}=<•·\-–]|\[\[|(Category|File|Image|Template|Kategorie)\s*:)"
)
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*(\s+)(?=[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ])")
_WORD = re.compile(r"\S+")

MIN_PARAGRAPH_WORDS = 4


def clean_paragraphs(
    lines: Iterable[str], *, title: str = "", min_words: int = MIN_PARAGRAPH_WORDS
) -> list[str]:
    """Keep prose paragraphs; drop empty lines, list/table/template markup, headings and junk.

    Rules (each line is one paragraph): drop blank lines; lines starting with a list, table or
    template marker (`*`, `#`, `-`, `|`, `{`, `=`, `<`, `[[`, `Category:` ...); lines with fewer than
    `min_words` words (section headings such as "Early life"); lines that repeat the title; lines
    ending in a colon (list introductions, e.g. "Works include:"); lines that are mostly not letters
    (tables of numbers). Unlike the reference code, slashes inside prose (dates, units) are fine.
    """
    out: list[str] = []
    norm_title = title.strip().lower()
    for raw in lines:
        line = " ".join(raw.split())
        if not line or _MARKUP_START.match(line):
            continue
        if norm_title and line.lower().rstrip(".") == norm_title:
            continue
        if line.endswith((":", "：")):
            continue
        if len(line.split()) < min_words and not _is_cjk(line):
            continue
        letters = sum(ch.isalpha() for ch in line)
        if letters < 0.5 * len(line.replace(" ", "")):
            continue
        out.append(line)
    return out


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def split_sentences(paragraph: str) -> list[str]:
    """Split a paragraph on sentence ends followed by a capitalised/numeric start."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(paragraph):
        out.append(paragraph[start : m.start(1)])
        start = m.end(1)
    out.append(paragraph[start:])
    return [s for s in (p.strip() for p in out) if s]


def _units(paragraphs: Iterable[str], words: int) -> Iterator[tuple[str, int, bool]]:
    """Yield (sentence, word count, ends_paragraph); over-long sentences are cut by words."""
    for para in paragraphs:
        sents = split_sentences(para)
        for i, sent in enumerate(sents):
            toks = sent.split()
            last = i == len(sents) - 1
            if len(toks) <= words:
                yield sent, len(toks), last
                continue
            for start in range(0, len(toks), words):
                piece = toks[start : start + words]
                yield " ".join(piece), len(piece), last and start + words >= len(toks)


def split_passages(paragraphs: Iterable[str], words: int = 100) -> list[str]:
    """Greedily pack whole sentences into passages of about `words` words.

    A passage is closed before a sentence that would push it past `words`, or at a paragraph end
    once it holds at least 80% of `words`. A short tail (< 25%) is merged into the previous
    passage when the result stays under 1.5x `words`. Deterministic for the same input.
    """
    if words < 1:
        raise ValueError("words per passage must be >= 1")
    passages: list[tuple[list[str], int]] = []
    cur: list[str] = []
    cur_n = 0
    for sent, n, para_end in _units(paragraphs, words):
        if cur and cur_n + n > words:
            passages.append((cur, cur_n))
            cur, cur_n = [], 0
        cur.append(sent)
        cur_n += n
        if para_end and cur_n >= 0.8 * words:
            passages.append((cur, cur_n))
            cur, cur_n = [], 0
    if cur:
        if passages and cur_n < 0.25 * words and passages[-1][1] + cur_n <= 1.5 * words:
            prev, prev_n = passages.pop()
            passages.append((prev + cur, prev_n + cur_n))
        else:
            passages.append((cur, cur_n))
    return [" ".join(sents) for sents, _ in passages]
