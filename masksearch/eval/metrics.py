"""Answer metrics with SQuAD normalisation and the official HotpotQA yes/no/noanswer rule."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPECIAL = {"yes", "no", "noanswer"}


def normalize_answer(s: str) -> str:
    """lower → strip punctuation → drop articles → collapse whitespace (hotpot_evaluate_v1)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _golds(gold: str | Sequence[str]) -> list[str]:
    golds = [gold] if isinstance(gold, str) else [str(g) for g in gold]
    return golds or [""]


def exact_match(pred: str, gold: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold alias."""
    p = normalize_answer(pred)
    return float(any(p == normalize_answer(g) for g in _golds(gold)))


def cover_exact_match(pred: str, gold: str | Sequence[str]) -> float:
    """Cover-EM / substring accuracy: a normalised gold alias occurs in the normalised prediction."""
    p = f" {normalize_answer(pred)} "
    return float(any(f" {normalize_answer(g)} " in p for g in _golds(gold) if normalize_answer(g)))


def f1_prec_recall(pred: str, gold: str) -> tuple[float, float, float]:
    """Official HotpotQA token F1, precision and recall against one gold string."""
    np_, ng = normalize_answer(pred), normalize_answer(gold)
    if np_ in _SPECIAL and np_ != ng:
        return 0.0, 0.0, 0.0
    if ng in _SPECIAL and np_ != ng:
        return 0.0, 0.0, 0.0
    pt, gt = np_.split(), ng.split()
    same = sum((Counter(pt) & Counter(gt)).values())
    if same == 0:
        return 0.0, 0.0, 0.0
    prec, rec = same / len(pt), same / len(gt)
    return 2 * prec * rec / (prec + rec), prec, rec


def f1(pred: str, gold: str | Sequence[str]) -> float:
    return max(f1_prec_recall(pred, g)[0] for g in _golds(gold))


def precision(pred: str, gold: str | Sequence[str]) -> float:
    return max(f1_prec_recall(pred, g)[1] for g in _golds(gold))


def token_recall(pred: str, gold: str | Sequence[str]) -> float:
    """Token-level recall (the MaskSearch paper's metric), max over gold aliases."""
    return max(f1_prec_recall(pred, g)[2] for g in _golds(gold))


def mask_recall(pred: str, spans: Sequence[str]) -> float:
    """Token-level recall of all masked spans jointly: fraction of gold span tokens found in `pred`.

    Counts multiplicity (a token needed twice must appear twice); no yes/no special case.
    """
    gold_tokens = Counter(t for s in spans for t in normalize_answer(s).split())
    total = sum(gold_tokens.values())
    if total == 0:
        return 0.0
    pred_tokens = Counter(normalize_answer(pred).split())
    return sum((gold_tokens & pred_tokens).values()) / total


def all_metrics(pred: str, gold: str | Sequence[str]) -> dict[str, float]:
    return {
        "em": exact_match(pred, gold),
        "f1": f1(pred, gold),
        "recall": token_recall(pred, gold),
        "precision": precision(pred, gold),
        "cover_em": cover_exact_match(pred, gold),
    }


def substring_match(pred: str, gold: str | Sequence[str]) -> float:
    """FlashRAG `acc` / Search-R1 `subem`: a normalised gold is a plain substring of the normalised
    prediction (no word boundary, so "1" matches "1995"); `cover_exact_match` is the stricter,
    token-boundary variant."""
    p = normalize_answer(pred)
    return float(any(normalize_answer(g) in p for g in _golds(gold) if normalize_answer(g)))


# FanoutQA loose accuracy (fanoutqa/eval/string.py) without spaCy: the official `normalize`
# lower-cases, fixes mojibake (ftfy), drops thousands separators, lemmatises with spaCy
# `en_core_web_sm`, removes [,.?!:;] and collapses whitespace. Here every step but the
# lemmatisation is reproduced (ftfy is replaced by Unicode NFKC), so "countries" does not
# match "country" and clitics like "'s" stay attached; scores can be slightly lower than official.
_FANOUT_NUM_COMMAS = re.compile(r"(\d+,)+\d+(\.\d+)?")
_FANOUT_PUNCT = re.compile(r"[,.?!:;]")


def fanout_normalize(text: object) -> str:
    import unicodedata

    s = unicodedata.normalize("NFKC", str(text).lower())
    s = _FANOUT_NUM_COMMAS.sub(lambda m: m[0].replace(",", ""), s)
    s = _FANOUT_PUNCT.sub("", s)
    return re.sub(r"\s+", " ", s).strip()


def _fanout_missing(reference: object, norm_pred: str) -> tuple[int, list[str]]:
    """(number of reference strings at this level, the normalised strings not found)."""
    if isinstance(reference, list):
        missing = [m for r in reference for m in _fanout_missing(r, norm_pred)[1]]
        return len(reference), missing
    if isinstance(reference, dict):
        parts = [*reference.keys(), *reference.values()]
        missing = [m for r in parts for m in _fanout_missing(r, norm_pred)[1]]
        return 2 * len(reference), missing
    if isinstance(reference, bool):
        reference = "yes" if reference else "no"
    ans = fanout_normalize(reference)
    found = re.search(rf"\b{re.escape(ans)}\b", norm_pred) is not None
    return 1, [] if found else [ans]


def fanout_loose_accuracy(pred: str, reference: object) -> float:
    """FanoutQA loose accuracy: fraction of the reference's strings (list items, dict keys AND
    values, or the one primitive) found in the prediction at word boundaries after normalisation.
    Nested containers count their missing strings against the outer total, as the official code does."""
    total, missing = _fanout_missing(reference, fanout_normalize(pred))
    if total == 0:
        return 1.0
    return (total - len(missing)) / total
