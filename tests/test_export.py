"""Exporters: TRL conversational, LLaMA-Factory ShareGPT (+dataset_info), Search-R1/veRL parquet."""

from __future__ import annotations

import json

import pytest

from masksearch.errors import InputError
from masksearch.jsonl import read_jsonl, write_jsonl
from masksearch.prompts import agent_system_prompt
from masksearch.training.export import export, to_sharegpt, to_trl, to_verl
from masksearch.training.smoke import example_record


@pytest.fixture
def records_path(tmp_path):
    p = tmp_path / "records.jsonl"
    write_jsonl(p, [example_record(0), example_record(1, accepted=False), example_record(2)])
    return p


def test_trl_tags_keep_student_text_and_tools(records_path, tmp_path):
    out = tmp_path / "trl.jsonl"
    assert export(records_path, "trl", out) == 2  # accepted only by default
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["ex0", "ex2"]
    msgs = rows[0]["messages"]
    assert msgs[0] == {"role": "system", "content": agent_system_prompt()}
    assert [m["role"] for m in msgs] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert msgs[3]["name"] == "search" and msgs[3]["content"].startswith("<information>")
    assert rows[0]["tools"][0]["function"]["name"] == "search"
    assert export(records_path, "trl", out, accepted_only=False) == 3


def test_trl_tool_calls_style():
    row = to_trl(example_record(), style="tool_calls")
    a = row["messages"][2]
    assert a["content"] == "<think>Which tower in Paris?</think>"
    assert a["tool_calls"][0]["function"] == {
        "name": "search",
        "arguments": {"queries": ["famous tower Paris"]},
    }
    assert "tool_calls" not in row["messages"][-1]  # the answer turn stays text


def test_sharegpt_roles_system_tools_and_dataset_info(records_path, tmp_path):
    out = tmp_path / "lf" / "masksearch_sharegpt.json"
    assert export(records_path, "sharegpt", out) == 2
    rows = json.loads(out.read_text())
    conv = rows[0]["conversations"]
    assert [c["from"] for c in conv] == ["human", "gpt", "observation", "gpt", "observation", "gpt"]
    assert rows[0]["system"] == agent_system_prompt()
    assert json.loads(rows[0]["tools"])[0]["name"] == "search"
    # LLaMA-Factory rule: odd positions human/observation, even positions gpt/function_call
    assert all(c["from"] in ("human", "observation") for c in conv[0::2])
    assert all(c["from"] in ("gpt", "function_call") for c in conv[1::2])
    info = json.loads((out.parent / "dataset_info.json").read_text())
    assert info["masksearch"]["file_name"] == "masksearch_sharegpt.json"
    assert info["masksearch"]["columns"]["tools"] == "tools"
    fc = to_sharegpt(example_record(), style="tool_calls")["conversations"]
    assert fc[1]["from"] == "function_call"
    assert json.loads(fc[1]["value"]) == {
        "name": "search",
        "arguments": {"queries": ["famous tower Paris"]},
    }


def test_verl_parquet_matches_search_r1_schema(tmp_path):
    import pyarrow.parquet as pq

    masked = tmp_path / "masked.jsonl"
    write_jsonl(
        masked,
        [
            {
                "id": "m1",
                "question": "The [mask] Tower is in Paris.",
                "answers": ["Eiffel"],
                "task": "ramp",
                "spans": [{"start": 4, "end": 10, "text": "Eiffel", "label": "ENTITY"}],
                "k": 1,
            },
            {"id": "q1", "question": "capital of france", "golden_answers": ["Paris"]},
        ],
    )
    out = tmp_path / "train.parquet"
    assert export(masked, "verl", out) == 2
    rows = pq.read_table(out).to_pylist()
    r = rows[0]
    assert r["data_source"] == "masksearch_ramp" and r["ability"] == "fact-reasoning"
    assert r["reward_model"] == {"style": "rule", "ground_truth": {"target": ["Eiffel"]}}
    assert (
        r["extra_info"]["split"] == "train"
        and r["extra_info"]["index"] == 0
        and r["extra_info"]["k"] == 1
    )
    assert len(r["prompt"]) == 1 and r["prompt"][0]["role"] == "user"
    assert agent_system_prompt() in r["prompt"][0]["content"]
    assert "The [mask] Tower is in Paris." in r["prompt"][0]["content"]
    assert rows[1]["data_source"] == "masksearch_qa" and rows[1]["extra_info"]["k"] == 0
    two = to_verl({"question": "q", "answers": ["a"]}, 5, system_in_user=False)
    assert [m["role"] for m in two["prompt"]] == ["system", "user"]


def test_bad_inputs_are_located(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        export(empty, "trl", tmp_path / "o.jsonl")
    bad = tmp_path / "bad.jsonl"
    rec = example_record()
    del rec["answers"]
    bad.write_text(json.dumps(example_record()) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(InputError) as e:
        export(bad, "trl", tmp_path / "o.jsonl")
    assert e.value.line == 2 and e.value.field == "answers"
    rejected = tmp_path / "rej.jsonl"
    write_jsonl(rejected, [example_record(accepted=False)])
    with pytest.raises(InputError, match="no accepted records"):
        export(rejected, "sharegpt", tmp_path / "o.json")
    with pytest.raises(InputError, match="unknown format"):
        export(rejected, "alpaca", tmp_path / "o.json", accepted_only=False)


def test_export_reads_the_sqlite_store(tmp_path):
    from masksearch.pipeline.store import TrajectoryStore

    db = tmp_path / "traj.sqlite"
    with TrajectoryStore(db) as st:
        st.put(example_record(0))
        st.put(example_record(1, accepted=False))
    assert export(db, "trl", tmp_path / "o.jsonl") == 1
    assert export(db, "verl", tmp_path / "o.parquet", accepted_only=False) == 2


def test_records_without_a_trainable_view_are_skipped(tmp_path, caplog):
    from masksearch.training.data import load_training_records

    cut = example_record(1)
    cut["messages"] = cut["messages"][:4]  # ends on a tool turn (e.g. the run hit max_turns)
    p = tmp_path / "r.jsonl"
    write_jsonl(p, [example_record(0), cut])
    assert [r["id"] for r in load_training_records(p)] == ["ex0"]
    assert "skipped 1 record" in caplog.text
    write_jsonl(p, [cut])
    with pytest.raises(InputError, match="last turn must be the assistant"):
        load_training_records(p)
