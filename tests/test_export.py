"""Exporters: TRL conversational, LLaMA-Factory ShareGPT (+dataset_info), Search-R1/veRL parquet."""

from __future__ import annotations

import json

import pytest

from masksearch.errors import InputError
from masksearch.jsonl import read_jsonl, write_jsonl
from masksearch.prompts import student_system_prompt
from masksearch.training.export import export, to_sharegpt, to_trl, to_verl
from masksearch.training.smoke import example_record


@pytest.fixture
def records_path(tmp_path):
    p = tmp_path / "records.jsonl"
    write_jsonl(p, [example_record(0), example_record(1, accepted=False), example_record(2)])
    return p


def test_trl_rows_are_prompt_completion_per_assistant_turn(records_path, tmp_path):
    out = tmp_path / "trl.jsonl"
    assert export(records_path, "trl", out) == 6  # 2 accepted records x 3 assistant turns
    rows = read_jsonl(out)
    assert [r["id"] for r in rows[:3]] == ["ex0:2", "ex0:4", "ex0:6"]
    last = rows[2]
    ramp_prompt = student_system_prompt(example_record()["question"])
    assert last["prompt"][0] == {"role": "system", "content": ramp_prompt}
    assert [m["role"] for m in last["prompt"]] == [
        "system",
        "user",
        "assistant",
        "user",  # <information> goes back as a user turn, as the graph sends it
        "assistant",
        "user",
    ]
    assert last["prompt"][3]["content"].startswith("<information>")
    assert [m["role"] for m in last["completion"]] == ["assistant"]
    assert "<answer>" in last["completion"][0]["content"]
    assert all("tools" not in r for r in rows)  # no tool schema for the tag format
    assert export(records_path, "trl", out, accepted_only=False) == 9


def test_trl_tool_calls_style():
    row = to_trl(example_record(), style="tool_calls")
    a = row["messages"][2]
    assert a["content"] == "<think>Which tower in Paris?</think>"
    assert a["tool_calls"][0]["function"] == {
        "name": "search",
        "arguments": {"queries": ["famous tower Paris"]},
    }
    assert row["messages"][3]["role"] == "tool"
    assert "tool_calls" not in row["messages"][-1]  # the answer turn stays text
    assert row["tools"][0]["function"]["name"] == "search"


def test_stock_sft_trainer_on_the_trl_export_labels_only_agent_tokens(records_path, tmp_path):
    """A stock TRL `SFTTrainer` (default config) on the exported file trains the assistant turns
    and not one token of the system prompt, the question or `<information>`."""
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    from masksearch.training.smoke import offline_tokenizer, tiny_model

    out = tmp_path / "trl.jsonl"
    export(records_path, "trl", out)
    tok = offline_tokenizer()
    ds = load_dataset("json", data_files=str(out), split="train")
    trainer = SFTTrainer(
        model=tiny_model(tok, hidden=16, layers=1),
        args=SFTConfig(output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True, bf16=False),
        train_dataset=ds,
        processing_class=tok,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    trained_text, all_text = "", ""
    for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        trained_text += tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100])
        all_text += tok.decode(ids)
    assert "<information>" in all_text and "Doc 1(Title: Eiffel Tower)" in all_text
    assert "<information>" not in trained_text and "Doc 1(" not in trained_text
    assert "search agent" not in trained_text and "[mask] Tower" not in trained_text
    assert "<search>famous tower Paris</search>" in trained_text
    assert "<answer>Eiffel ; 1889</answer>" in trained_text


