"""The one place that talks to llama.cpp: llama-cpp-python's low-level ctypes API (`llama_cpp.llama_cpp`).

The engine (`masksearch.models.llamacpp_engine`) owns its model, context and batch through the
binding's public C functions (`llama_model_load_from_file`, `llama_init_from_model`,
`llama_batch_init`, `llama_decode` with several sequence ids per batch, `llama_memory_seq_*`,
`llama_sampler_init_grammar` …) instead of reaching into `llama_cpp.Llama`'s private attributes.
Those functions mirror llama.h one for one, and llama.h changes between releases (struct fields,
renamed functions), so this module checks the binding's version at import and
`tests/test_llamacpp_capi.py` checks every function and struct field used here: a binding
upgrade fails that test loudly instead of crashing or silently misbehaving at run time.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

import numpy as np

from masksearch.errors import ConfigError

BINDING_VERSION = "0.3.36"  # the llama-cpp-python release this adapter is written against
FUNCTIONS = (
    "llama_backend_init",
    "llama_log_set",
    "llama_model_default_params",
    "llama_model_load_from_file",
    "llama_model_free",
    "llama_model_get_vocab",
    "llama_model_meta_val_str",
    "llama_context_default_params",
    "llama_init_from_model",
    "llama_free",
    "llama_set_n_threads",
    "llama_get_memory",
    "llama_memory_seq_rm",
    "llama_memory_clear",
    "llama_batch_init",
    "llama_batch_free",
    "llama_decode",
    "llama_get_logits_ith",
    "llama_vocab_n_tokens",
    "llama_vocab_is_eog",
    "llama_vocab_bos",
    "llama_vocab_eos",
    "llama_vocab_get_text",
    "llama_tokenize",
    "llama_token_to_piece",
    "llama_sampler_init_grammar",
    "llama_sampler_apply",
    "llama_sampler_accept",
    "llama_sampler_free",
)
CONTEXT_FIELDS = (
    *("n_ctx", "n_batch", "n_ubatch", "n_seq_max", "n_threads", "n_threads_batch"),
    *("flash_attn_type", "kv_unified", "no_perf"),
)
BATCH_FIELDS = ("n_tokens", "token", "pos", "n_seq_id", "seq_id", "logits")

_init_lock = threading.Lock()
_initialised = False
_log_callback: Any = None  # kept alive: llama.cpp holds a pointer to it


def capi() -> Any:
    """`llama_cpp.llama_cpp`, after checking the binding's version (ConfigError if missing or
    another release: its C structs may differ from what this module fills in)."""
    global _initialised, _log_callback
    try:
        import llama_cpp
        from llama_cpp import llama_cpp as c
    except ImportError as e:
        raise ConfigError(
            f"local GGUF models need llama-cpp-python=={BINDING_VERSION}: "
            f"pip install llama-cpp-python=={BINDING_VERSION} ({e})"
        ) from None
    if llama_cpp.__version__ != BINDING_VERSION:
        raise ConfigError(
            f"llama-cpp-python {llama_cpp.__version__} is installed; masksearch's llama.cpp "
            f"adapter is written for {BINDING_VERSION} (pip install "
            f"llama-cpp-python=={BINDING_VERSION}, or update masksearch/models/llamacpp_capi.py "
            "and run tests/test_llamacpp_capi.py)"
        )
    with _init_lock:
        if not _initialised:
            c.llama_backend_init()

            @c.llama_log_callback
            def quiet(level: int, text: bytes, user_data: Any) -> None:
                if level == 4:  # GGML_LOG_LEVEL_ERROR
                    print(text.decode("utf-8", errors="replace"), end="", flush=True)

            _log_callback = quiet
            c.llama_log_set(quiet, ctypes.c_void_p(0))
            _initialised = True
    return c


class Model:
    """A GGUF model's weights (memory-mapped) and vocabulary."""

    def __init__(self, path: Path, *, repack: bool = True) -> None:
        c = capi()
        params = c.llama_model_default_params()
        params.use_extra_bufts = repack  # llama.cpp's repacked CPU weight layouts
        ptr = c.llama_model_load_from_file(str(path).encode("utf-8"), params)
        if not ptr:
            raise ConfigError(f"cannot load GGUF model {path}")
        self.ptr = ptr
        self.vocab = c.llama_model_get_vocab(ptr)
        self.n_vocab = int(c.llama_vocab_n_tokens(self.vocab))
        self.bos = int(c.llama_vocab_bos(self.vocab))
        self.eos = int(c.llama_vocab_eos(self.vocab))
        eog = [t for t in range(self.n_vocab) if c.llama_vocab_is_eog(self.vocab, t)]
        self.eog = np.array(eog, dtype=np.int32)
        self._eog = set(eog)
        self._pieces: dict[int, bytes] = {}

    def is_eog(self, token: int) -> bool:
        return token in self._eog

    def meta(self, key: str) -> str | None:
        c = capi()
        size = 1 << 16
        buf = ctypes.create_string_buffer(size)
        n = c.llama_model_meta_val_str(self.ptr, key.encode("utf-8"), buf, size)
        if n < 0:
            return None
        if n >= size:  # a longer value (a big chat template): read it whole
            buf = ctypes.create_string_buffer(n + 1)
            c.llama_model_meta_val_str(self.ptr, key.encode("utf-8"), buf, n + 1)
        return buf.value.decode("utf-8")

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return capi().llama_vocab_get_text(self.vocab, token).decode("utf-8", errors="ignore")

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        c = capi()
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (c.llama_token * cap)()
        n = c.llama_tokenize(self.vocab, data, len(data), buf, cap, False, special)
        if n < 0:
            cap = -n
            buf = (c.llama_token * cap)()
            n = c.llama_tokenize(self.vocab, data, len(data), buf, cap, False, special)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as nothing), cached."""
        got = self._pieces.get(token)
        if got is None:
            c = capi()
            buf = ctypes.create_string_buffer(64)
            n = c.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = c.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
            got = self._pieces[token] = buf.raw[:n]
        return got

    def detokenize(self, tokens: list[int]) -> bytes:
        return b"".join(self.piece(t) for t in tokens)

    def close(self) -> None:
        if self.ptr:
            capi().llama_model_free(self.ptr)
            self.ptr = None


class Context:
    """A llama.cpp context with `n_seq` KV sequences, and its batch.

    `unified=False` (default): each sequence attends only over its own part of the KV cache. In
    one unified cache every token's attention runs over the cells of all sequences (masked), which
    made the main job's steps much slower once several long observer prompts were cached
    (benchmarks/RESULTS.md); the price is that llama.cpp splits a step into ubatches holding the
    same number of tokens of consecutive sequences."""

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int,
        n_seq: int,
        n_batch: int,
        n_ubatch: int | None = None,
        n_threads: int,
        flash_attn: bool = True,
        unified: bool = False,
    ) -> None:
        c = capi()
        params = c.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_ubatch or n_batch
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = n_threads
        params.flash_attn_type = (
            c.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else c.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.kv_unified = unified
        params.no_perf = True
        ptr = c.llama_init_from_model(model.ptr, params)
        if not ptr:
            raise ConfigError(f"cannot create a llama.cpp context (n_ctx={n_ctx}, n_seq={n_seq})")
        self.ptr = ptr
        self.model = model
        self.n_batch = n_batch
        self.n_ubatch = n_ubatch or n_batch
        self.threads = n_threads
        self.mem = c.llama_get_memory(ptr)
        self.batch = c.llama_batch_init(n_batch, 0, 1)
        self._n = 0

    def set_threads(self, n: int) -> None:
        if n != self.threads:
            capi().llama_set_n_threads(self.ptr, n, n)
            self.threads = n

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append one token to the next decode's batch; its row index in the batch."""
        b, i = self.batch, self._n
        b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits
        self._n += 1
        return i

    def unadd(self, n: int) -> None:
        """Take the last `n` tokens out of the next decode's batch."""
        self._n -= n

    @property
    def pending(self) -> int:
        return self._n

    def decode(self) -> None:
        """Evaluate the tokens added since the last decode (all sequences in one step)."""
        self.batch.n_tokens = self._n
        self._n = 0
        rc = capi().llama_decode(self.ptr, self.batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc}): the KV cache is full?")

    def logits(self, row: int) -> np.ndarray:
        """The logits after batch row `row` of the last decode (a view into llama.cpp's buffer,
        valid until the next decode)."""
        ptr = capi().llama_get_logits_ith(self.ptr, row)
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,))

    def forget(self, seq: int, start: int = 0) -> bool:
        """Drop sequence `seq`'s tokens from position `start` on."""
        return bool(capi().llama_memory_seq_rm(self.mem, seq, start, -1))

    def clear(self) -> None:
        capi().llama_memory_clear(self.mem, True)

    def close(self) -> None:
        if self.ptr:
            c = capi()
            c.llama_batch_free(self.batch)
            c.llama_free(self.ptr)
            self.ptr = None


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class GrammarCheck:
    """A llama.cpp grammar sampler used as a filter: which of these tokens may come next?

    llama-cpp-python's sampler chain runs the grammar over the whole vocabulary at every step (cost
    ~ vocabulary × grammar stacks: seconds per token for a span grammar over many passages). Here
    the sampler asks only about the few tokens it is about to pick, as llama.cpp's own
    `common_sampler` does, and falls back to the whole vocabulary only when none of them fits."""

    def __init__(self, model: Model, gbnf: str) -> None:
        c = capi()
        self._c = c
        self._ptr = c.llama_sampler_init_grammar(model.vocab, gbnf.encode("utf-8"), b"root")
        if not self._ptr:
            raise ConfigError(f"invalid output grammar: {gbnf[:200]!r}")

    def allowed(self, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """The logits of `ids`, -inf where the grammar rejects the token."""
        c = self._c
        data = np.zeros(len(ids), dtype=_TOKEN_DATA)
        data["id"], data["logit"] = ids, logits
        arr = c.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(c.llama_token_data)),
            size=len(ids),
            selected=-1,
            sorted=False,
        )
        c.llama_sampler_apply(self._ptr, ctypes.byref(arr))
        return data["logit"].copy()

    def accept(self, token: int) -> None:
        self._c.llama_sampler_accept(self._ptr, token)

    def close(self) -> None:
        if self._ptr:
            self._c.llama_sampler_free(self._ptr)
            self._ptr = None
