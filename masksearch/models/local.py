"""`local:` specs: embedded GGUF models on llama.cpp, HF checkpoint directories on transformers.

| spec | runtime |
|---|---|
| `local:default`, `local:<embedded name>` (see `masksearch.models.embedded`) | llama.cpp (`LlamaCppChatModel`) |
| `local:<file>.gguf` | llama.cpp |
| `local:<dir>` with a `config.json` (a trained student, any HF checkpoint) | transformers (`TransformersChatModel`), CPU or GPU |

The transformers path stays for checkpoints (training writes them, GPUs serve them) and for code
that needs logits (`load_weights`, e.g. perplexity masking); it can also read a GGUF file by
de-quantizing it (slow: ~15 s for a 135M model, ~60 s for 1.5B on 2 cores).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from masksearch.errors import ConfigError
from masksearch.models import embedded

_ROLE = {"system": "system", "human": "user", "ai": "assistant", "tool": "user"}
_generate_lock = threading.Lock()
_load_lock = threading.Lock()


def resolve_model_path(name: str) -> tuple[Path, str | None]:
    """embedded name / dir / .gguf → (directory, gguf file name or None)."""
    if embedded.lookup(name) is not None:
        gguf = embedded.gguf_path(name)
        return gguf.parent, gguf.name
    p = Path(name).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return p.parent, p.name
    if p.is_dir() and (p / "config.json").is_file():
        return p, None
    raise ConfigError(
        f"local model {name!r}: expected an embedded model name ({', '.join(embedded.MODELS)}), "
        "a transformers model dir (with config.json) or a .gguf file"
    )


def chat_model(name: str, **settings: Any) -> BaseChatModel:
    """The chat model for `local:<name>`: llama.cpp for GGUF, transformers for checkpoint dirs."""
    if embedded.lookup(name) is not None or name.endswith(".gguf"):
        from masksearch.models.llamacpp import LlamaCppChatModel

        if embedded.lookup(name) is None and not Path(name).expanduser().is_file():
            raise ConfigError(f"local model {name!r}: no such .gguf file")
        if "repetition_penalty" in settings:  # llama.cpp's name for it
            settings["repeat_penalty"] = settings.pop("repetition_penalty")
        return LlamaCppChatModel(model_path=name, **settings)
    resolve_model_path(name)  # a clear ConfigError now rather than at the first call
    return TransformersChatModel(model_path=name, **settings)


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
    return tok, model


class TransformersChatModel(BaseChatModel):
    """A transformers causal LM (chat template, greedy by default, stop strings, usage metadata).
    Sampling follows `masksearch.student.Decoding` (no repetition penalty unless configured)."""

    model_path: str
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    @property
    def _llm_type(self) -> str:
        return "masksearch-transformers"

    def load(self) -> None:
        """Load the weights now (otherwise the first call does)."""
        load_weights(self.model_path)

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
        from masksearch.student import Decoding

        max_new = int(kwargs.get("max_tokens") or self.max_tokens)
        decoding = Decoding(
            temperature=float(kwargs.get("temperature", self.temperature)),
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
        )
        gen: dict[str, Any] = {
            "max_new_tokens": max_new,
            "pad_token_id": tok.pad_token_id or tok.eos_token_id,
            **decoding.hf_generate_kwargs(),
        }
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


LocalChatModel = TransformersChatModel  # the name older code imports
