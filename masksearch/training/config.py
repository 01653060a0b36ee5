"""Training configuration: one flat YAML file (plus `key=value` overrides) → our settings + TRL's.

Keys that are ours (model, data, retriever, rollout, rewards, LoRA, curriculum, …) fill
`SFTSettings` / `RLSettings`; every other key is a TRL/transformers trainer argument and goes to
TRL's own config class (`SFTConfig` for SFT, `GRPOConfig` for RL, PPO included) through
`TrlParser.parse_dict`, so all of TRL's options are available under their own names and an
unknown key is an error. The built config is `settings.args`.

Precision: weights are always loaded in fp32 (the optimizer's master copy); `mixed_precision`
(auto | bf16 | fp16 | no) sets the trainer's autocast (`bf16=True` …). `auto` means bf16 on a
bf16-capable GPU and fp32 on CPU.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import yaml

from masksearch.errors import ConfigError, InputError
from masksearch.training.value_check import check_fields

log = logging.getLogger(__name__)


LORA_BASE_DTYPES = ("auto", "bfloat16", "float32")


def check_lora_base_dtype(value: str, where: str = "") -> None:
    """`ConfigError` unless `value` is one of `LORA_BASE_DTYPES` (`where`: the config file)."""
    if value not in LORA_BASE_DTYPES:
        raise ConfigError(
            f"{where + ': ' if where else ''}lora.base_dtype must be one of "
            f"{', '.join(LORA_BASE_DTYPES)}, got {value!r}"
        )


@dataclass
class LoraSettings:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    # Frozen base weights: `auto` = bf16 when training with bf16 autocast, else fp32, and fp32
    # under DeepSpeed ZeRO-3 (`modeling.lora_base_dtype`). The adapters (the only trained
    # parameters) are kept in fp32.
    base_dtype: str = "auto"


@dataclass
class CurriculumSettings:
    enabled: bool = False
    stages: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    mode: str = "strict"  # strict: stage s trains on k == s; cumulative: k <= s
    shuffle_within_stage: bool = True


@dataclass
class ModelSettings:
    model: str = ""  # hub id, local directory, or an embedded model (local:smollm2-135m)
    tokenizer: str | None = None  # defaults to `model`
    gguf_file: str | None = None  # load weights/tokenizer from a GGUF file inside `model`
    chat_template: str | None = None  # override the tokenizer's template (Jinja string or file)
    tool_role: str = (
        "user"  # role tool turns get in the chat template; "user" = what the graph sends
    )
    mixed_precision: str = "auto"  # auto | bf16 | fp16 | no — autocast over fp32 master weights
    attn_implementation: str | None = None  # e.g. flash_attention_2, sdpa
    resume_from_checkpoint: str | bool | None = None  # a checkpoint dir, or true = the latest one
    source: dict[str, Any] = field(default_factory=dict, repr=False)  # the flat input mapping


@dataclass
class SFTSettings(ModelSettings):
    records: str = ""
    accepted_only: bool = True
    eval_records: str | None = None  # held-out trajectories: eval loss every `eval_steps`
    lora: LoraSettings = field(default_factory=LoraSettings)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    args: Any = None  # trl.SFTConfig, built by `load_settings`


@dataclass
class DapoSettings:
    """DAPO's two sampling-side pieces (the loss-side ones are GRPOConfig keys: `loss_type: dapo`,
    `epsilon_high`, `mask_truncated_completions`)."""

    dynamic_sampling: bool = True  # drop groups whose rewards are all equal, refill the batch
    max_resample_rounds: int = 3  # extra rollout rounds to refill a batch (then keep what we have)
    overlong_buffer: int = (
        0  # soft overlong penalty: tokens before the limit where it starts (0 = off)
    )
    overlong_penalty: float = 1.0  # penalty at the limit (linear ramp over the buffer)


@dataclass
class PPOSettings:
    ppo_epochs: int = 2
    mini_batch_size: int = 4
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0  # [Search-R1] gamma = lam = 1
    lam: float = 1.0
    critic_lr: float = 1e-5  # [Search-R1] critic.optim.lr


@dataclass
class RLSettings(ModelSettings):
    algorithm: str = "grpo"  # grpo | ppo
    questions: str = ""  # masked data / FlashRAG QA JSONL, or trajectory records
    accepted_only: bool = False
    limit: int | None = None
    retriever: str = ""  # load_retriever spec, e.g. bm25:indexes/wiki
    topk: int = 3
    max_passages: int | None = None  # cap after merging a turn's queries (None = 2 * topk)
    max_turns: int = 4
    max_turn_tokens: int = 500  # per assistant turn (Search-R1 max_response_length)
    max_obs_tokens: int = 500  # per <information> block (Search-R1 max_obs_length)
    # contexts per HF `generate` call in rollouts (None: 4 on CPU, all on a GPU); bounds the KV
    # cache and CPU attention memory (benchmarks/rl_memory.py); vLLM rollouts ignore it
    rollout_batch_size: int | None = None
    # what decodes rollouts when vLLM does not (`use_vllm`): `llama_cpp` writes the policy to GGUF
    # after each optimizer step and decodes batched on llama.cpp (training.llamacpp_rollout), `hf`
    # is transformers `generate`; `auto` takes llama_cpp on a CPU-only machine when a base GGUF is
    # known (`gguf_base`, or an embedded model as `model`) and the binding is installed, else hf
    rollout_engine: str = "auto"
    gguf_base: str | None = None  # GGUF whose metadata/tokenizer llama.cpp rollouts copy
    rollout_qtype: str = "q8_0"  # q8_0 | f16 | f32: the rollout policy's GGUF precision
    rewards: list[str] = field(default_factory=lambda: ["hybrid"])
    hybrid: dict[str, Any] = field(
        default_factory=lambda: {
            "answer_metric": "span",
            "format_weight": 0.2,
            "length_penalty": True,
            "max_ratio": 2.0,
        }
    )
    judge_model: str | None = None  # load_chat_model spec for the `judge` reward
    judge_timeout_s: float = 60.0  # per judge batch; a timeout scores 0, never ends the step
    judge_batch_size: int = 16
    eval_questions: list[str] = field(default_factory=list)  # held-out question files (RAMP, QA)
    eval_limit: int | None = 64  # questions per eval file
    dapo: DapoSettings = field(default_factory=DapoSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    args: Any = None  # trl.GRPOConfig (PPO reads its optimisation/logging/saving keys too)


# Trainer defaults that differ from TRL's; every one can be overridden in the YAML.
SFT_TRAINER_DEFAULTS: dict[str, Any] = {
    "output_dir": "runs/sft",
    "max_length": 4096,
    "learning_rate": 1e-5,
    "num_train_epochs": 2.0,
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 16,
    "warmup_steps": 0.1,  # a float in [0, 1) is a ratio (transformers 5)
    "lr_scheduler_type": "cosine",
    "logging_steps": 10,
    "save_steps": 500,
    "save_total_limit": 2,
    "assistant_only_loss": False,  # our labels already mask everything but the agent's tokens
    "completion_only_loss": False,
}
RL_TRAINER_DEFAULTS: dict[str, Any] = {
    "output_dir": "runs/rl",
    "max_completion_length": 2048,  # whole multi-turn completion, tool tokens included
    "temperature": 1.0,  # [Search-R1]
    "num_generations": 5,  # [Search-R1]/[ZeroSearch] n_agent=5
    "per_device_train_batch_size": 5,
    "learning_rate": 1e-6,  # [Search-R1]
    "warmup_steps": 0.285,  # [Search-R1] lr_warmup_steps_ratio
    "lr_scheduler_type": "constant_with_warmup",
    "max_steps": 1005,  # [Search-R1]
    "beta": 0.001,  # [Search-R1] kl_loss_coef
    "epsilon": 0.2,
    "epsilon_high": 0.28,  # [DAPO] clip-higher
    "loss_type": "dapo",  # [DAPO] token-level loss
    "mask_truncated_completions": True,  # [DAPO] overlong filtering
    "logging_steps": 1,
    "save_steps": 100,  # [Search-R1] save_freq
    "save_total_limit": 3,
}
_RENAMED = {"warmup_ratio": "warmup_steps"}  # transformers 5 folded the ratio into warmup_steps
_LEGACY = {"dtype": "mixed_precision"}


def _renamed(key: str) -> str:
    return _RENAMED.get(key, key)


# transformers renamed these trainer keys (5.24 has both, the old names as deprecated aliases);
# 5.17 knows only the old names. Each pair: (new name, old name).
_TRANSFORMERS_ALIASES = (
    ("activation_checkpointing", "gradient_checkpointing"),
    ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs"),
)
_DERIVED = {"args", "source"}


def default_report_to() -> list[str]:
    """TensorBoard and/or W&B when installed (W&B only with a key or offline mode), else none."""
    out = []
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        out.append("tensorboard")
    if importlib.util.find_spec("wandb") and (
        os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in ("offline", "disabled")
    ):
        out.append("wandb")
    return out or ["none"]


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls) if f.name not in _DERIVED}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(names)}")
    check_fields(cls, data, where)  # `topk: three`, `max_turns: 0`: refused here, named
    kwargs = {}
    for key, value in data.items():
        factory = names[key].default_factory
        default = factory() if callable(factory) else None
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a mapping")
            value = _build(type(default), value, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


class _Yaml12Floats(yaml.SafeLoader):
    """PyYAML's safe loader, but `1e-5` is a float (YAML 1.2) rather than the string '1e-5'
    (YAML 1.1 wants a dot: `1.0e-5`); a learning rate written `1e-5` would otherwise reach the
    optimizer as a string."""


_Yaml12Floats.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse config YAML (safe loader; `1e-5` is a float)."""
    return yaml.load(text, Loader=_Yaml12Floats)  # noqa: S506 - a SafeLoader subclass


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
        node[parts[-1]] = load_yaml(raw) if raw else ""
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = (
            _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
        )
    return merged


