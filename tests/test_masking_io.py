"""load_masked: RAMP, QA and FlashRAG QA records; located errors; skip_bad."""

from __future__ import annotations

import json

import pytest

from masksearch.errors import InputError
from masksearch.jsonl import SkipCounter
from masksearch.masking import MaskConfig, RuleSpanProposer, load_masked, mask_passages
from masksearch.masking.runner import iter_flashrag_jsonl


def write_lines(path, rows):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


@pytest.fixture
def ramp_rows(tiny_corpus_path):
    exs = list(
        mask_passages(
            list(iter_flashrag_jsonl(tiny_corpus_path))[:5],
            RuleSpanProposer(),
            MaskConfig(min_words=10),
        )
    )
    return [ex.to_dict() for ex in exs]


def test_roundtrip_ramp_records(tmp_path, ramp_rows):
    path = write_lines(tmp_path / "m.jsonl", ramp_rows)
    loaded = list(load_masked(path))
    assert [ex.to_dict() for ex in loaded] == ramp_rows


def test_qa_records_in_both_formats(tmp_path):
    path = write_lines(
        tmp_path / "qa.jsonl",
        [
            {
                "id": "q1",
                "question": "Who designed the tower?",
                "answers": ["Gustave Eiffel"],
                "task": "qa",
            },
            {
                "id": "test_7",
                "question": "Capital of Poland?",
                "golden_answers": ["Warsaw", "Warszawa"],
            },
            {"_id": "5a8b", "question": "Where was Einstein born?", "answer": "Ulm"},
            {"question": "No id here?", "golden_answers": "yes"},
        ],
    )
    exs = list(load_masked(path))
    assert [(e.id, e.task, e.answers, e.spans, e.k) for e in exs[:3]] == [
        ("q1", "qa", ["Gustave Eiffel"], [], 0),
        ("test_7", "qa", ["Warsaw", "Warszawa"], [], 0),
        ("5a8b", "qa", ["Ulm"], [], 0),
    ]
    assert exs[3].id.startswith("qa-") and exs[3].answers == ["yes"]
    assert list(load_masked(path))[3].id == exs[3].id  # stable


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda r: r.pop("question"), "question"),
        (lambda r: r.update(question=""), "question"),
        (lambda r: r.pop("id"), "id"),
        (lambda r: r.update(answers="Paris"), "answers"),
        (lambda r: r.update(answers=[]), "answers"),
        (lambda r: r.update(task="cloze"), "task"),
        (lambda r: r.update(spans="x"), "spans"),
        (lambda r: r["spans"][0].update(start="3"), "spans[0].start"),
        (lambda r: r["spans"][0].pop("text"), "spans[0].text"),
        (lambda r: r["spans"][0].update(start=r["spans"][0]["start"] + 1), "spans[0]"),
        (lambda r: r.update(answers=list(reversed(r["answers"])) + ["extra"]), "answers"),
        (lambda r: r.update(masked_text=r["masked_text"] + " [mask]"), "masked_text"),
        (lambda r: r.update(k=r["k"] + 1), "k"),
        (lambda r: r.update(question="no blank here"), "question"),
        (lambda r: r.update(title=["list"]), "title"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, ramp_rows, mutate, field):
    bad = json.loads(json.dumps(ramp_rows[1]))
    mutate(bad)
    path = write_lines(tmp_path / "bad.jsonl", [ramp_rows[0], bad, ramp_rows[2]])
    with pytest.raises(InputError) as info:
        list(load_masked(path))
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    assert f"{path}:2" in str(err) and field in str(err)


def test_ramp_needs_spans(tmp_path):
    path = write_lines(
        tmp_path / "r.jsonl",
        [{"id": "x", "question": "a [mask] b", "answers": ["c"], "task": "ramp"}],
    )
    with pytest.raises(InputError, match="spans"):
        list(load_masked(path))


def test_qa_with_spans_rejected(tmp_path):
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            {
                "id": "x",
                "question": "q?",
                "answers": ["a"],
                "task": "qa",
                "spans": [{"start": 0, "end": 1, "text": "q"}],
            }
        ],
    )
    with pytest.raises(InputError) as info:
        list(load_masked(path))
    assert info.value.field == "spans"


def test_skip_bad_counts_and_keeps_good(tmp_path, ramp_rows):
    path = write_lines(
        tmp_path / "mixed.jsonl", [ramp_rows[0], "{not json", {"question": "q"}, ramp_rows[1]]
    )
    counter = SkipCounter()
    good = list(load_masked(path, skip_bad=True, counter=counter))
    assert [e.id for e in good] == [ramp_rows[0]["id"], ramp_rows[1]["id"]]
    assert counter.skipped == 2
    assert any(":2:" in msg for msg in counter.examples) and any(
        ":3:" in msg for msg in counter.examples
    )


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        list(load_masked(tmp_path / "nope.jsonl"))
