"""`masksearch train sft|rl`, `export`, `evolve` CLI: help, located input errors, a tiny end-to-end SFT run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from masksearch.cli import app
from masksearch.errors import ConfigError, InputError
from masksearch.jsonl import write_jsonl
from masksearch.training.config import load_settings, parse_overrides
from masksearch.training.smoke import example_record

runner = CliRunner()


def test_help_lists_commands():
    res = runner.invoke(app, ["train", "--help"])
    assert res.exit_code == 0 and "sft" in res.output and "rl" in res.output
    for cmd in (["export", "--help"], ["evolve", "--help"], ["train", "rl", "--help"]):
        assert runner.invoke(app, cmd).exit_code == 0


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "file not found"),
        ("", "empty"),
        ('{"id": "x"\n', "invalid JSON"),
    ],
)
def test_sft_dataset_errors_are_located(tmp_path, content, match):
    p = tmp_path / "recs.jsonl"
    if content is not None:
        p.write_text(content)
    res = runner.invoke(app, ["train", "sft", "--records", str(p), "--model", "unused"])
    assert isinstance(res.exception, InputError), res.output
    assert match in str(res.exception) and str(p) in str(res.exception)


def test_sft_malformed_record_names_line_and_field(tmp_path):
    p = tmp_path / "recs.jsonl"
    bad = example_record(1)
    bad["messages"][2]["role"] = "robot"
    write_jsonl(p, [example_record(0), bad])
    res = runner.invoke(app, ["train", "sft", "--records", str(p), "--model", "unused"])
    err = res.exception
    assert isinstance(err, InputError) and err.line == 2 and err.field == "messages[2].role"


def test_rl_bad_questions_file(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text(json.dumps({"id": "1", "question": "q?"}) + "\n")
    res = runner.invoke(
        app, ["train", "rl", "--records", str(p), "--model", "m", "--retriever", "bm25:x"]
    )
    assert isinstance(res.exception, InputError) and res.exception.field == "answers"


def test_config_loading_and_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: Qwen/Qwen2.5-3B-Instruct\nlearning_rate: 2.0e-5\nlora:\n  enabled: false\n"
    )
    s = load_settings(
        "sft", cfg, parse_overrides(["lora.enabled=true", "lora.r=8", "max_length=1024"])
    )
    assert s.args.learning_rate == 2e-5 and s.lora.enabled and s.lora.r == 8
    assert s.args.max_length == 1024  # a TRL SFTConfig key, validated by TRL
    with pytest.raises(ConfigError, match="unknown setting.*learnin_rate"):
        load_settings("sft", cfg, {"learnin_rate": 1})
    with pytest.raises(ConfigError, match="lora.*unknown setting|unknown setting.*rr"):
        load_settings("sft", cfg, {"lora": {"rr": 1}})
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["oops"])
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_settings("rl", tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="no model"):
        load_settings("rl", None, {})


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    """`--set learning_rate=5e-6` (the docs' own example) and `learning_rate: 1e-5` in a YAML
    file are floats, not the strings PyYAML's YAML 1.1 rules make of them (a string learning rate
    reached the optimizer and broke the first PPO step on the GPU machine)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: m\nlearning_rate: 1e-5\nppo:\n  critic_lr: 2E-5\n")
    s = load_settings("rl", cfg)
    assert s.args.learning_rate == 1e-5 and s.ppo.critic_lr == 2e-5
    s = load_settings("rl", cfg, parse_overrides(["learning_rate=5e-6", "warmup_steps=1e-1"]))
    assert isinstance(s.args.learning_rate, float) and s.args.learning_rate == 5e-6
    assert s.args.warmup_steps == 0.1
    assert parse_overrides(["run_name='1e-5'", "seed=3"]) == {"run_name": "1e-5", "seed": 3}


def test_shipped_configs_load():
    from pathlib import Path

    import masksearch.training as pkg

    configs = sorted((Path(pkg.__file__).parent / "configs").glob("*.yaml"))
    kinds = {"sft": 0, "rl": 0}
    for c in configs:
        kind = "sft" if c.name.startswith("sft") else "rl" if c.name.startswith("rl") else None
        if kind:
            s = load_settings(kind, c)
            kinds[kind] += 1
            assert "qwen2.5" in s.model.lower()
            if kind == "sft":
                assert type(s.args).__name__ == "SFTConfig" and not s.args.assistant_only_loss
            if kind == "rl" and s.algorithm == "grpo":
                from masksearch.training.grpo import grpo_args

                cfg = grpo_args(s)  # TRL validated batch/generation sizes when loading
                assert cfg.loss_type == "dapo" and cfg.epsilon_high == 0.28
                assert cfg.mask_truncated_completions and s.dapo.dynamic_sampling
                assert s.dapo.overlong_buffer > 0
    assert kinds["sft"] >= 3 and kinds["rl"] >= 3
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "qwen2.5-1.5b"
    sft, rl = load_settings("sft", recipe / "sft.yaml"), load_settings("rl", recipe / "rl.yaml")
    assert sft.args.max_length == 4096 and sft.resume_from_checkpoint is True
    assert rl.args.use_vllm and rl.args.vllm_mode == "colocate" and rl.dapo.dynamic_sampling
    assert rl.args.eval_strategy == "steps" and rl.args.reward_weights == [1.0, 0.0, 1.0]
    for ds in (Path(pkg.__file__).parent / "configs").glob("ds_zero*.json"):
        assert json.loads(ds.read_text())["zero_optimization"]["stage"] in (2, 3)