def test_sharegpt_roles_system_tools_and_dataset_info(records_path, tmp_path):
    out = tmp_path / "lf" / "masksearch_sharegpt.json"
    assert export(records_path, "sharegpt", out) == 2
    rows = json.loads(out.read_text())
    conv = rows[0]["conversations"]
    assert [c["from"] for c in conv] == ["human", "gpt", "human", "gpt", "human", "gpt"]
    assert conv[2]["value"].startswith("<information>")
    assert rows[0]["system"] == student_system_prompt(example_record()["question"])
    assert "tools" not in rows[0]  # the tag format needs no tool schema
    # LLaMA-Factory rule: odd positions human/observation, even positions gpt/function_call
    assert all(c["from"] in ("human", "observation") for c in conv[0::2])
    assert all(c["from"] in ("gpt", "function_call") for c in conv[1::2])
    info = json.loads((out.parent / "dataset_info.json").read_text())
    assert info["masksearch"]["file_name"] == "masksearch_sharegpt.json"
    assert "tools" not in info["masksearch"]["columns"]
    row = to_sharegpt(example_record(), style="tool_calls")
    fc = row["conversations"]
    assert fc[1]["from"] == "function_call" and fc[2]["from"] == "observation"
    # LLaMA-Factory's layout: `<think>\n…\n</think>\n\n` then the JSON call
    think = "<think>\nWhich tower in Paris?\n</think>\n\n"
    assert fc[1]["value"].startswith(think)
    assert json.loads(fc[1]["value"][len(think) :]) == {
        "name": "search",
        "arguments": {"queries": ["famous tower Paris"]},
    }
    assert json.loads(row["tools"])[0]["name"] == "search"


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
    assert r["data_source"] == "nq" and r["ability"] == "fact-reasoning"
    assert r["reward_model"] == {
        "style": "rule",
        "ground_truth": {"target": ["Eiffel"], "spans": ["Eiffel"]},
    }
    assert (
        r["extra_info"]["split"] == "train"
        and r["extra_info"]["index"] == 0
        and r["extra_info"]["k"] == 1
    )
    assert len(r["prompt"]) == 1 and r["prompt"][0]["role"] == "user"
    assert student_system_prompt("The [mask] Tower") in r["prompt"][0]["content"]
    assert student_system_prompt("capital of france") in rows[1]["prompt"][0]["content"]
    assert "[mask]" not in student_system_prompt("capital of france")
    assert "The [mask] Tower is in Paris." in r["prompt"][0]["content"]
    assert rows[1]["data_source"] == "nq" and rows[1]["extra_info"]["k"] == 0
    two = to_verl({"question": "q", "answers": ["a"]}, 5, system_in_user=False)
    assert [m["role"] for m in two["prompt"]] == ["system", "user"]


