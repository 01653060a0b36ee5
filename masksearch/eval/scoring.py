"""Answer extraction and per-question scoring."""

from __future__ import annotations

import re
from typing import Any

from masksearch.eval import metrics
from masksearch.eval.items import EvalItem

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_OPEN_ANSWER = re.compile(r"<answer>(?!.*<answer>)(.*)$", re.DOTALL | re.IGNORECASE)

# Metrics every result carries (fractions in [0, 1]); `loose_acc` only where the item has a
# structured FanoutQA reference, `judge` only with --judge-model.
CORE_METRICS = ("recall", "em", "f1", "precision", "cover_em", "acc")


def extract_answer(response: str) -> str:
    """The last complete `<answer>…</answer>`; else the text after a final unclosed `<answer>`
    (cut off by max_tokens); else the whole response, stripped."""
    response = response or ""
    found = _ANSWER.findall(response)
    if found:
        return " ".join(found[-1].split())
    tail = _OPEN_ANSWER.search(response)
    if tail and tail.group(1).strip():
        return " ".join(tail.group(1).split())
    return response.strip()


def score_prediction(prediction: str, item: EvalItem) -> dict[str, float]:
    """All rule metrics of one prediction against the item's gold aliases (max over aliases)."""
    golds = item.golden_answers
    scores = {
        "recall": metrics.token_recall(prediction, golds),
        "em": metrics.exact_match(prediction, golds),
        "f1": metrics.f1(prediction, golds),
        "precision": metrics.precision(prediction, golds),
        "cover_em": metrics.cover_exact_match(prediction, golds),
        "acc": metrics.substring_match(prediction, golds),
    }
    if item.reference is not None:
        scores["loose_acc"] = metrics.fanout_loose_accuracy(prediction, item.reference)
    return scores


def zero_scores(item: EvalItem) -> dict[str, Any]:
    """Scores of a failed run (counted as 0, like a missing prediction in the official scripts)."""
    scores = dict.fromkeys(CORE_METRICS, 0.0)
    if item.reference is not None:
        scores["loose_acc"] = 0.0
    return scores
