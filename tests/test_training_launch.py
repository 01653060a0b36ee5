"""Launch configs and precision: the shipped accelerate/DeepSpeed configs build a plugin (and a
DeepSpeed engine) exactly as `accelerate launch` would; training steps fp32 master weights; a
2-process gloo run (slow) trains identically on both ranks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import masksearch.training as pkg
from masksearch.training.smoke import example_record, offline_tokenizer, tiny_model

CONFIGS = Path(pkg.__file__).parent / "configs"
ROOT = Path(__file__).resolve().parents[1]


def _launch_env(config: Path, monkeypatch, *extra: str) -> dict[str, str]:
    """The environment `accelerate launch --config_file <config>` gives the training processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args = launch_command_parser().parse_args(["--config_file", str(config), *extra, "train.py"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    # what `launch_command` does before handing over to the DeepSpeed launcher
    fields = list(defaults.deepspeed_config.keys()) if defaults else []
    if mp_from_config:
        fields.append("mixed_precision")
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)
    _, env = prepare_deepspeed_cmd_env(args)
    for key, value in env.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    return env


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_build_a_plugin_and_an_engine(stage, monkeypatch, tmp_path):
    pytest.importorskip("deepspeed")
    import torch
    from accelerate.utils import DeepSpeedPlugin

    monkeypatch.chdir(ROOT)  # the yaml names the DS json relative to the repo root
    env = _launch_env(
        CONFIGS / f"accelerate_zero{stage}.yaml",
        monkeypatch,
        "--num_machines",
        "2",
        "--machine_rank",
        "1",
        "--main_process_ip",
        "10.0.0.1",
        "--num_processes",
        "16",
    )
    assert "mixed_precision" not in env["ACCELERATE_CONFIG_DS_FIELDS"]
    plugin = DeepSpeedPlugin()  # from the env, as the trainer's Accelerator builds it
    assert plugin.zero_stage == stage
    assert plugin.deepspeed_config["bf16"]["enabled"] == "auto"
    # the trainer fills "auto" from its own arguments: bf16 on, the batch sizes, clipping
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    targs = TrainingArguments(
        output_dir=str(tmp_path),
        bf16=True,
        use_cpu=True,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        report_to="none",
    )
    ds = HfTrainerDeepSpeedConfig(json.loads(json.dumps(plugin.deepspeed_config)))
    ds.trainer_config_process(targs)
    config = ds.config
    assert config["bf16"]["enabled"] is True
    assert config["train_micro_batch_size_per_gpu"] == 2
    assert config["gradient_accumulation_steps"] == 4
    # a real DeepSpeed engine from that config (one CPU process, gloo): it holds fp32 master
    # weights for bf16 parameters
    import deepspeed

    for key in list(os.environ):
        if key.startswith("ACCELERATE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(29500 + stage))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    config.update(train_batch_size=8, zero_allow_untested_optimizer=True)
    for key in list(config["zero_optimization"]):
        if config["zero_optimization"][key] == "auto":
            config["zero_optimization"][key] = 1_000_000
    config["gradient_clipping"] = 1.0
    model = tiny_model(offline_tokenizer(), hidden=16, layers=1)
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-5),
        config=config,
    )
    assert engine.bfloat16_enabled() and engine.zero_optimization_stage() == stage
    assert next(engine.module.parameters()).dtype == torch.bfloat16


def test_ddp_config_keeps_bf16_autocast(monkeypatch):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(
        ["--config_file", str(CONFIGS / "accelerate_ddp.yaml"), "train.py"]
    )
    args, _, _ = _validate_launch_command(args)
    assert args.mixed_precision == "bf16" and args.multi_gpu