def _trainer_config_class(kind: str) -> Any:
    """TRL's config class for `kind` (`SFTConfig` or `GRPOConfig`)."""
    try:
        from trl import GRPOConfig, SFTConfig
    except ImportError:
        raise ConfigError("training needs TRL: pip install 'masksearch[train]'") from None
    return SFTConfig if kind == "sft" else GRPOConfig


@overload
def build_settings(kind: Literal["sft"], data: dict[str, Any], where: str = "") -> SFTSettings: ...
@overload
def build_settings(kind: Literal["rl"], data: dict[str, Any], where: str = "") -> RLSettings: ...
@overload
def build_settings(
    kind: str, data: dict[str, Any], where: str = ""
) -> SFTSettings | RLSettings: ...
def build_settings(kind: str, data: dict[str, Any], where: str = "") -> SFTSettings | RLSettings:
    """Settings from a flat mapping (the YAML content with overrides applied)."""
    cls = {"sft": SFTSettings, "rl": RLSettings}[kind]
    where = where or kind
    data = dict(data)
    for old, new in {**_LEGACY, **_RENAMED}.items():
        if old in data:
            if new in data:
                raise ConfigError(f"{where}: give {new!r} only ({old!r} is its old name)")
            data[new] = data.pop(old)
    if "trainer_args" in data:  # the old pass-through block: its keys are trainer keys now
        extra = data.pop("trainer_args") or {}
        if not isinstance(extra, dict):
            raise ConfigError(f"{where}: 'trainer_args' must be a mapping")
        data.update({_renamed(k): v for k, v in extra.items()})
    ours_names = {f.name for f in dataclasses.fields(cls) if f.name not in _DERIVED}
    ours = {k: v for k, v in data.items() if k in ours_names}
    rest = {k: v for k, v in data.items() if k not in ours_names}
    settings: SFTSettings | RLSettings = _build(cls, ours, where)
    check_lora_base_dtype(settings.lora.base_dtype, where or "config")
    from masksearch.training.devices import resolve_precision

    precision = resolve_precision(settings.mixed_precision)
    trainer: dict[str, Any] = dict(SFT_TRAINER_DEFAULTS if kind == "sft" else RL_TRAINER_DEFAULTS)
    trainer["report_to"] = default_report_to()
    trainer["bf16"] = precision == "bf16"
    trainer["fp16"] = precision == "fp16"
    trainer.update(rest)
    _derive(settings, trainer)
    config_cls = _trainer_config_class(kind)
    from trl import TrlParser

    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    trainer = installed_names(trainer, set(fields))
    for key, value in list(trainer.items()):  # YAML reads a bare `no` as false
        if value is False and key in fields and isinstance(fields[key].default, str):
            trainer[key] = "none" if key == "report_to" else "no"
    known = set(fields)
    unknown = sorted(set(trainer) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {unknown}: neither a masksearch setting "
            f"({sorted(ours_names)}) nor a {config_cls.__name__} argument"
        )
    given = set(installed_names(rest, known))  # the user's keys, under the installed names
    # TRL's own field types (parse_dict checks none), after a YAML `no` became "no"
    check_fields(config_cls, {k: v for k, v in trainer.items() if k in given}, where)
    try:
        (settings.args,) = TrlParser([config_cls]).parse_dict(trainer)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: invalid trainer settings: {e}") from None
    settings.source = data
    return settings


