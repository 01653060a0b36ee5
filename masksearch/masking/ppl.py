"""Perplexity-based span scoring with a local causal LM (the paper's PPL masking variant).

A span's score is the mean token negative log-likelihood (nats) of the span under the LM:
- mode "fill" (default): the passage with THAT span replaced by `[mask]`, then
  "\\n[mask] =", then the span — the whole passage (both sides) is context;
- mode "inline": one forward pass over the intact passage; the span's tokens are scored given the
  text to their left (cheap: one pass per passage instead of one per candidate).
Higher = harder to infer from context; the masker keeps the k highest-scoring spans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from masksearch.errors import ConfigError
from masksearch.masking.select import MASK_TOKEN
from masksearch.types import Span

PplMode = Literal["fill", "inline"]
FILL_SEPARATOR = "\n" + MASK_TOKEN + " ="


class PerplexityScorer:
    """Batch scorer. `model` is a path / HF id, or an already loaded (model, tokenizer) pair."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        mode: PplMode = "fill",
        batch_size: int = 16,
        max_length: int = 512,
        device: str = "auto",
    ) -> None:
        import torch

        if mode not in ("fill", "inline"):
            raise ConfigError(f"unknown ppl mode {mode!r} (fill | inline)")
        loaded_here = isinstance(model, str)
        if loaded_here:
            model, tokenizer = _load(model)
        if tokenizer is None:
            raise ConfigError("PerplexityScorer needs a tokenizer with the model")
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError("ppl masking needs a fast tokenizer (character offsets)")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        if loaded_here and device.startswith("cuda") and torch.cuda.is_bf16_supported():
            model = model.to(torch.bfloat16)  # ~2x faster; scores are compared, not reported
        self.model = model.to(device).eval()
        self.tok = tokenizer
        self.mode = mode
        self.batch_size = max(1, batch_size)
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # ---- public API -------------------------------------------------------------------------
    def score(self, items: Sequence[tuple[str, Sequence[Span]]]) -> list[list[float]]:
        """Scores for each candidate of each (text, candidates) item."""
        if self.mode == "inline":
            return self._score_inline(items)
        pairs: list[tuple[list[int], list[int]]] = []
        for text, cands in items:
            for sp in cands:
                prompt = text[: sp.start] + MASK_TOKEN + text[sp.end :] + FILL_SEPARATOR
                pairs.append((self._ids(prompt, special=True), self._ids(" " + sp.text)))
        flat = self._nll_of_targets(pairs)
        out, i = [], 0
        for _, cands in items:
            out.append(flat[i : i + len(cands)])
            i += len(cands)
        return out

    # ---- internals --------------------------------------------------------------------------
    def _ids(self, text: str, special: bool = False) -> list[int]:
        return list(self.tok(text, add_special_tokens=special)["input_ids"])

    def _nll_of_targets(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        """Mean NLL of each target given its prompt; batched, longest first."""
        seqs = []
        for prompt, target in pairs:
            target = target[: self.max_length // 2] or [self.pad_id]
            prompt = prompt[-(self.max_length - len(target)) :]  # keep the end (near the target)
            seqs.append((prompt + target, len(prompt)))
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0]))
        result = [math.nan] * len(seqs)
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            token_nll = self._token_nll([seqs[i][0] for i in idx])
            for row, i in enumerate(idx):
                ids, start = seqs[i]
                vals = token_nll[row][max(start, 1) - 1 : len(ids) - 1]
                result[i] = float(sum(vals) / len(vals)) if vals else math.nan
        return result

    def _token_nll(self, batch: list[list[int]]) -> list[list[float]]:
        """NLL of token t+1 given tokens <= t, per row (length len(row) - 1)."""
        import torch

        width = max(len(r) for r in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            # only real (non-pad) next-token positions: avoids a B x T x V float32 softmax
            keep = mask[:, 1:].bool()
            picked = logits[:, :-1][keep].float()
            targets = ids[:, 1:][keep]
            nll = torch.nn.functional.cross_entropy(picked, targets, reduction="none").cpu()
        out, pos = [], 0
        for r in batch:
            n = len(r) - 1
            out.append(nll[pos : pos + n].tolist())
            pos += n
        return out

    def _score_inline(self, items: Sequence[tuple[str, Sequence[Span]]]) -> list[list[float]]:
        out: list[list[float]] = []
        for b in range(0, len(items), self.batch_size):
            chunk = items[b : b + self.batch_size]
            encs = [
                self.tok(
                    text,
                    add_special_tokens=True,
                    return_offsets_mapping=True,
                    truncation=True,
                    max_length=self.max_length,
                )
                for text, _ in chunk
            ]
            nlls = self._token_nll([list(e["input_ids"]) for e in encs])
            for (_, cands), enc, nll in zip(chunk, encs, nlls, strict=True):
                offsets = enc["offset_mapping"]
                scores = []
                for sp in cands:
                    # token t (t >= 1) is predicted at position t - 1 of `nll`
                    vals = [
                        nll[t - 1]
                        for t, (s, e) in enumerate(offsets)
                        if t >= 1 and e > s and s < sp.end and e > sp.start
                    ]
                    scores.append(float(sum(vals) / len(vals)) if vals else math.nan)
                out.append(scores)
        return out


def _load(spec: str) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer: `local:default` / `local:<dir or .gguf>` (the embedded
    offline model, see masksearch.models.local), or a transformers path / Hugging Face id."""
    if spec.startswith("local:"):
        from masksearch.models.local import load_weights

        tok, model = load_weights(spec.partition(":")[2] or "default")
        return model, tok
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:  # pragma: no cover - transformers is a core dependency
        raise ConfigError(f"ppl masking needs transformers: {e}") from None
    try:
        tok = AutoTokenizer.from_pretrained(spec)
        model = AutoModelForCausalLM.from_pretrained(spec)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load causal LM {spec!r} for ppl masking: {e}") from None
    return model, tok
