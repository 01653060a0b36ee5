"""Students from shipped weights: an embedded GGUF model → an HF checkpoint to train, and a trained
checkpoint → a GGUF file that llama.cpp serves.

`hf_checkpoint("local:smollm2-135m")` de-quantizes the embedded GGUF once into
`~/.cache/masksearch/students/<name>-<sha12>/` (root: `MASKSEARCH_CACHE`), a plain fp32
safetensors checkpoint with its tokenizer, and checks it before marking it done
(`masksearch-student.json`, written last): the source file's sha256 (pinned by
`masksearch.models.embedded`), the config against the GGUF header (architecture, layers, widths,
vocabulary, tied embeddings), and greedy tokens of transformers on the checkpoint equal to
llama.cpp's on the GGUF for a short prompt. transformers' GGUF loader leaves no quantizer on the
model, but the config can carry a `quantization_config` and the model `hf_quantizer`/
`is_quantized` flags that make `save_pretrained` and `Trainer` refuse or re-quantize: they are
cleared before saving.

`write_student_gguf(checkpoint, base, out)` writes the trained weights into a copy of the base
GGUF: every metadata key (tokenizer, chat template, rope and norm settings) is copied, each tensor
is replaced by the checkpoint's (names mapped with gguf's own tensor-name map, llama's q/k rows
permuted back the way llama.cpp's converter does), stored as Q8_0 (or F16/F32) with 1-D tensors
in F32. A LoRA output directory is merged into its base first. The file is then served by the
ordinary `local:<file.gguf>` llama.cpp path, at the base model's decode speed
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from masksearch.errors import ConfigError
from masksearch.models import embedded

log = logging.getLogger(__name__)

MARKER = "masksearch-student.json"
GGUF_MARKER_SUFFIX = ".student.json"
CHECK_PROMPT = "The capital of France is Paris. The capital of Germany is"
CHECK_TOKENS = 8
QTYPES = ("q8_0", "f16", "f32")
_ARCHS = {"llama": "llama", "qwen2": "qwen2"}


def embedded_name(spec: str) -> str | None:
    """The embedded model a training base names (`local:smollm2-135m`, `smollm2-135m`,
    `local:default`), else None (a hub id or a checkpoint directory)."""
    name = spec.removeprefix("local:")
    model = embedded.lookup(name)
    return None if model is None else model.name


def students_dir() -> Path:
    return embedded.cache_dir().parent / "students"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def clear_quantizer(model: Any) -> None:
    """Drop every trace of a quantizer so the de-quantized fp32 weights save and train as plain
    tensors (`save_pretrained` refuses, and `Trainer` treats as frozen, a "quantized" model)."""
    model.hf_quantizer = None
    for attr in ("is_quantized", "_is_quantized_training_enabled"):
        if hasattr(model, attr) and not isinstance(getattr(type(model), attr, None), property):
            setattr(model, attr, False)
    if hasattr(model, "quantization_method"):
        model.quantization_method = None
    config = model.config
    if getattr(config, "quantization_config", None) is not None or hasattr(
        config, "quantization_config"
    ):
        try:
            delattr(config, "quantization_config")
        except AttributeError:
            config.quantization_config = None


def gguf_header(path: str | Path) -> dict[str, Any]:
    """Architecture, sizes and tensor names from a GGUF file's header (no weights read)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    arch = value("general.architecture")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return {
        "arch": arch,
        "block_count": value(f"{arch}.block_count"),
        "embedding_length": value(f"{arch}.embedding_length"),
        "feed_forward_length": value(f"{arch}.feed_forward_length"),
        "head_count": value(f"{arch}.attention.head_count"),
        "head_count_kv": value(f"{arch}.attention.head_count_kv"),
        "vocab": None if tokens is None else len(tokens.data),
        "tensors": [t.name for t in reader.tensors],
    }


def check_config(config: Any, header: dict[str, Any]) -> list[str]:
    """Disagreements between an HF config and the GGUF header it came from (empty: sane)."""
    problems = []
    expect = {
        "model_type": _ARCHS.get(str(header["arch"])),
        "num_hidden_layers": header["block_count"],
        "hidden_size": header["embedding_length"],
        "intermediate_size": header["feed_forward_length"],
        "num_attention_heads": header["head_count"],
        "num_key_value_heads": header["head_count_kv"] or header["head_count"],
    }
    for key, want in expect.items():
        got = getattr(config, key, None)
        if want is None or got != want:
            problems.append(f"{key}: checkpoint {got!r}, GGUF {want!r}")
    if header["vocab"] is not None and config.vocab_size < header["vocab"]:
        problems.append(f"vocab_size {config.vocab_size} < GGUF vocabulary {header['vocab']}")
    tied = "output.weight" not in header["tensors"]
    if bool(getattr(config, "tie_word_embeddings", False)) != tied:
        problems.append(f"tie_word_embeddings {config.tie_word_embeddings}, GGUF tied {tied}")
    return problems


