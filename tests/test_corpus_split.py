"""Passage splitting and paragraph cleaning; the embedded default corpus."""

from __future__ import annotations

import json

from masksearch.corpus import iter_passages
from masksearch.corpus.default import default_corpus, wiki_summaries_file
from masksearch.corpus.split import clean_paragraphs, split_passages, split_sentences


def _sentence(i: int, n: int = 10) -> str:
    return " ".join([f"Word{i}"] + ["filler"] * (n - 2) + ["end."])


def test_sentences_are_never_cut_when_they_fit():
    para = " ".join(_sentence(i) for i in range(25))  # 250 words, 10 per sentence
    chunks = split_passages([para], words=100)
    assert [len(c.split()) for c in chunks] == [100, 100, 50]
    assert all(c.endswith("end.") for c in chunks)
    assert " ".join(chunks) == para


def test_paragraph_boundary_closes_a_full_passage():
    p1 = " ".join(_sentence(i) for i in range(9))  # 90 words >= 80% of 100
    p2 = " ".join(_sentence(i) for i in range(9, 12))
    chunks = split_passages([p1, p2], words=100)
    assert chunks == [p1, p2]


def test_short_tail_merges_and_long_sentence_is_cut():
    chunks = split_passages([" ".join(_sentence(i) for i in range(10)) + " Tail here."], words=100)
    assert len(chunks) == 1 and chunks[0].endswith("Tail here.")
    long = " ".join(f"w{i}" for i in range(250))
    pieces = split_passages([long], words=100)
    assert [len(p.split()) for p in pieces] == [100, 100, 50]


def test_split_sentences():
    assert split_sentences('He said "Hi." Then he left. Version 3.11 is out.') == [
        'He said "Hi."',
        "Then he left.",
        "Version 3.11 is out.",
    ]


def test_clean_paragraphs_keeps_prose_with_slashes():
    lines = [
        "Born on 1/2/1900 in Paris, he studied w/ masters of the craft.",
        "",
        "* item",
        "# numbered",
        "== Heading ==",
        "Early life",
        "Category: People",
        "Notable works include:",
        "1990 | 2.5 | 3.75 | 4.0 | 12.5 | 99",
        "  Leading   spaces   are   normalised here.  ",
    ]
    assert clean_paragraphs(lines) == [
        "Born on 1/2/1900 in Paris, he studied w/ masters of the craft.",
        "Leading spaces are normalised here.",
    ]


def test_default_corpus_builds_once(tmp_path):
    path = default_corpus(tmp_path)
    assert path.is_file() and path.parent.parent == tmp_path
    mtime = path.stat().st_mtime_ns
    assert default_corpus(tmp_path) == path and path.stat().st_mtime_ns == mtime
    with open(path, encoding="utf-8") as fh:
        first = json.loads(fh.readline())
    assert set(first) >= {"id", "contents"}
    if wiki_summaries_file() is not None:
        passages = {p.title: p for p in iter_passages(path)}
        assert len(passages) > 10_000 - 100
        assert "Gustave Eiffel" in passages["Eiffel Tower"].text
        assert (path.parent / "wiki_vital_en.LICENSE.txt").is_file()


def test_pydoc_fallback(tmp_path):
    path = default_corpus(tmp_path, source="pydoc")
    passages = list(iter_passages(path))
    assert len(passages) > 300
    titles = {p.title for p in passages}
    assert {"assignment", "for", "import"} <= titles
    assert all(5 <= len(p.text.split()) <= 200 for p in passages)
