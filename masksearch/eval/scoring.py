"""Per-question scoring of eval items (every rule from `masksearch.scoring`)."""

from __future__ import annotations

from typing import Any

from masksearch import scoring
from masksearch.eval.items import EvalItem

# Metrics every result carries (fractions in [0, 1]); `loose_acc` only where the item has a
# structured FanoutQA reference, `judge` only with --judge-model.
CORE_METRICS = ("recall", "em", "f1", "precision", "cover_em", "acc")


def score_prediction(prediction: str, item: EvalItem) -> dict[str, float]:
    """All rule metrics of one prediction against the item's gold aliases (max over aliases).
    No answer (an empty prediction: the response had no complete `<answer>`) scores 0 on every
    metric, whatever the gold aliases are; so does a copy of an answer the student prompt shows
    (`scoring.is_prompt_example`)."""
    if not (prediction or "").strip() or scoring.is_prompt_example(prediction):
        return zero_scores(item)
    golds = item.golden_answers
    scores = {
        "recall": scoring.token_recall(prediction, golds),
        "em": scoring.exact_match(prediction, golds),
        "f1": scoring.f1(prediction, golds),
        "precision": scoring.precision(prediction, golds),
        "cover_em": scoring.cover_exact_match(prediction, golds),
        "acc": scoring.substring_match(prediction, golds),
    }
    if item.reference is not None:
        scores["loose_acc"] = scoring.fanout_loose_accuracy(prediction, item.reference)
    return scores


def zero_scores(item: EvalItem) -> dict[str, Any]:
    """Scores of a failed run (counted as 0, like a missing prediction in the official scripts)."""
    scores = dict.fromkeys(CORE_METRICS, 0.0)
    if item.reference is not None:
        scores["loose_acc"] = 0.0
    return scores
