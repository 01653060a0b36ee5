"""Loading the model/tokenizer for training, LoRA settings, and the device report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from masksearch.errors import ConfigError
from masksearch.training.config import (
    LoraSettings,
    ModelSettings,
    RLSettings,
    SFTSettings,
    check_lora_base_dtype,
)
from masksearch.training.devices import use_bf16

log = logging.getLogger(__name__)


def load_tokenizer(settings: ModelSettings) -> Any:
    from transformers import AutoTokenizer

    from masksearch.models.students import resolve_base

    name = resolve_base(settings.tokenizer or settings.model)
    kwargs = {"gguf_file": settings.gguf_file} if settings.gguf_file else {}
    try:
        tok = AutoTokenizer.from_pretrained(name, **kwargs)
    except OSError as e:
        raise ConfigError(f"cannot load tokenizer {name!r}: {e}") from None
    if settings.chat_template:
        p = Path(settings.chat_template)
        tok.chat_template = p.read_text(encoding="utf-8") if p.exists() else settings.chat_template
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(settings: ModelSettings, *, lora: LoraSettings | None = None) -> Any:
    """The policy in fp32: the optimizer steps fp32 master weights, the trainer autocasts to bf16.

    Loading in bf16 and stepping bf16 parameters loses most small updates (at lr 1e-6 an update
    is below bf16's resolution for nearly every weight). Only the frozen base of a LoRA run may be
    loaded in bf16 (`lora.base_dtype`); peft keeps the adapters themselves in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32
    if lora is not None and lora.enabled:
        from transformers.integrations import is_deepspeed_zero3_enabled

        name = lora_base_dtype(
            lora.base_dtype,
            bf16=use_bf16(settings.mixed_precision),
            zero3=is_deepspeed_zero3_enabled(),
        )
        dtype = torch.bfloat16 if name == "bfloat16" else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if settings.gguf_file:
        kwargs["gguf_file"] = settings.gguf_file
    if settings.attn_implementation:
        kwargs["attn_implementation"] = settings.attn_implementation
    from masksearch.models.students import clear_quantizer, resolve_base

    try:  # an embedded model name (local:smollm2-135m) trains from its cached HF checkpoint
        model: Any = AutoModelForCausalLM.from_pretrained(resolve_base(settings.model), **kwargs)
    except OSError as e:
        raise ConfigError(f"cannot load model {settings.model!r}: {e}") from None
    if settings.gguf_file:
        clear_quantizer(model)  # dequantized GGUF weights are plain tensors; allow saving
    return model


def lora_base_dtype(base_dtype: str, *, bf16: bool, zero3: bool) -> str:
    """The dtype a LoRA run loads its frozen base in (`lora.base_dtype`): `auto` is bf16 under
    bf16 autocast, fp32 otherwise, and fp32 under DeepSpeed ZeRO-3. ZeRO-3 gathers parameters in
    one dtype, so TRL creates the adapters in the base's dtype there; an fp32 base keeps them fp32
    until DeepSpeed's bf16 mode casts the module and keeps fp32 master copies of what it trains.
    An explicit `bfloat16` base under ZeRO-3 would give bf16 adapters: refused."""
    check_lora_base_dtype(base_dtype)
    if base_dtype == "bfloat16" and zero3:
        raise ConfigError(
            "lora.base_dtype: bfloat16 cannot be used under DeepSpeed ZeRO-3, which keeps the "
            "LoRA adapters in the base's dtype (bf16, no fp32 copy): use auto or float32"
        )
    if base_dtype == "bfloat16" or (base_dtype == "auto" and bf16 and not zero3):
        return "bfloat16"
    return "float32"


def check_trainable_fp32(model: Any) -> None:
    """Refuse to train parameters stored in half precision (no fp32 master copy)."""
    import torch

    bad = sorted(
        {str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype != torch.float32}
    )
    if bad:
        raise ConfigError(
            f"trainable parameters are {', '.join(bad)}: load the model in float32 and train with "
            "mixed_precision: bf16 (fp32 master weights, bf16 autocast)"
        )


def resolve_tokenizer(settings: ModelSettings, tokenizer: Any = None) -> Any:
    """The given tokenizer, else the run's (`load_tokenizer`)."""
    return tokenizer if tokenizer is not None else load_tokenizer(settings)


def resolve_policy(settings: SFTSettings | RLSettings, model: Any = None) -> Any:
    """The model a trainer starts from: the given one, else `settings.model` loaded (wrapped in
    LoRA when `settings.lora` is enabled); without LoRA every trainable weight must be fp32."""
    model = model if model is not None else load_model(settings, lora=settings.lora)
    if not settings.lora.enabled:
        check_trainable_fp32(model)
    return model


def lora_config(lora: LoraSettings) -> Any:
    """A peft `LoraConfig` when LoRA is enabled, else None."""
    if not lora.enabled:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise ConfigError("LoRA needs peft: pip install 'masksearch[train]'") from None
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def resolve_resume(resume: str | bool | None, output_dir: str | None = None) -> str | bool | None:
    """`resume_from_checkpoint` for `Trainer.train`: a checkpoint directory, or `True` for the
    latest `checkpoint-*` in the output dir (a fresh run when there is none yet)."""
    from masksearch.errors import InputError

    if resume in (None, False, ""):
        return None
    if resume is True or str(resume).lower() in ("true", "latest"):
        if output_dir is not None:
            from transformers.trainer_utils import get_last_checkpoint

            if not Path(output_dir).is_dir() or get_last_checkpoint(output_dir) is None:
                log.info("no checkpoint in %s yet: starting a fresh run", output_dir)
                return None
        return True
    if not Path(str(resume)).is_dir():
        raise InputError("checkpoint directory not found", path=str(resume))
    return str(resume)