def llama_cpp_greedy(gguf: str | Path, ids: list[int], n: int = CHECK_TOKENS) -> list[int]:
    """`n` greedy tokens of llama.cpp after the token ids `ids` (one thread-safe local load)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=256, n_threads=2, verbose=False, seed=0)
    try:
        out: list[int] = []
        for tok in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
            out.append(int(tok))
            if len(out) == n:
                break
        return out
    finally:
        llm.close()


def llama_cpp_tokenize(gguf: str | Path, text: str) -> list[int]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=256, vocab_only=True, verbose=False)
    try:
        return [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)]
    finally:
        llm.close()


def transformers_greedy(model: Any, ids: list[int], n: int = CHECK_TOKENS) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=n,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=model.config.eos_token_id,
        )
    return [int(t) for t in out[0, len(ids) :]]


def hf_checkpoint(spec: str, *, check: bool = True) -> Path:
    """The fp32 HF checkpoint of an embedded model, converted and checked once, then cached."""
    name = embedded_name(spec)
    if name is None:
        raise ConfigError(f"{spec!r} is not an embedded model ({', '.join(embedded.MODELS)})")
    gguf = embedded.gguf_path(name)  # size + pinned sha256 checked
    model_info = embedded.MODELS[name]
    out = students_dir() / f"{name}-{model_info.sha256[:12]}"
    marker = out / MARKER
    if marker.is_file():
        try:
            done = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            done = {}
        if done.get("source_sha256") == model_info.sha256 and (not check or done.get("checked")):
            return out
    return _convert(name, gguf, out, check=check)


def _convert(name: str, gguf: Path, out: Path, *, check: bool) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s (%s) to an HF checkpoint in %s (once)", name, gguf, out)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    clear_quantizer(model)
    header = gguf_header(gguf)
    problems = check_config(model.config, header)
    if problems:
        raise ConfigError(f"{name}: the converted config disagrees with {gguf}: {problems}")
    record: dict[str, Any] = {
        "model": name,
        "source": str(gguf),
        "source_sha256": embedded.MODELS[name].sha256,
        "config": {"model_type": model.config.model_type, "layers": header["block_count"]},
        "checked": False,
    }
    if check:
        ids = llama_cpp_tokenize(gguf, CHECK_PROMPT)
        want = llama_cpp_greedy(gguf, ids)
        got = transformers_greedy(model, ids)
        if got != want:
            raise ConfigError(
                f"{name}: greedy tokens of the converted checkpoint {got} differ from llama.cpp's "
                f"{want} on {CHECK_PROMPT!r}; the conversion is wrong"
            )
        record.update(checked=True, check={"prompt": CHECK_PROMPT, "ids": ids, "greedy": want})
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


def resolve_base(spec: str) -> str:
    """A training base as transformers loads it: embedded names become their cached checkpoint."""
    return str(hf_checkpoint(spec)) if embedded_name(spec) is not None else spec


# ---------------------------------------------------------------- checkpoint → GGUF


def load_trained(checkpoint: str | Path) -> Any:
    """The trained model in fp32: a full checkpoint, a LoRA output merged into its base, or an
    embedded model's name (`local:smollm2-135m`: its checked HF conversion, `hf_checkpoint`), so
    the untrained base can be written back at the students' precision."""
    import torch
    from transformers import AutoModelForCausalLM

    spec = str(checkpoint)
    ckpt = hf_checkpoint(spec) if spec.startswith("local:") else Path(checkpoint)
    if (ckpt / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        peft_model = AutoPeftModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32)
        return peft_model.merge_and_unload()
    if not (ckpt / "config.json").is_file():
        raise ConfigError(f"{ckpt} is not a checkpoint (no config.json or adapter_config.json)")
    return AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32)