def installed_names(trainer: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """Trainer keys under the names the installed transformers knows: `activation_checkpointing`
    (what the shipped configs use) becomes `gradient_checkpointing` where the config class has
    only the old name, and the reverse, so a config works on either side of the rename."""
    out = dict(trainer)
    for new, old in _TRANSFORMERS_ALIASES:
        for given, other in ((new, old), (old, new)):
            if given in out and given not in known and other in known and other not in out:
                out[other] = out.pop(given)
    return out


def _derive(settings: SFTSettings | RLSettings, trainer: dict[str, Any]) -> None:
    """Trainer keys that follow from our settings (set before TRL validates the config)."""
    if settings.curriculum.enabled:  # the dataset is ordered by stage: keep that order
        trainer["shuffle_dataset"] = False
        if isinstance(settings, SFTSettings):
            trainer["train_sampling_strategy"] = "sequential"
    held_out = (
        settings.eval_records if isinstance(settings, SFTSettings) else settings.eval_questions
    )
    if held_out and trainer.get("eval_strategy", "no") == "no":
        trainer["eval_strategy"] = "steps"
        trainer.setdefault("eval_steps", trainer.get("save_steps"))
        # RL evaluates whole groups: the eval batch must hold num_generations completions
        trainer.setdefault(
            "per_device_eval_batch_size", trainer.get("per_device_train_batch_size", 8)
        )
    if isinstance(settings, SFTSettings):
        trainer["assistant_only_loss"] = False  # our labels already mask all but the agent's tokens
        trainer["completion_only_loss"] = False
    else:
        if settings.dapo.overlong_buffer > 0 and trainer.get("reward_weights"):
            trainer["reward_weights"] = [*trainer["reward_weights"], 1.0]  # the overlong penalty
        if settings.algorithm == "ppo":  # one sample per prompt; keep GRPOConfig's checks happy
            trainer["num_generations"] = 2
            if int(trainer.get("per_device_train_batch_size", 1)) % 2:
                trainer["steps_per_generation"] = 2


def replace_settings(settings: SFTSettings | RLSettings, **changes: Any) -> Any:
    """A copy of `settings` with some (flat) keys changed, trainer keys included."""
    kind = "sft" if isinstance(settings, SFTSettings) else "rl"
    return build_settings(kind, _merge(settings.source, changes))


@overload
def load_settings(
    kind: Literal["sft"],
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> SFTSettings: ...
@overload
def load_settings(
    kind: Literal["rl"],
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> RLSettings: ...
@overload
def load_settings(
    kind: str,
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> SFTSettings | RLSettings: ...
def load_settings(
    kind: str, path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> SFTSettings | RLSettings:
    """Read a YAML config for `kind` ("sft" or "rl") and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        from masksearch.fileio import check_input_file

        p = check_input_file(path, what="--config")  # missing, a folder, /dev/zero, a FIFO
        try:
            data = load_yaml(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise InputError(
                f"invalid YAML ({getattr(e, 'problem', e)})",
                path=str(p),
                line=mark.line + 1 if mark else None,
            ) from None
        if not isinstance(data, dict):
            raise InputError("config must be a YAML mapping", path=str(p))
    where = str(path) if path is not None else f"{kind} options"
    if path is not None and overrides:
        where += " (or --set)"  # a bad value may come from either: the message names the key
    settings = build_settings(kind, _merge(data, overrides or {}), where)
    if not settings.model:
        raise ConfigError("no model given (set `model:` in the config or pass --model)")
    from masksearch.fileio import check_output_dir

    # a file, under a file, read-only: refused now, not after the model has loaded
    check_output_dir(settings.args.output_dir, what="output_dir")
    return settings
