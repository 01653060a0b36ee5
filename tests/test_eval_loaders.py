"""Benchmark loaders on tiny made-up files in each official format (tests/data/eval/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masksearch.errors import InputError
from masksearch.eval.datasets import DatasetSpec, column_order, detect_format, load_items

DATA = Path(__file__).parent / "data" / "eval"


def load(spec: str, **kw):
    return load_items(DatasetSpec.parse(spec.replace("@", str(DATA) + "/")), **kw)


def test_hotpotqa_official():
    items = load("hotpotqa=@hotpot_dev_distractor.json")
    assert [i.id for i in items] == [
        "5a8b57f25542995d1e6f1371",
        "5a8c7595554299585d9e36b6",
        "5a85ea095542994775f606a8",
    ]
    assert items[0].golden_answers == ["Dijon"] and items[0].dataset == "hotpotqa"
    assert items[0].metadata["type"] == "bridge" and items[0].metadata["level"] == "hard"
    assert items[1].golden_answers == ["yes"]
    assert "context" not in items[0].metadata  # paragraphs are not kept in memory


def test_fanoutqa_structured_answers():
    items = load("fanout=@fanout-final-dev.json")
    assert items[0].dataset == "fanoutqa"
    assert items[0].reference == {"Tenzing Norgay": 1914, "Edmund Hillary": 1919}
    assert items[0].golden_answers == ["Tenzing Norgay - 1914\nEdmund Hillary - 1919"]
    assert items[1].golden_answers == ["Peru\nColombia\nBrazil"]
    assert items[2].golden_answers == ["Buzz Aldrin"] and items[2].reference == "Buzz Aldrin"
    assert items[0].metadata == {"categories": ["People"], "n_evidence": 1}


def test_musique_streams_aliases_and_skips_unanswerable():
    items = load("musique=@musique_ans_v1.0_dev.jsonl")
    assert [i.id for i in items] == ["2hop__1_2", "2hop__3_4"]
    assert items[0].golden_answers == ["Vistula", "Vistula River", "Wisła"]
    assert items[0].metadata["hops"] == 2


def test_2wiki_adds_id_aliases_next_to_file():
    items = load("2wiki=@2wiki/dev.json")
    assert items[1].dataset == "2wikimultihopqa"
    assert items[1].golden_answers == [
        "Germany",
        "Federal Republic of Germany",
        "Deutschland",
        "German",
    ]
    assert items[0].golden_answers == ["John Roe"]
    assert items[0].metadata["evidences"][0] == ["Film X", "director", "Jane Roe"]


def test_bamboogle_csv_and_json(tmp_path):
    items = load("bamboogle=@bamboogle.csv")
    assert [(i.id, i.golden_answers) for i in items] == [
        ("bamboogle-0", ["Ohio"]),
        ("bamboogle-1", ["Khartoum"]),
    ]
    assert items[1].question.startswith(
        "What is the capital of the country where Khartoum is, by name?"
    )
    p = tmp_path / "bamboogle.json"
    p.write_text(json.dumps([{"Question": "Q1?", "Answer": "A1"}]), encoding="utf-8")
    assert [(i.question, i.golden_answers) for i in load_items(DatasetSpec("bamboogle", p))] == [
        ("Q1?", ["A1"])
    ]


def test_freshqa_sheet_export_with_preamble_and_split():
    items = load("freshqa=@freshqa.csv")
    assert [i.id for i in items] == ["0", "1", "2"]  # blank row skipped
    assert items[0].golden_answers == ["Neil Armstrong", "Neil Alden Armstrong"]
    assert (
        items[1].metadata["false_premise"] is True and items[0].metadata["false_premise"] is False
    )
    assert items[2].golden_answers == ["6,650 kilometres", "about 6650 km"]
    assert [i.id for i in load("freshqa:dev=@freshqa.csv")] == ["1"]
    assert [i.id for i in load("freshqa:TEST=@freshqa.csv")] == ["0", "2"]


def test_flashrag_detected_for_any_name(tmp_path):
    assert detect_format("hotpotqa", DATA / "flashrag_hotpotqa_dev.jsonl") == "flashrag"
    items = load("hotpotqa=@flashrag_hotpotqa_dev.jsonl")
    assert items[0].golden_answers == ["Ulm", "Ulm, Germany"] and items[0].metadata == {
        "type": "bridge"
    }
    nq = load_items(DatasetSpec.parse(f"nq={DATA / 'flashrag_hotpotqa_dev.jsonl'}"))
    assert nq[1].dataset == "nq" and nq[1].golden_answers == ["Guido van Rossum"]
    # a JSON-list FlashRAG file is detected too
    p = tmp_path / "test.json"
    p.write_text(
        json.dumps([{"id": "t0", "question": "Q?", "golden_answers": "A"}]), encoding="utf-8"
    )
    assert load_items(DatasetSpec("bamboogle", p))[0].golden_answers == ["A"]


def test_flashrag_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "dev.parquet"
    pq.write_table(
        pa.table(
            {"id": ["a", "b"], "question": ["Q1", "Q2"], "golden_answers": [["x", "y"], ["z"]]}
        ),
        p,
    )
    items = load_items(DatasetSpec("musique", p))
    assert [(i.id, i.golden_answers) for i in items] == [("a", ["x", "y"]), ("b", ["z"])]
    hf = tmp_path / "bamboogle.parquet"  # HF mirror layout: Question / Answer columns
    pq.write_table(pa.table({"Question": ["Q1?", "Q2?"], "Answer": ["A1", "A2"]}), hf)
    items = load_items(DatasetSpec("bamboogle", hf))
    assert [(i.id, i.question, i.golden_answers) for i in items] == [
        ("bamboogle-0", "Q1?", ["A1"]),
        ("bamboogle-1", "Q2?", ["A2"]),
    ]


def test_limit_and_column_order():
    assert len(load("hotpotqa=@hotpot_dev_distractor.json", limit=2)) == 2
    assert column_order(["nq", "freshqa", "hotpotqa", "2wikimultihopqa"]) == [
        "hotpotqa",
        "2wikimultihopqa",
        "freshqa",
        "nq",
    ]


@pytest.mark.parametrize(
    ("spec", "where", "field"),
    [
        ("hotpotqa=@bad/hotpot_missing_answer.json", None, "[1].answer"),
        ("musique=@bad/musique_bad_aliases.jsonl", 3, "answer_aliases"),
        ("hotpotqa=@bad/flashrag_broken.jsonl", 2, None),
        ("freshqa=@bad/freshqa_no_answer.csv", 3, "answer_0"),
        ("fanoutqa=@bad/fanout_bad_answer.json", None, "[0].answer[1]"),
    ],
)
def test_malformed_files_name_file_line_field(spec, where, field):
    with pytest.raises(InputError) as err:
        load(spec)
    e = err.value
    assert e.path and e.path.endswith(spec.split("@")[1])
    assert e.line == where and e.field == field
    assert Path(e.path).name in str(e)


def test_other_input_errors(tmp_path):
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "1", "question": "q", "golden_answers": ["a"]}\n' * 2, encoding="utf-8")
    with pytest.raises(InputError, match="duplicate question id '1'"):
        load_items(DatasetSpec("nq", dup))
    with pytest.raises(InputError, match="unknown dataset 'nq'"):
        load_items(DatasetSpec("nq", DATA / "hotpot_dev_distractor.json"))
    with pytest.raises(InputError, match="file not found"):
        load_items(DatasetSpec("hotpotqa", tmp_path / "missing.json"))
    with pytest.raises(InputError, match="only applies to freshqa"):
        load("hotpotqa:dev=@hotpot_dev_distractor.json")
    with pytest.raises(InputError, match="NAME=PATH"):
        DatasetSpec.parse("hotpotqa")
    bad_json = tmp_path / "hotpot.json"
    bad_json.write_text('[{"_id": "a",\n "question": }]', encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_items(DatasetSpec("hotpotqa", bad_json))
    assert err.value.line == 2
    no_header = tmp_path / "fresh.csv"
    no_header.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InputError, match="no header row"):
        load_items(DatasetSpec("freshqa", no_header))
    empty_q = tmp_path / "bb.csv"
    empty_q.write_text("Question,Answer\n,Ohio\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_items(DatasetSpec("bamboogle", empty_q))
    assert (err.value.line, err.value.field) == (2, "question")


# --- unclear inputs become one located error (issue 11) ------------------------------------


def test_binary_file_is_refused_by_name(tmp_path):
    png = tmp_path / "chart.json"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("Question,Answer\nCaf\xe9 owner?,Ren\xe9\n".encode("latin-1"))
    for spec, msg in ((f"hotpotqa={png}", "binary file"), (f"bamboogle={latin}", "not UTF-8")):
        with pytest.raises(InputError, match=msg) as err:
            load_items(DatasetSpec.parse(spec))
        assert err.value.path == spec.split("=")[1]


def test_bom_files_load(tmp_path):
    csv_bom = tmp_path / "bamboogle.csv"
    csv_bom.write_bytes(b"\xef\xbb\xbf" + (DATA / "bamboogle.csv").read_bytes())
    assert [i.golden_answers for i in load_items(DatasetSpec.parse(f"bamboogle={csv_bom}"))] == [
        ["Ohio"],
        ["Khartoum"],
    ]
    json_bom = tmp_path / "hotpot.json"
    json_bom.write_bytes(b"\xef\xbb\xbf" + (DATA / "hotpot_dev_distractor.json").read_bytes())
    assert len(load_items(DatasetSpec.parse(f"hotpotqa={json_bom}"))) == 3


@pytest.mark.parametrize(
    ("spec", "looks_like"),
    [
        ("bamboogle=@hotpot_dev_distractor.json", "HotpotQA"),
        ("hotpotqa=@2wiki/dev.json", "2Wiki"),
        ("2wiki=@hotpot_dev_distractor.json", "HotpotQA"),
        ("fanoutqa=@musique_ans_v1.0_dev.jsonl", "MuSiQue"),
        ("bamboogle=@freshqa.csv", "FreshQA"),
        ("musique=@hotpot_dev_distractor.json", "HotpotQA"),
    ],
)
def test_format_mismatch_is_named(spec, looks_like):
    with pytest.raises(InputError, match=f"looks like {looks_like}, not "):
        load(spec)


def test_2wiki_aliases_missing_is_said_and_can_be_pointed_at(tmp_path, caplog):
    data = tmp_path / "dev.json"
    data.write_bytes((DATA / "2wiki" / "dev.json").read_bytes())
    with caplog.at_level("WARNING"):
        items = load_items(DatasetSpec.parse(f"2wiki={data}"))
    assert items[1].golden_answers == ["Germany"]
    assert "no id_aliases.json" in caplog.text and "--aliases" in caplog.text
    items = load_items(
        DatasetSpec.parse(f"2wiki={data}"), aliases=DATA / "2wiki" / "id_aliases.json"
    )
    assert "Deutschland" in items[1].golden_answers
    with pytest.raises(InputError, match="only applies to 2Wiki"):
        load("hotpotqa=@hotpot_dev_distractor.json", aliases=DATA / "2wiki" / "id_aliases.json")


def test_limit_below_one_is_refused():
    for bad in (0, -1):
        with pytest.raises(InputError, match="at least 1") as err:
            load("hotpotqa=@hotpot_dev_distractor.json", limit=bad)
        assert err.value.field == "--limit"
