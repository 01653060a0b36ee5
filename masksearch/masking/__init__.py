"""RAMP masking: pick salient spans of corpus passages and mask them by offset.

Strategies: `rule` (regex heuristics, default), `spacy` (optional), `llm` (chat model → JSON
spans), `ppl` (rule candidates ranked by a causal LM's loss). See docs/masking.md.
"""

from masksearch.masking.io import load_masked, parse_example
from masksearch.masking.rule import extract_rule_spans
from masksearch.masking.runner import (
    STRATEGIES,
    MaskSettings,
    MaskSummary,
    RuleSpanProposer,
    make_strategy,
    mask_corpus,
    mask_passages,
)
from masksearch.masking.select import (
    MASK_TOKEN,
    KDist,
    MaskConfig,
    apply_masks,
    fill_masks,
    filter_candidates,
)

__all__ = [
    "MASK_TOKEN",
    "STRATEGIES",
    "KDist",
    "MaskConfig",
    "MaskSettings",
    "MaskSummary",
    "RuleSpanProposer",
    "apply_masks",
    "extract_rule_spans",
    "fill_masks",
    "filter_candidates",
    "load_masked",
    "make_strategy",
    "mask_corpus",
    "mask_passages",
    "parse_example",
]
