"""RL rollouts on llama.cpp for CPU training: the live policy written to GGUF, decoded batched.

On a CPU, transformers `generate` decodes a small policy several times slower than llama.cpp
(benchmarks/RESULTS.md), and rollouts are most of an RL step. `LlamaCppGenerator` keeps the
contract of `SearchRollout`'s `GenerateFn` (token contexts in; the new token ids out, a stop
string's tokens and the closing EOS kept, as HF `generate` gives them) and decodes with the
project's batched llama.cpp engine (`models.llamacpp_engine`): every running episode of a batch
advances in one shared decode step, and an episode's next turn reuses its cached prefix.

Weights: before a rollout, `sync(model, version)` writes the policy's current weights into a copy
of the base GGUF (`models.students.write_model_gguf`: metadata and tokenizer copied, a LoRA adapter
merged for the copy) whenever `version` (the trainer's optimizer step) moved since the last
write, and loads it. Q8_0 is the default, the precision every evaluated model is served at; `f16`
or `f32` bring the sampler closer to the policy at some decode speed.

No sampling logprobs are returned: the trainer computes the policy's own, as it does after HF
`generate`, so the loss is the policy's; the sampler differs from it only by the GGUF's rounding
(the same kind of engine mismatch vLLM rollouts have). An end-of-generation token other than the
tokenizer's EOS (llama.cpp stops at every one) is returned as the tokenizer's EOS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from masksearch.student import Decoding

log = logging.getLogger(__name__)


class LlamaCppGenerator:
    """A `GenerateFn` over llama.cpp, following the policy's weights through `sync`."""

    def __init__(
        self,
        base_gguf: str | Path,
        decoding: Decoding,
        *,
        eos_id: int | None,
        workdir: str | Path,
        n_ctx: int,
        parallel: int = 8,
        n_threads: int | None = None,
        qtype: str = "q8_0",
        seed: int = 0,
    ) -> None:
        self.base = base_gguf
        self.decoding = decoding
        self.eos_id = eos_id
        self.workdir = Path(workdir)
        self.n_ctx = int(n_ctx)
        self.parallel = max(1, int(parallel))
        self.n_threads = n_threads
        self.qtype = qtype
        self._rng = np.random.default_rng(seed)
        self._version: Any = None
        self._model: Any = None
        self._ctx: Any = None
        self._engine: Any = None
        self.stats: dict[str, float] = {"syncs": 0, "sync_s": 0.0, "tokens": 0, "generate_s": 0.0}

    # -- weights -----------------------------------------------------------------------------------
    def sync(self, model: Any, version: Any) -> bool:
        """Write and load the policy's weights unless `version` is the one loaded. True: reloaded."""
        if self._engine is not None and version == self._version:
            return False
        from masksearch.models.llamacpp import N_BATCH, physical_cores
        from masksearch.models.llamacpp_capi import Context, Model
        from masksearch.models.llamacpp_engine import Engine
        from masksearch.models.students import write_model_gguf

        start = time.perf_counter()
        self.close()
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = write_model_gguf(model, self.base, self.workdir / "policy.gguf", qtype=self.qtype)
        self._model = Model(path)
        self._ctx = Context(
            self._model,
            n_ctx=self.n_ctx * self.parallel,
            n_seq=self.parallel,
            n_batch=N_BATCH,
            n_threads=self.n_threads or physical_cores(),
        )
        self._engine = Engine(self._ctx, n_seq=self.parallel, parallel=self.parallel)
        self._version = version
        seconds = time.perf_counter() - start
        self.stats["syncs"] += 1
        self.stats["sync_s"] += seconds
        self.stats["last_sync_s"] = seconds
        log.debug("rollout weights synced (version %s) in %.1f s", version, seconds)
        return True

    def close(self) -> None:
        """Stop the engine and free the context and weights (the next `sync` loads again)."""
        if self._engine is not None:
            self._engine.close()
        if self._ctx is not None:
            self._ctx.close()
        if self._model is not None:
            self._model.close()
        self._engine = self._ctx = self._model = None

    # -- generation --------------------------------------------------------------------------------
    def __call__(
        self, contexts: list[list[int]], max_new_tokens: int, stop: Sequence[str]
    ) -> tuple[list[list[int]], None]:
        """Each context's continuation: up to `max_new_tokens` tokens, ending with the token that
        completes a stop string, or with EOS."""
        from masksearch.models.llamacpp_engine import Request
        from masksearch.models.llamacpp_sampling import LOOKUP_DRAFT, Decoder

        if self._engine is None:
            raise RuntimeError("LlamaCppGenerator.sync(model, version) must run before generating")
        start = time.perf_counter()
        d = self.decoding
        stops = [s for s in stop if s]
        requests = []
        for ids in contexts:
            room = self.n_ctx - len(ids) - 1 - (LOOKUP_DRAFT if d.greedy else 0)  # drafts' cells
            if room < 1:
                raise ValueError(
                    f"a rollout context of {len(ids)} tokens does not fit the engine's "
                    f"n_ctx={self.n_ctx}"
                )
            decoder = Decoder(
                ids,
                eog=self._model.eog,
                temperature=d.temperature,
                top_k=0,  # as HF `generate` samples (top_k=0: no top-k cut)
                top_p=d.top_p,
                repeat_penalty=d.repetition_penalty,
                seed=int(self._rng.integers(2**31)),
                lookup=d.greedy,
            )
            requests.append(
                self._engine.submit(Request(ids, decoder, max(1, min(max_new_tokens, room))))
            )
        out = [self._collect(r, stops) for r in requests]
        self.stats["tokens"] += sum(len(o) for o in out)
        self.stats["generate_s"] += time.perf_counter() - start
        return out, None

    def _collect(self, req: Any, stops: list[str]) -> list[int]:
        ids: list[int] = []
        try:
            for token in req.tokens():
                ids.append(token)
                if stops:
                    text = self._model.detokenize(ids).decode("utf-8", errors="ignore")
                    if any(s in text for s in stops):
                        return ids
            if req.finish == "stop" and self.eos_id is not None:
                ids.append(int(self.eos_id))
            return ids
        finally:
            req.stop.set()  # leave the batch at the next step


def policy_base_gguf(model_spec: str, gguf_base: str | None) -> str | None:
    """The GGUF whose metadata and tokenizer CPU rollouts copy: `gguf_base` when given, else the
    policy's own name when it is an embedded model (`local:smollm2-135m`), else the base recorded
    in the checkpoint converted from one (its `masksearch-student.json`); None if none is known."""
    from masksearch.models.students import MARKER, embedded_name

    if gguf_base:
        return gguf_base
    if embedded_name(model_spec) is not None:
        return model_spec
    marker = Path(model_spec) / MARKER
    if marker.is_file():
        import json

        name = json.loads(marker.read_text(encoding="utf-8")).get("model")
        return f"local:{name}" if name else None
    return None
