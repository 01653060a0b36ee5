"""Bad input for `generate`: corrupt lines, bad encodings, empty files, missing fields, huge
passages → InputError naming file/line/field (or skipped and counted with --skip-bad), and
nothing already in the store is lost."""

from __future__ import annotations

import json

import pytest

from masksearch.errors import InputError
from masksearch.graph import Context
from masksearch.graph.testing import KeywordRetriever
from masksearch.jsonl import SkipCounter
from masksearch.pipeline.inputs import MAX_FIELD_CHARS, iter_examples
from masksearch.pipeline.runner import RunSettings, run_generate
from masksearch.pipeline.testing import LatencyChatModel, team_respond
from masksearch.pipeline.testing import masked_row as row
from masksearch.resources import Resources
from masksearch.store.trajectories import TrajectoryStore
from masksearch.types import Passage


def write(path, lines: list) -> str:
    path.write_bytes(
        b"".join(
            (
                x
                if isinstance(x, bytes)
                else (json.dumps(x) if isinstance(x, dict) else x).encode("utf-8")
            )
            + b"\n"
            for x in lines
        )
    )
    return str(path)


CASES = [
    ("corrupt", ["{not json"], 2, None, "invalid JSON"),
    ("not_object", ["[1, 2]"], 2, None, "JSON object"),
    ("missing_question", [{"id": "x", "answers": ["a"]}], 2, "question", "non-empty"),
    ("missing_answers", [{"id": "x", "question": "q [mask]"}], 2, "answers", "missing"),
    ("bad_spans", [row(9, spans=[{"start": "a"}])], 2, "spans[0].start", "int"),
    ("answers_mismatch", [row(9, answers=["zzz"])], 2, "answers", "span texts"),
    ("huge_passage", [row(9, text="x" * (MAX_FIELD_CHARS + 1))], 2, "text", "too long"),
]


@pytest.mark.parametrize("name,bad,line,field,msg", CASES, ids=[c[0] for c in CASES])
def test_bad_line_is_located_or_skipped(tmp_path, name, bad, line, field, msg):
    path = write(tmp_path / f"{name}.jsonl", [row(0), *bad, row(1)])
    with pytest.raises(InputError) as ei:
        list(iter_examples(path))
    err = ei.value
    assert (err.path, err.line, err.field) == (path, line, field)
    assert msg in str(err) and path in str(err)
    counter = SkipCounter()
    assert [e.id for e in iter_examples(path, skip_bad=True, counter=counter)] == ["ex0", "ex1"]
    assert counter.skipped == 1


def test_bad_utf8_and_empty_file(tmp_path):
    path = write(
        tmp_path / "latin1.jsonl", [row(0), b'{"id": "x", "question": "caf\xe9 [mask]"}', row(1)]
    )
    with pytest.raises(InputError, match="UTF-8") as ei:
        list(iter_examples(path))
    assert ei.value.line == 2
    counter = SkipCounter()
    assert [e.id for e in iter_examples(path, skip_bad=True, counter=counter)] == ["ex0", "ex1"]
    assert counter.skipped == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="empty"):
        list(iter_examples(empty))
    with pytest.raises(InputError, match="not found"):
        list(iter_examples(tmp_path / "missing.jsonl"))


@pytest.fixture
def team() -> Resources:
    return Resources(
        models={"fake:team": LatencyChatModel(respond=team_respond(lambda q: q.split()[1]))},
        retrievers={"mem:x": KeywordRetriever([Passage("p", "T", "Item 1 is about number 1.")])},
    )


def ctx() -> Context:
    return Context(
        planner_model="fake:team",
        rewriter_model="fake:team",
        observer_model="fake:team",
        retriever="mem:x",
        max_turns=1,
    )


def test_generate_stops_on_bad_line_keeping_the_store(tmp_path, team, capsys):
    store = tmp_path / "t.sqlite"
    good = write(tmp_path / "good.jsonl", [row(i) for i in range(3)])
    assert (
        run_generate(good, store, ctx(), "memory", RunSettings(progress=False), resources=team) == 0
    )
    bad = write(tmp_path / "bad.jsonl", [row(3), row(4), "{oops", row(5)])
    with pytest.raises(InputError) as ei:
        run_generate(
            bad, store, ctx(), "memory", RunSettings(concurrency=2, progress=False), resources=team
        )
    assert ei.value.line == 3 and ei.value.path == bad
    with TrajectoryStore(store) as st:
        assert st.ids() == {
            "ex0",
            "ex1",
            "ex2",
            "ex3",
            "ex4",
        }  # earlier rows kept, lines before the error done
    assert "done 2" in capsys.readouterr().err  # the summary is still printed

    assert (
        run_generate(
            bad, store, ctx(), "memory", RunSettings(skip_bad=True, progress=False), resources=team
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "1 bad input lines" in err and "bad.jsonl:3" in err
    with TrajectoryStore(store) as st:
        assert len(st) == 6
