"""Loading the model/tokenizer for training, LoRA settings, and the device report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from masksearch.errors import ConfigError
from masksearch.training.config import LoraSettings, ModelSettings

log = logging.getLogger(__name__)


def device_summary() -> str:
    """One line on what training will run on (GPU name/count, or CPU)."""
    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"{n} CUDA GPU(s): {torch.cuda.get_device_name(0)}"
    return "no GPU found: training runs on CPU (slow; fine for smoke tests and tiny models)"


def use_bf16(dtype: str) -> bool:
    """bf16 mixed precision for the trainer: asked for (or `auto`) and a bf16-capable GPU present."""
    import torch

    gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dtype in ("bfloat16", "bf16") and not gpu_bf16:
        log.warning(
            "dtype %s asked for, but no bf16-capable GPU: trainer runs without bf16 autocast", dtype
        )
    return dtype in ("auto", "bfloat16", "bf16") and gpu_bf16


def load_tokenizer(settings: ModelSettings) -> Any:
    from transformers import AutoTokenizer

    name = settings.tokenizer or settings.model
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


def load_model(settings: ModelSettings) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtypes = {
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
        "float32": torch.float32,
        "fp32": torch.float32,
    }
    if settings.dtype == "auto":
        dtype = torch.bfloat16 if use_bf16("auto") else torch.float32
    elif settings.dtype in dtypes:
        dtype = dtypes[settings.dtype]
    else:
        raise ConfigError(f"unknown dtype {settings.dtype!r}")
    kwargs: dict[str, Any] = {"dtype": dtype}
    if settings.gguf_file:
        kwargs["gguf_file"] = settings.gguf_file
    if settings.attn_implementation:
        kwargs["attn_implementation"] = settings.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(settings.model, **kwargs)
    except OSError as e:
        raise ConfigError(f"cannot load model {settings.model!r}: {e}") from None
    if settings.gguf_file:
        model.hf_quantizer = None  # dequantized GGUF weights are plain tensors; allow saving
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
