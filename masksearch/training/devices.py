"""What training runs on: the device report and the autocast precision a run uses.

Below both `config.py` (which derives the trainer's bf16/fp16 flags from `mixed_precision`) and
`modeling.py` (which loads the model to match)."""

from __future__ import annotations

import logging

from masksearch.errors import ConfigError

log = logging.getLogger(__name__)


def device_summary() -> str:
    """One line on what training will run on (GPU name/count, or CPU)."""
    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"{n} CUDA GPU(s): {torch.cuda.get_device_name(0)}"
    return "no GPU found: training runs on CPU (slow; fine for smoke tests and tiny models)"


PRECISIONS = ("auto", "bf16", "fp16", "no")
_LEGACY_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "float32": "no", "fp32": "no"}


def resolve_precision(mixed_precision: str) -> str:
    """The autocast precision a run uses: `bf16`, `fp16` or `no`.

    Weights are always loaded (and stepped) in fp32; this only picks the autocast dtype of the
    forward/backward passes. `auto` is bf16 on a bf16-capable GPU and `no` elsewhere (CPU)."""
    import torch

    mp = _LEGACY_DTYPE.get(mixed_precision, mixed_precision)
    if mp not in PRECISIONS:
        raise ConfigError(f"unknown mixed_precision {mixed_precision!r}; choose {PRECISIONS}")
    gpu = torch.cuda.is_available()
    gpu_bf16 = gpu and torch.cuda.is_bf16_supported()
    if mp == "auto":
        return "bf16" if gpu_bf16 else "no"
    if (mp == "bf16" and not gpu_bf16) or (mp == "fp16" and not gpu):
        log.warning(
            "%s autocast asked for but no capable GPU: training runs in fp32 "
            "(on CPU set `use_cpu: true` and `bf16: true` to force CPU bf16 autocast)",
            mp,
        )
        return "no"
    return mp


def use_bf16(mixed_precision: str) -> bool:
    """`bf16=True` for the trainer (bf16 autocast over fp32 master weights)."""
    return resolve_precision(mixed_precision) == "bf16"


def use_fp16(mixed_precision: str) -> bool:
    return resolve_precision(mixed_precision) == "fp16"