def _one_step_fraction(settings, kind: str, tmp_path) -> float:
    """Fraction of trained weight elements that one optimizer step changes."""
    import torch

    tok = offline_tokenizer()
    base = tmp_path / "base"  # saved and loaded: the load path is what is tested
    tiny_model(tok).save_pretrained(base)
    tok.save_pretrained(base)
    from masksearch.training.config import replace_settings
    from masksearch.training.modeling import load_model

    settings = replace_settings(settings, model=str(base))
    model = load_model(settings, lora=settings.lora)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    if kind == "sft":
        from masksearch.training.sft import train_sft

        train_sft(settings, records=[example_record(i) for i in range(2)], model=model, save=False)
    else:  # one PPO iteration = one optimizer step (batch <= mini-batch, 1 epoch)
        from masksearch.training.ppo import PPOAdapter
        from masksearch.training.rewards import build_reward_funcs
        from masksearch.training.rlsetup import build_rl_rows
        from masksearch.training.smoke import FakeRetriever

        class Scripted(PPOAdapter):  # even rows answer correctly: reward variance
            def _generate(self, contexts, max_new, stop):
                out, _ = super()._generate(contexts, max_new, stop)
                for i in range(0, len(out), 2):
                    ids = tok("<think>x</think>\n<answer>1889</answer>", add_special_tokens=False)
                    out[i] = ids["input_ids"] + [tok.eos_token_id]
                return out, None

        q = {"id": "q", "question": "When?", "answers": ["1889"], "task": "qa", "k": 0}
        adapter = Scripted(
            settings,
            model=model,
            tokenizer=tok,
            retriever=FakeRetriever(),
            reward_funcs=build_reward_funcs(["hybrid"]),
        )
        adapter.train(build_rl_rows([q, q], settings))
    changed = total = 0
    for n, p in model.named_parameters():
        if n in before:
            changed += int((p.detach() != before[n]).sum())
            total += p.numel()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    return changed / total


def test_one_step_in_the_shipped_sft_config_changes_nearly_every_weight(tmp_path):
    """fp32 master weights + bf16 autocast: at the shipped lr (1e-5) one step moves >= 99 % of the
    trained elements (stepping bf16 parameters moved ~15 %)."""
    from masksearch.training.config import load_settings

    settings = load_settings(
        "sft",
        CONFIGS / "sft_qwen2.5-1.5b.yaml",
        {
            "output_dir": str(tmp_path / "out"),
            "max_steps": 1,
            "max_length": 256,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1,
            "warmup_steps": 0,
            "use_cpu": True,
            "bf16": True,  # CPU bf16 autocast: the same mixed-precision path a GPU takes
            "save_strategy": "no",
            "report_to": "none",
            "disable_tqdm": True,
        },
    )
    assert settings.args.learning_rate == 1e-5
    assert _one_step_fraction(settings, "sft", tmp_path) >= 0.99


def test_one_step_in_the_shipped_ppo_config_changes_nearly_every_weight(tmp_path):
    """PPO (our loop on accelerate) at the shipped lr 1e-6: fp32 master weights with bf16
    autocast move >= 99 % of the policy's elements in one step (bf16 parameters moved ~2 %)."""
    from masksearch.training.config import load_settings

    settings = load_settings(
        "rl",
        CONFIGS / "rl_ppo_qwen2.5-3b.yaml",
        {
            "output_dir": str(tmp_path / "out"),
            "max_steps": 1,
            "per_device_train_batch_size": 2,
            "max_turns": 1,
            "max_turn_tokens": 8,
            "max_completion_length": 96,
            "use_cpu": True,
            "bf16": True,
            "save_strategy": "no",
            "report_to": "none",
            "disable_tqdm": True,
            "warmup_steps": 0,
            "activation_checkpointing": False,
        },
    )
    assert settings.args.learning_rate == 1e-6 and settings.algorithm == "ppo"
    assert _one_step_fraction(settings, "ppo", tmp_path) >= 0.99


def test_bf16_parameters_are_refused():
    import torch

    from masksearch.errors import ConfigError
    from masksearch.training.modeling import check_trainable_fp32

    model = tiny_model(offline_tokenizer(), hidden=16, layers=1).to(torch.bfloat16)
    with pytest.raises(ConfigError, match="fp32 master"):
        check_trainable_fp32(model)


def _run_launch(script: str, tmp_path: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ranks"
    out.mkdir()
    from masksearch.training.smoke import cpu_launch_command

    cmd = cpu_launch_command(2, 29611, "-m", "masksearch.training.smoke", script, str(tmp_path))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_two_process_gloo_run_trains_identically_on_both_ranks(kind, tmp_path):
    ranks = _run_launch(kind, tmp_path)
    assert len(ranks) == 2
    assert ranks[0]["world_size"] == 2 and ranks[0]["global_step"] >= 2
    assert ranks[0]["changed"] > 0.99 if kind == "sft" else ranks[0]["changed"] > 0
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
