"""Token choice for the llama.cpp engine: greedy / top-k / top-p under a grammar, prompt-lookup drafts.

`Decoder` is one generation's state between two batched llama.cpp steps: the engine evaluates the
tokens it asks for (`feed`) in its sequence, hands back the logits after each of them
(`advance`), and gets the new tokens and how many fed (draft) tokens to drop from the context.
Nothing here calls llama.cpp except the grammar filter (`GrammarCheck`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

CHECK_FIRST = 64  # candidates checked against the grammar before the whole vocabulary
LOOKUP_NGRAM = 3  # tokens that must repeat before the reply drafts what followed them
# tokens drafted per lookup: on a 2-core CPU a batch of 4 tokens costs ~1.3 single-token steps, a
# batch of 7 ~2.1 (benchmarks/RESULTS.md), so short drafts pay off at lower hit rates
LOOKUP_DRAFT = 3
LOOKUP_HISTORY = 32  # earlier completions searched when the prompt and reply have no match


class TokenFilter(Protocol):
    def allowed(self, ids: np.ndarray, logits: np.ndarray) -> np.ndarray: ...


class Decoder:
    """One generation's sampler: which tokens to evaluate next, and what to make of their logits.

    Greedy at temperature 0, else top-k / top-p / temperature sampling. Under a grammar, the
    token about to be picked is checked first, then the `CHECK_FIRST` most likely ones, then the
    whole vocabulary, so a constrained step costs about what an unconstrained one does.

    Greedy decoding also drafts by prompt lookup (`lookup`): when the text so far ends with an
    n-gram seen earlier in prompt or reply (else in one of `history`, earlier completions), the
    `LOOKUP_DRAFT` tokens that followed it there are evaluated in the same step after the model's
    own next token and kept as far as they are what greedy decoding picks anyway. A teacher copies
    a lot — the question's words into its queries, a passage's words into its summary and spans."""

    def __init__(
        self,
        prompt: Sequence[int],
        *,
        eog: np.ndarray,
        check: Any = None,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        repeat_penalty: float = 1.0,
        seed: int | None = 0,
        lookup: bool = True,
        history: Sequence[Sequence[int]] = (),
    ) -> None:
        self.seq = list(prompt)  # prompt + reply so far
        self.n_prompt = len(self.seq)
        self.feed = [self.seq[-1]]  # evaluated next: the last token, then any draft
        self.eog, self.check = eog, check
        self._eog = set(eog.tolist())
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.repeat_penalty = repeat_penalty
        self.rng = np.random.default_rng(seed)
        self.lookup = lookup and temperature <= 0
        self.history = history
        self.drafted = self.kept = 0

    def pick(self, row: np.ndarray) -> int:
        if self.repeat_penalty != 1.0 and len(self.seq) > self.n_prompt:
            row = row.copy()
            ids = np.array(self.seq[max(self.n_prompt, len(self.seq) - 64) :], dtype=np.int32)
            vals = row[ids]
            p = self.repeat_penalty
            row[ids] = np.where(vals > 0, vals / p, vals * p)
        t = pick(row, self.check, self.eog, self.rng, self.temperature, self.top_k, self.top_p)
        return -1 if t < 0 or t in self._eog else t

    def _take(self, token: int) -> None:
        if self.check is not None:
            self.check.accept(token)
        self.seq.append(token)

    def advance(self, rows: Sequence[np.ndarray]) -> tuple[list[int], int]:
        """`rows[i]`: the logits after `feed[i]`. Returns the new tokens (-1 last at the end of
        generation) and how many of the fed tokens to drop from the context (rejected drafts)."""
        draft = self.feed[1:]
        out: list[int] = []
        kept = 0
        token = -1
        for i, guess in enumerate(draft):
            token = self.pick(rows[i])
            if token != guess:
                break
            self._take(token)
            out.append(token)
            kept += 1
        else:
            token = self.pick(rows[len(draft)])
        self.drafted += len(draft)
        self.kept += kept
        drop = len(draft) - kept
        if token < 0:
            self.feed = []
            return [*out, -1], drop
        self._take(token)
        out.append(token)
        more = self.lookup and not drop
        self.feed = [
            token,
            *(lookup_draft(self.seq, LOOKUP_DRAFT, history=self.history) if more else []),
        ]
        return out, drop

    def close(self) -> None:
        if self.check is not None:
            self.check.close()
            self.check = None


def pick(
    logits: np.ndarray,
    check: TokenFilter | None,
    eog: np.ndarray,
    rng: np.random.Generator,
    temperature: float,
    top_k: int,
    top_p: float,
) -> int:
    """One token: the first of (the sampler's own pick, its `CHECK_FIRST` best candidates, the
    whole vocabulary) that leaves a candidate the grammar allows. -1: nothing is allowed."""
    n = len(logits)
    k = n if top_k <= 0 else min(top_k, n)
    if temperature <= 0:
        first = np.array([int(np.argmax(logits))], dtype=np.int32)
    else:
        first = _truncate(logits, k, top_p, temperature)
    stages = [first]
    if check is not None:
        m = min(max(CHECK_FIRST, k if k < n else 0), n)
        top = np.argpartition(-logits, m - 1)[:m].astype(np.int32) if m < n else None
        if top is not None:
            stages.append(np.union1d(top, eog).astype(np.int32))
        stages.append(np.arange(n, dtype=np.int32))
    for ids in stages:
        vals = logits[ids].astype(np.float32)
        if check is not None:
            vals = check.allowed(ids, vals)
        ok = np.isfinite(vals)
        if not ok.any():
            continue
        ids, vals = ids[ok], vals[ok]
        if temperature <= 0:
            return int(ids[int(np.argmax(vals))])
        if len(ids) > k:  # the truncation the sampler applies, over the allowed tokens
            keep = np.argpartition(-vals, k - 1)[:k]
            ids, vals = ids[keep], vals[keep]
        ids, probs = _nucleus(ids, _softmax(vals / temperature), top_p)
        return int(rng.choice(ids, p=probs / probs.sum()))
    return -1


def _truncate(logits: np.ndarray, k: int, top_p: float, temperature: float) -> np.ndarray:
    """The candidates top-k / top-p sampling may pick (the sampler's first guess)."""
    ids = np.argpartition(-logits, k - 1)[:k].astype(np.int32) if k < len(logits) else None
    if ids is None:
        ids = np.arange(len(logits), dtype=np.int32)
    return _nucleus(ids, _softmax(logits[ids] / temperature), top_p)[0]


def _nucleus(ids: np.ndarray, probs: np.ndarray, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """The most likely `ids` whose probabilities first reach `top_p` (all of them at 1.0)."""
    if top_p >= 1.0:
        return ids, probs
    order = np.argsort(-probs)
    cut = int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1
    return ids[order[:cut]], probs[order[:cut]]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()


def lookup_draft(
    seq: Sequence[int],
    n_draft: int,
    ngram: int = LOOKUP_NGRAM,
    history: Iterable[Sequence[int]] = (),
) -> list[int]:
    """The tokens that followed the latest earlier occurrence of `seq`'s last `ngram` tokens in
    `seq`, else in the first of `history` (earlier completions, newest first) that has one."""
    if len(seq) <= ngram:
        return []
    tail = list(seq[-ngram:])
    first = tail[0]
    for source in (seq, *history):  # `seq`'s own tail starts after the range: never matched
        for start in range(len(source) - ngram - 1, -1, -1):
            if source[start] == first and list(source[start : start + ngram]) == tail:
                draft = list(source[start + ngram : start + ngram + n_draft])
                if draft:
                    return draft
    return []