def test_checkpointing_key_follows_the_installed_transformers():
    """transformers renamed `gradient_checkpointing` to `activation_checkpointing` (5.24 keeps
    the old name as a deprecated alias); 5.17 knows only the old name. The shipped configs
    use the new name and must load on both sides of the rename (found on the GPU machine)."""
    from pathlib import Path

    import masksearch.training as pkg
    from masksearch.training.config import installed_names

    new = {"activation_checkpointing": True, "activation_checkpointing_kwargs": {"x": 1}, "lr": 1}
    old_only = {"gradient_checkpointing", "gradient_checkpointing_kwargs", "lr"}
    assert installed_names(new, old_only) == {
        "gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"x": 1},
        "lr": 1,
    }
    both = old_only | {"activation_checkpointing", "activation_checkpointing_kwargs"}
    assert installed_names(new, both) == new
    assert installed_names({"gradient_checkpointing": True}, {"activation_checkpointing"}) == {
        "activation_checkpointing": True
    }
    shipped = Path(pkg.__file__).parent / "configs" / "sft_qwen2.5-1.5b.yaml"
    assert load_settings("sft", shipped).args.gradient_checkpointing is True
    off = load_settings("sft", shipped, {"activation_checkpointing": False})
    assert off.args.gradient_checkpointing is False


def test_export_cli(tmp_path):
    p = tmp_path / "recs.jsonl"
    write_jsonl(p, [example_record(0), example_record(1, accepted=False)])
    res = runner.invoke(
        app, ["export", "--records", str(p), "--format", "trl", "--out", str(tmp_path / "o.jsonl")]
    )
    assert res.exit_code == 0, res.output
    assert "wrote 3 rows" in res.output  # one per assistant turn


def test_sft_cli_end_to_end_on_tiny_model(tmp_path):
    from masksearch.training.smoke import offline_tokenizer, tiny_model

    tok = offline_tokenizer()
    model_dir = tmp_path / "tiny"
    tiny_model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    recs = tmp_path / "recs.jsonl"
    write_jsonl(recs, [example_record(i) for i in range(2)])
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "train",
            "sft",
            "--records",
            str(recs),
            "--model",
            str(model_dir),
            "--output-dir",
            str(out),
            "--max-steps",
            "1",
            "--set",
            "max_length=256",
            "--set",
            "save_strategy=no",
            "--set",
            "disable_tqdm=true",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "SFT on 2 trajectories" in res.output and (out / "config.json").exists()


def test_rl_cli_end_to_end_with_a_bm25_index(tmp_path, tiny_corpus_path):
    """`train rl` wires config → questions → load_retriever(bm25:…) → GRPO/DAPO → saved policy."""
    from masksearch.retrievers.build import build_index
    from masksearch.training.smoke import offline_tokenizer, tiny_model

    build_index(tiny_corpus_path, tmp_path / "bm25", show_progress=False)
    tok = offline_tokenizer()
    model_dir = tmp_path / "tiny"
    tiny_model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    q = tmp_path / "q.jsonl"
    write_jsonl(
        q,
        [
            {
                "id": f"q{i}",
                "question": f"Who designed the tower? ({i})",
                "golden_answers": ["Eiffel"],
            }
            for i in range(2)
        ],
    )
    out = tmp_path / "rl"
    res = runner.invoke(
        app,
        [
            "train",
            "rl",
            "--records",
            str(q),
            "--model",
            str(model_dir),
            "--retriever",
            f"bm25:{tmp_path / 'bm25'}",
            "--output-dir",
            str(out),
            "--max-steps",
            "1",
            "--set",
            "num_generations=2",
            "--set",
            "per_device_train_batch_size=2",
            "--set",
            "max_turn_tokens=4",
            "--set",
            "max_completion_length=32",
            "--set",
            "save_strategy=no",
            "--set",
            "disable_tqdm=true",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "GRPO on 2 questions" in res.output and (out / "config.json").exists()
