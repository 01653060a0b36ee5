"""The llama.cpp adapter (`masksearch.models.llamacpp_capi`) against the installed binding.

These fail loudly when llama-cpp-python changes what the adapter relies on: its version, a C
function, a struct field. Update the adapter (and `BINDING_VERSION`) together with the pin."""

from __future__ import annotations

import numpy as np
import pytest

from masksearch.errors import ConfigError
from masksearch.models import llamacpp_capi

llama_cpp = pytest.importorskip("llama_cpp")


def test_the_binding_is_the_version_the_adapter_is_written_for():
    assert llama_cpp.__version__ == llamacpp_capi.BINDING_VERSION, (
        "llama-cpp-python changed: check masksearch/models/llamacpp_capi.py against the new "
        "llama.h (functions, struct fields) and bump BINDING_VERSION"
    )


def test_every_c_function_and_struct_field_the_adapter_uses_exists():
    from llama_cpp import llama_cpp as c

    missing = [f for f in llamacpp_capi.FUNCTIONS if not callable(getattr(c, f, None))]
    assert not missing, f"llama-cpp-python lost these functions: {missing}"

    def fields(struct: type) -> set[str]:
        return {name for name, *_ in struct._fields_}  # type: ignore[attr-defined]

    assert set(llamacpp_capi.CONTEXT_FIELDS) <= fields(c.llama_context_params)
    assert set(llamacpp_capi.BATCH_FIELDS) <= fields(c.llama_batch)
    assert "use_extra_bufts" in fields(c.llama_model_params)
    assert {"data", "size", "selected", "sorted"} <= fields(c.llama_token_data_array)
    assert {"id", "logit", "p"} == fields(c.llama_token_data)
    assert c.LLAMA_FLASH_ATTN_TYPE_DISABLED == 0 and c.LLAMA_FLASH_ATTN_TYPE_ENABLED == 1


def test_another_binding_version_is_a_config_error(monkeypatch):
    monkeypatch.setattr(llama_cpp, "__version__", "0.0.1")
    with pytest.raises(ConfigError, match="written for"):
        llamacpp_capi.capi()


def test_two_sequences_decode_in_one_batch():
    """One `llama_decode` over two sequences gives each the logits it gets alone."""
    from masksearch.models import embedded

    model = llamacpp_capi.Model(embedded.gguf_path("smollm2-135m"))
    ctx = llamacpp_capi.Context(model, n_ctx=512, n_seq=2, n_batch=64, n_threads=1)
    try:
        a, b = model.tokenize("The capital of France is"), model.tokenize("One, two, three,")
        for i, t in enumerate(a):
            ctx.add(t, i, 0, i == len(a) - 1)
        ctx.decode()
        alone = ctx.logits(len(a) - 1).copy()
        ctx.clear()
        rows = [ctx.add(t, i, 0, i == len(a) - 1) for i, t in enumerate(a)]
        rows += [ctx.add(t, i, 1, i == len(b) - 1) for i, t in enumerate(b)]
        ctx.decode()
        both = ctx.logits(rows[len(a) - 1])
        assert np.isfinite(both).all() and int(np.argmax(both)) == int(np.argmax(alone))
        assert model.detokenize(a).decode() == "The capital of France is"
        assert ctx.forget(1, 2) and len(model.eog) >= 1 and model.meta("general.name")
    finally:
        ctx.close()
