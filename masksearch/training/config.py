"""Training configuration: YAML files → typed dataclasses, with `key=value` command-line overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from masksearch.errors import ConfigError, InputError


@dataclass
class LoraSettings:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


@dataclass
class CurriculumSettings:
    enabled: bool = False
    stages: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    mode: str = "strict"  # strict: stage s trains on k == s; cumulative: k <= s
    shuffle_within_stage: bool = True


@dataclass
class ModelSettings:
    model: str = ""  # hub id or local directory
    tokenizer: str | None = None  # defaults to `model`
    gguf_file: str | None = None  # load weights/tokenizer from a GGUF file inside `model`
    chat_template: str | None = None  # override the tokenizer's template (Jinja string or file)
    tool_role: str = (
        "user"  # role tool turns get in the chat template; "user" = what the graph sends
    )
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    attn_implementation: str | None = None  # e.g. flash_attention_2, sdpa


@dataclass
class SFTSettings(ModelSettings):
    records: str = ""
    accepted_only: bool = True
    output_dir: str = "runs/sft"
    max_length: int = 4096
    learning_rate: float = 1e-5
    num_train_epochs: float = 2.0
    max_steps: int = -1
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 16
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    seed: int = 42
    report_to: str = "none"
    lora: LoraSettings = field(default_factory=LoraSettings)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    trainer_args: dict[str, Any] = field(default_factory=dict)  # passed through to SFTConfig


@dataclass
class RLSettings(ModelSettings):
    algorithm: str = "grpo"  # grpo | ppo
    questions: str = ""  # masked data / FlashRAG QA JSONL, or trajectory records
    accepted_only: bool = False
    limit: int | None = None
    output_dir: str = "runs/rl"
    retriever: str = ""  # load_retriever spec, e.g. bm25:indexes/wiki
    topk: int = 3
    max_passages: int | None = (
        None  # cap after merging a turn's queries (None = 2 * topk, as the graph)
    )
    max_turns: int = 4
    max_turn_tokens: int = 500  # per assistant turn (Search-R1 max_response_length)
    max_obs_tokens: int = 500  # per <information> block (Search-R1 max_obs_length)
    max_completion_length: int = 2048  # whole multi-turn completion, tool tokens included
    temperature: float = 1.0
    top_p: float = 1.0
    num_generations: int = 5
    per_device_train_batch_size: int = 5
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-6
    warmup_ratio: float = 0.285
    lr_scheduler_type: str = "constant_with_warmup"
    max_steps: int = 1005
    num_train_epochs: float = 1.0
    beta: float = 0.001  # KL coefficient (Search-R1 kl_loss_coef)
    epsilon: float = 0.2
    epsilon_high: float = 0.28  # DAPO clip-higher
    loss_type: str = "dapo"
    mask_truncated_completions: bool = True  # DAPO overlong filtering
    gradient_checkpointing: bool = False
    logging_steps: int = 1
    save_steps: int = 100
    seed: int = 42
    report_to: str = "none"
    rewards: list[str] = field(default_factory=lambda: ["hybrid"])
    reward_weights: list[float] | None = None
    hybrid: dict[str, Any] = field(
        default_factory=lambda: {
            "answer_metric": "recall",
            "format_weight": 0.2,
            "length_penalty": True,
            "max_ratio": 2.0,
        }
    )
    judge_model: str | None = None  # load_chat_model spec for the `judge` reward
    lora: LoraSettings = field(default_factory=LoraSettings)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    trainer_args: dict[str, Any] = field(default_factory=dict)  # passed through to GRPOConfig


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        default = (
            names[key].default_factory()
            if names[key].default_factory is not dataclasses.MISSING
            else None
        )
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a mapping")
            value = _build(type(default), value, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """`a.b=value` pairs (values parsed as YAML) → nested dict."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r} must look like key=value")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = (
            _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
        )
    return merged


def load_settings(
    kind: str, path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> SFTSettings | RLSettings:
    """Read a YAML config for `kind` ("sft" or "rl") and apply overrides."""
    cls = {"sft": SFTSettings, "rl": RLSettings}[kind]
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise InputError("config file not found", path=str(p))
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise InputError(
                f"invalid YAML ({getattr(e, 'problem', e)})",
                path=str(p),
                line=mark.line + 1 if mark else None,
            ) from None
        if not isinstance(data, dict):
            raise InputError("config must be a YAML mapping", path=str(p))
    settings = _build(cls, _merge(data, overrides or {}), str(path or kind))
    if not settings.model:
        raise ConfigError("no model given (set `model:` in the config or pass --model)")
    return settings