def _permute(w: Any, n_head: int) -> Any:
    """llama.cpp's q/k row order (convert_hf_to_gguf.LlamaModel.permute)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def plain_state_dict(model: Any) -> dict[str, Any]:
    """The model's weights under the plain transformers names. A PEFT (LoRA) model is merged for
    the copy and unmerged again, so training goes on from the same adapter (as TRL's vLLM weight
    sync does); a model that is not PEFT is read as is."""
    if not hasattr(model, "merge_adapter"):
        return dict(model.state_dict())
    prefix = getattr(model, "prefix", "lora_")
    model.merge_adapter()
    try:
        out = {}
        for key, tensor in model.state_dict().items():
            if prefix in key or "original_module" in key:
                continue
            name = key.removeprefix("base_model.model.").replace(".base_layer", "")
            name = name.replace("modules_to_save.default.", "")
            out[name] = tensor.detach().clone()
        return out
    finally:
        model.unmerge_adapter()


def gguf_tensors(model: Any, arch: str, n_blocks: int) -> dict[str, Any]:
    """The model's weights (merged, if it carries a LoRA adapter) as float32 numpy arrays under
    their GGUF names."""
    import gguf

    arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    names = gguf.get_tensor_name_map(arch_enum, n_blocks)
    cfg = model.config
    n_head = int(cfg.num_attention_heads)
    n_kv = int(getattr(cfg, "num_key_value_heads", None) or n_head)
    out: dict[str, Any] = {}
    for key, tensor in plain_state_dict(model).items():
        target = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ConfigError(f"no GGUF name for tensor {key!r} ({arch})")
        arr = tensor.detach().float().cpu().numpy()
        if arch == "llama" and key.endswith(("q_proj.weight", "q_proj.bias")):
            arr = _permute(arr, n_head)
        elif arch == "llama" and key.endswith(("k_proj.weight", "k_proj.bias")):
            arr = _permute(arr, n_kv)
        out[target] = arr
    return out


def base_gguf_path(base: str | Path) -> Path:
    """The GGUF file a base names: an embedded model's name (`local:smollm2-135m`) or a path."""
    name = embedded_name(str(base))
    return Path(embedded.gguf_path(name)) if name else Path(base)


def write_student_gguf(
    checkpoint: str | Path, base: str | Path, out: str | Path, *, qtype: str = "q8_0"
) -> Path:
    """Write `checkpoint`'s weights into a copy of the `base` GGUF (metadata and tokenizer kept)
    at `out`, atomically; a `<out>.student.json` beside it records what went in."""
    base_path = base_gguf_path(base)
    out = write_model_gguf(load_trained(checkpoint), base_path, out, qtype=qtype)
    info = {"checkpoint": str(checkpoint), "base": str(base_path), "qtype": qtype}
    out.with_name(out.name + GGUF_MARKER_SUFFIX).write_text(
        json.dumps(info, indent=2) + "\n", encoding="utf-8"
    )
    return out


def write_model_gguf(model: Any, base: str | Path, out: str | Path, *, qtype: str = "q8_0") -> Path:
    """Write an in-memory transformers model's weights (a LoRA adapter merged in) into a copy of
    the `base` GGUF at `out`, atomically: what `write_student_gguf` does for a saved checkpoint,
    and what CPU RL rollouts (`training.llamacpp_rollout`) do with the live policy."""
    import gguf
    import numpy as np

    if qtype not in QTYPES:
        raise ConfigError(f"unknown GGUF type {qtype!r}; choose one of {', '.join(QTYPES)}")
    base_path = base_gguf_path(base)
    if not base_path.is_file():
        raise ConfigError(f"base GGUF {base_path} not found")
    reader = gguf.GGUFReader(str(base_path))
    arch = str(reader.fields["general.architecture"].contents())
    n_blocks = int(reader.fields[f"{arch}.block_count"].contents())
    weights = gguf_tensors(model, arch, n_blocks)
    file_type = {
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "f32": gguf.LlamaFileType.ALL_F32,
    }[qtype]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        for field in reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            val = int(file_type) if field.name == gguf.Keys.General.FILE_TYPE else field.contents()
            writer.add_key_value(field.name, val, vtype, sub_type=sub)
        if gguf.Keys.General.FILE_TYPE not in reader.fields:
            writer.add_file_type(int(file_type))
        used = set()
        for t in reader.tensors:
            arr = weights.get(t.name)
            if arr is None and t.name == "output.weight":
                arr = weights.get("token_embd.weight")
            if arr is None:  # a tensor not in the HF model (e.g. rope_freqs): copied as is
                writer.add_tensor(t.name, t.data, raw_shape=None, raw_dtype=t.tensor_type)
                continue
            used.add(t.name)
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if arr.ndim == 1 or qtype == "f32":
                writer.add_tensor(t.name, arr)
            elif qtype == "f16" or arr.shape[-1] % 32:
                writer.add_tensor(t.name, arr.astype(np.float16))
            else:
                q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
                writer.add_tensor(t.name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        missing = sorted(set(weights) - used - {"output.weight"})
        if missing:
            raise ConfigError(f"the base GGUF has no place for tensors {missing[:5]}")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