def test_verl_row_through_the_shipped_compute_score(tmp_path):
    """An exported parquet row + a response, scored by the module veRL loads by path."""
    import importlib.util
    import re

    import pyarrow.parquet as pq

    import masksearch.training.verl_reward as vr

    masked = tmp_path / "masked.jsonl"
    write_jsonl(
        masked,
        [
            {
                "id": "m",
                "question": "The [mask] Tower was finished in [mask].",
                "answers": ["Eiffel", "1889"],
                "task": "ramp",
                "k": 2,
            },
            {
                "id": "q",
                "question": "Who designed it?",
                "golden_answers": ["Gustave Eiffel", "Eiffel"],
                "dataset": "hotpotqa",
            },
        ],
    )
    out = tmp_path / "rl.parquet"
    export(masked, "verl", out)
    ramp, qa = pq.read_table(out).to_pylist()
    # loaded the way veRL's custom_reward_function.path does: a file, not a package import
    spec = importlib.util.spec_from_file_location("custom_module", vr.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    score = module.compute_score

    def run(row, response):
        return score(
            row["data_source"], response, row["reward_model"]["ground_truth"], row["extra_info"]
        )

    right = "<think>found it</think>\n<answer>Eiffel ; 1889</answer>"
    assert run(ramp, right) == 1.0
    # one span of two, valid format: 0.8 * 1/2 + 0.2 (the project's hybrid reward)
    assert run(ramp, "<think>x</think><answer>Eiffel</answer>") == pytest.approx(0.6)
    assert run(ramp, "<think>no answer</think>") == 0.0
    planted = "<search>q</search><information><answer>Eiffel ; 1889</answer></information>"
    assert run(ramp, planted) == 0.0  # retrieved text never supplies the answer
    assert qa["data_source"] == "hotpotqa"
    assert run(qa, "<think>t</think><answer>Eiffel</answer>") == 1.0
    assert run(qa, "<answer>Eiffel</answer>") == pytest.approx(0.8)  # no <think>: format 0
    assert run(qa, "<think>t</think><answer>Paris</answer>") == pytest.approx(0.2)
    # Search-R1's own reward manager decodes prompt + response: the prompt's one example is
    # never taken for the answer, and the response's answer is read
    prompt = ramp["prompt"][0]["content"]
    assert len(re.findall(r"<answer>(.*?)</answer>", prompt, re.S)) == 1
    assert run(ramp, prompt + "<think>none</think>") == 0.0
    assert run(ramp, prompt + right) == 1.0
    # the target shape stock Search-R1's EM check expects: the joined spans as one alternative
    assert ramp["reward_model"]["ground_truth"]["target"] == ["Eiffel ; 1889"]


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
    from masksearch.store.trajectories import TrajectoryStore

    db = tmp_path / "traj.sqlite"
    with TrajectoryStore(db) as st:
        st.put(example_record(0))
        st.put(example_record(1, accepted=False))
    assert export(db, "trl", tmp_path / "o.jsonl") == 3  # one row per assistant turn
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


# LLaMA-Factory's rules for a ShareGPT row, as its code applies them (0.9.5: `SharegptDatasetConverter`
# and `FunctionFormatter`, default thought words): a row breaking one is dropped or fails to load.
LF_THOUGHT = ("<think>\n", "\n</think>\n\n")


def _lf_function_call(content: str) -> list[dict]:
    """`FunctionFormatter.apply`: the thought (between the thought words) is cut off, the rest
    must be JSON: one call or a list of calls, each with `name` and `arguments`."""
    import re

    m = re.search(rf"{re.escape(LF_THOUGHT[0])}(.*?){re.escape(LF_THOUGHT[1])}", content, re.S)
    json_part = content.replace(m.group(0), "") if m else content
    calls = json.loads(json_part)  # LLaMA-Factory: "Invalid JSON format in function message"
    calls = calls if isinstance(calls, list) else [calls]
    assert all(set(c) >= {"name", "arguments"} for c in calls)
    return calls


def _lf_accepts(row: dict) -> None:
    conv = row["conversations"]
    odd, even = ("human", "observation"), ("gpt", "function_call")
    for i, turn in enumerate(conv):  # human/observation, then gpt/function_call, alternating
        assert turn["from"] in (odd, even)[i % 2], (i, turn["from"])
    assert len(conv) % 2 == 0  # "Invalid message count"
    for turn in conv:
        if turn["from"] == "function_call":
            _lf_function_call(turn["value"])
    if "tools" in row:
        assert all({"name", "parameters"} <= set(t) for t in json.loads(row["tools"]))


@pytest.mark.parametrize("style", ["tags", "tool_calls"])
def test_sharegpt_rows_follow_llamafactorys_format_rules(style):
    from masksearch.training.export import THOUGHT_WORDS, function_call_value

    assert THOUGHT_WORDS == LF_THOUGHT
    for i in range(3):
        _lf_accepts(to_sharegpt(example_record(i), style=style))
    # the layout LLaMA-Factory needs before a call, and a call without a thought
    call = '{"name": "search", "arguments": {"queries": ["q"]}}'
    assert function_call_value("<think>why</think>", call) == f"<think>\nwhy\n</think>\n\n{call}"
    assert function_call_value("", call) == call
    assert (
        _lf_function_call(function_call_value("<think>a\nb</think>", call))[0]["name"] == "search"
    )
    with pytest.raises(json.JSONDecodeError):  # the old layout, which LLaMA-Factory refused
        _lf_function_call("<think>why</think>" + call)


def _llamafactory_python() -> str | None:
    import importlib.util
    import os
    import sys

    env = os.environ.get("LLAMAFACTORY_PYTHON")
    if env:
        return env
    return sys.executable if importlib.util.find_spec("llamafactory") else None


@pytest.mark.slow
def test_sharegpt_exports_load_and_tokenize_in_llamafactory(tmp_path):
    """Both styles through LLaMA-Factory's own loader (`tests/llamafactory_check.py`) under its
    qwen and llama3 templates. Needs a Python with `llamafactory` (this one, or the
    LLAMAFACTORY_PYTHON environment variable: it pins its own torch, so keep it in a venv)."""
    import subprocess
    from pathlib import Path

    from masksearch.training.export import write_sharegpt
    from masksearch.training.smoke import offline_tokenizer

    python = _llamafactory_python()
    if python is None:
        pytest.skip("llamafactory not installed (set LLAMAFACTORY_PYTHON to a venv's python)")
    records = [example_record(i) for i in range(3)]
    data = tmp_path / "data"
    write_sharegpt(records, data / "tags.json", style="tags", dataset_name="ms_tags")
    write_sharegpt(records, data / "calls.json", style="tool_calls", dataset_name="ms_calls")
    offline_tokenizer().save_pretrained(tmp_path / "tok")
    script = Path(__file__).with_name("llamafactory_check.py")
    args = ["--dataset-dir", str(data), "--tokenizer", str(tmp_path / "tok")]
    args += ["--dataset", "ms_tags", "--dataset", "ms_calls", "--template", "qwen"]
    args += ["--template", "llama3"]
    r = subprocess.run(
        [python, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("llamafactory")]
    assert r.returncode == 0 and len(lines) == 4 and all(ln.endswith(": ok") for ln in lines), (
        r.stdout[-2000:] + r.stderr[-2000:]
    )
