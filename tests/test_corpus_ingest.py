"""Corpus ingestion: the three formats, .gz, format detection, located errors, --skip-bad."""

from __future__ import annotations

import gzip
import json

import pytest

from masksearch.corpus import detect_format, iter_passages
from masksearch.errors import InputError
from masksearch.jsonl import SkipCounter

PARA = (
    "Gustave Eiffel was a French civil engineer. His company designed and built the tower. "
    "It was finished in 1889 for the World's Fair."
)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_flashrag_keeps_ids_and_unquotes_titles(tmp_path, tiny_corpus_path):
    passages = list(iter_passages(tiny_corpus_path))
    assert len(passages) == 24
    assert passages[0].id == "0" and passages[0].title == "Eiffel Tower"
    assert passages[0].text.startswith("The Eiffel Tower is a wrought-iron")
    quoted = _write_jsonl(tmp_path / "sr1.jsonl", [{"id": 7, "contents": '"Paul Walker"\n' + PARA}])
    (p,) = list(iter_passages(quoted))
    assert (p.id, p.title, p.text) == ("7", "Paul Walker", PARA)
    assert p.contents == "Paul Walker\n" + PARA


def test_wikiextractor_splits_and_filters(tmp_path):
    text = "\n".join(
        [
            "Eiffel",
            "",
            PARA,
            "History",
            "* a list item that is junk here",
            "{| class=wikitable",
            "Works include:",
            "| 1 | 2 | 3 |",
            PARA,
        ]
    )
    path = _write_jsonl(
        tmp_path / "wiki.json", [{"id": "12", "url": "u", "title": "Eiffel", "text": text}]
    )
    assert detect_format(path) == "wikiextractor"
    passages = list(iter_passages(path, words_per_passage=30))
    assert [p.id for p in passages] == ["12#0", "12#1"]
    assert all(p.title == "Eiffel" for p in passages)
    joined = " ".join(p.text for p in passages)
    assert joined == f"{PARA} {PARA}"
    for bad in ("list item", "wikitable", "include", "History"):
        assert bad not in joined


def test_wikiextractor_output_directory(tmp_path):
    out = tmp_path / "extracted"
    (out / "AA").mkdir(parents=True)
    (out / "AB").mkdir()
    _write_jsonl(out / "AA" / "wiki_00", [{"id": "1", "url": "u", "title": "One", "text": PARA}])
    _write_jsonl(out / "AA" / "wiki_01", [{"id": "2", "url": "u", "title": "Two", "text": PARA}])
    with gzip.open(out / "AB" / "wiki_00.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "3", "url": "u", "title": "Three", "text": PARA}) + "\n")
    assert detect_format(out) == "wikiextractor"
    assert [p.id for p in iter_passages(out)] == ["1#0", "2#0", "3#0"]


def test_textdir_with_gz_and_disambiguated_titles(tmp_path):
    root = tmp_path / "wiki-en"
    (root / "sub").mkdir(parents=True)
    (root / "Mercury (planet)").write_text(f"{PARA}\n\n{PARA}\n", encoding="utf-8")
    with gzip.open(root / "sub" / "Paris.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write(PARA + "\n")
    (root / ".hidden").write_text(PARA, encoding="utf-8")
    assert detect_format(root) == "textdir"
    passages = list(iter_passages(root))
    assert [(p.id, p.title) for p in passages] == [
        ("Mercury (planet)#0", "Mercury (planet)"),
        ("sub/Paris#0", "Paris"),
    ]
    assert passages[0].text == f"{PARA} {PARA}"


def test_gzip_jsonl_and_explicit_format(tmp_path, tiny_corpus_path):
    gz = tmp_path / "corpus.jsonl.gz"
    gz.write_bytes(gzip.compress(tiny_corpus_path.read_bytes()))
    assert [p.id for p in iter_passages(gz, fmt="flashrag")] == [str(i) for i in range(24)]
    with pytest.raises(InputError, match="unknown corpus format"):
        list(iter_passages(gz, fmt="parquet"))


def test_stable_ids_across_runs(tmp_path):
    path = _write_jsonl(
        tmp_path / "w.jsonl", [{"id": "a", "title": "A", "text": (PARA + " ") * 12}]
    )
    first = [(p.id, p.text) for p in iter_passages(path, words_per_passage=50)]
    second = [(p.id, p.text) for p in iter_passages(path, words_per_passage=50)]
    assert first == second and len(first) > 1
    assert [i for i, _ in first] == [f"a#{n}" for n in range(len(first))]


def test_malformed_line_names_file_and_line(tmp_path, tiny_corpus_path):
    lines = tiny_corpus_path.read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join(lines[:2] + ['{"id": "x", "contents": ', lines[2]]) + "\n", encoding="utf-8"
    )
    with pytest.raises(InputError) as err:
        list(iter_passages(bad))
    assert err.value.path == str(bad) and err.value.line == 3
    assert f"{bad}:3" in str(err.value)


def test_wrong_field_type_names_field(tmp_path):
    path = _write_jsonl(
        tmp_path / "w.jsonl",
        [
            {"id": "1", "title": "T", "text": PARA},
            {"id": "2", "title": "T", "text": ["not", "str"]},
        ],
    )
    with pytest.raises(InputError) as err:
        list(iter_passages(path))
    assert (err.value.line, err.value.field) == (2, "text")
    missing = _write_jsonl(tmp_path / "f.jsonl", [{"id": "1", "contents": "T\nx"}, {"id": "2"}])
    with pytest.raises(InputError, match="field 'contents'"):
        list(iter_passages(missing))
    no_newline = _write_jsonl(tmp_path / "n.jsonl", [{"id": "1", "contents": "no title line"}])
    with pytest.raises(InputError, match=r"n\.jsonl:1: field 'contents'"):
        list(iter_passages(no_newline, fmt="flashrag"))


def test_skip_bad_counts(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "1", "contents": "A\n" + PARA}),
                "not json at all",
                json.dumps({"id": "2", "contents": 5}),
                json.dumps({"id": "3", "contents": "B\n" + PARA}),
                json.dumps(["a", "list"]),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    counter = SkipCounter()
    passages = list(iter_passages(path, fmt="flashrag", skip_bad=True, counter=counter))
    assert [p.id for p in passages] == ["1", "3"]
    assert counter.skipped == 3
    assert any(":2:" in e for e in counter.examples)


def test_textdir_bad_utf8_located_and_skippable(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "Good").write_text(PARA, encoding="utf-8")
    (root / "Broken").write_bytes(PARA.encode() + b"\n" + b"caf\xe9 au lait is nice today\n")
    with pytest.raises(InputError) as err:
        list(iter_passages(root))
    assert err.value.path.endswith("Broken") and err.value.line == 2
    counter = SkipCounter()
    assert [p.title for p in iter_passages(root, skip_bad=True, counter=counter)] == ["Good"]
    assert counter.skipped == 1


def test_detect_format_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        detect_format(tmp_path / "missing.jsonl")
    odd = _write_jsonl(tmp_path / "odd.jsonl", [{"question": "q"}])
    with pytest.raises(InputError, match="cannot detect format"):
        list(iter_passages(odd))


def test_iter_passages_is_lazy(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text(
        json.dumps({"id": "1", "contents": "A\n" + PARA}) + "\n" + "{broken\n", encoding="utf-8"
    )
    it = iter_passages(path, fmt="flashrag")
    assert next(it).id == "1"  # the bad line further down has not been read yet
    with pytest.raises(InputError):
        next(it)
