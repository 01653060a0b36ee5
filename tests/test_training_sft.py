"""SFT: loss labels only on assistant tokens (shown on real chat-template tokens) and a CPU smoke run."""

from __future__ import annotations

import pytest

from masksearch.errors import ConfigError
from masksearch.training.chat import IGNORE_INDEX, ChatRenderer
from masksearch.training.data import record_messages
from masksearch.training.smoke import example_record, offline_tokenizer, tiny_model


@pytest.fixture(scope="session")
def tok():
    return offline_tokenizer()


def _label_text(tok, row):
    return tok.decode(
        [i for i, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != IGNORE_INDEX]
    )


def test_labels_cover_exactly_the_assistant_turns(tok):
    rec = example_record()
    msgs = record_messages(rec)
    r = ChatRenderer(tok)
    row = r.tokenize_conversation(msgs)
    assert len(row["input_ids"]) == len(row["labels"])
    # token ids spell the chat-template rendering exactly (no retokenisation drift)
    assert tok.decode(row["input_ids"]) == r.render(msgs)
    labelled = _label_text(tok, row)
    for m in msgs:
        if m["role"] == "assistant":
            assert m["content"] in labelled
        else:
            assert m["content"] not in labelled
    assert "<information>" not in labelled and "Doc 1(Title:" not in labelled
    assert "search agent" not in labelled  # system prompt
    assert "[mask] Tower" not in labelled  # user question
    assert labelled.count(tok.eos_token) == 3  # each assistant turn learns to end itself
    assert "<|im_start|>" not in labelled
    # frozen tokens are exactly the non-assistant text
    frozen = tok.decode(
        [i for i, lab in zip(row["input_ids"], row["labels"], strict=True) if lab == IGNORE_INDEX]
    )
    assert "<information>" in frozen and "[mask] Tower" in frozen


def test_tool_role_mapping_and_truncation(tok):
    msgs = record_messages(example_record())
    assert "<|im_start|>user\n<information>" in ChatRenderer(tok).render(
        msgs
    )  # as the graph sends it
    assert "<|im_start|>tool\n<information>" in ChatRenderer(tok, tool_role="tool").render(msgs)
    r = ChatRenderer(tok)
    row = r.tokenize_conversation(msgs, max_length=50)
    assert len(row["input_ids"]) == 50


def test_non_prefix_preserving_template_is_rejected(tok):
    import copy

    t = copy.copy(tok)
    # a template that drops <think> from earlier assistant turns (like Qwen3's) breaks the prefix rule
    t.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
        "{{ '<|im_start|>assistant\n' + m['content'].split('</think>')[-1] + '<|im_end|>\n' }}"
        "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    with pytest.raises(ConfigError, match="prefix-preserving"):
        ChatRenderer(t).tokenize_conversation(record_messages(example_record()))


def test_sft_smoke_run_changes_weights(tok, tmp_path, caplog):
    import logging

    from masksearch.training.config import build_settings
    from masksearch.training.sft import train_sft

    model = tiny_model(tok)
    w = model.model.layers[0].self_attn.q_proj.weight
    before = w.detach().clone()
    settings = build_settings(
        "sft",
        {
            "model": "tiny",
            "output_dir": str(tmp_path / "sft"),
            "max_steps": 2,
            "learning_rate": 1e-3,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1,
            "max_length": 512,
            "warmup_steps": 0,
            "logging_steps": 1,
            "save_strategy": "no",
            "disable_tqdm": True,
            "curriculum": {"enabled": True},
        },
    )
    with caplog.at_level(logging.INFO, logger="masksearch.training.plan"):
        stats = train_sft(
            settings, records=[example_record(i) for i in range(4)], model=model, tokenizer=tok
        )
    assert stats["global_step"] == 2 == stats["planned_steps"] and stats["examples"] == 4
    # said before training: the steps, tokens per step, warm-up, and the < 10 steps warning
    said = [r.getMessage() for r in caplog.records if r.name == "masksearch.training.plan"]
    assert said[0].startswith("sft plan: 2 optimizer steps") and "tokens per step" in said[0]
    assert any("only 2 optimizer step(s)" in m for m in said)
    assert stats["train_loss"] > 0
    assert not w.detach().equal(before)
    assert (tmp_path / "sft" / "config.json").exists()
