"""THE scoring rules: answer metrics, the RAMP acceptance rule and judge verdicts.

The graph's judge node, the RL rewards and eval all score through here.

- Metrics use SQuAD normalisation and the official HotpotQA yes/no/noanswer rule
  (`hotpot_evaluate_v1.py`); with several gold aliases each metric is maxed independently
  (FlashRAG). `mask_recall` is the MaskSearch token-level recall of all masked spans jointly.
- `ramp_correct` is when a RAMP answer counts as correct (trajectory accepted, RL "correct"):
  the answer split on `;` must have exactly one part per masked span, and part i must match
  span i — normalised exact match, or token F1 >= `SPAN_F1_THRESHOLD` (0.8). The F1 bound also
  bounds padding: a part that contains its span needs precision >= 2/3, i.e. at most 1.5x the
  span's tokens, so a pasted passage (or a list of candidates) fails however much it recalls.
- `answer_correct(prediction, answers, task)`: `ramp_correct` for RAMP; for QA, token recall
  >= `recall_threshold` (max over aliases), the graph's QA acceptance rule.
- `task_of(state)`: the task an example is scored as (`ramp` or `qa`), from its `task` field
  or, when that is empty, from its question.
- `is_no_answer`: an answer that normalises to nothing or copies a prompt example.
- `is_prompt_example`: an answer that copies an example shown in the student's prompt
  (`prompts.STUDENT_PROMPT_EXAMPLES`) is no answer: `score_answer` gives it 0 on every metric and
  `answer_correct` rejects it, so a copied example can never be right.
- `parse_verdict`: an LLM judge's reply → True / False / None (unclear).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from masksearch.prompts import SPAN_SEPARATOR, STUDENT_PROMPT_EXAMPLES, is_mask_question
from masksearch.tagformat import extract_tag

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPECIAL = {"yes", "no", "noanswer"}

# Per-span token F1 needed (besides normalised exact match) for a span to count as filled.
SPAN_F1_THRESHOLD = 0.8
_EPS = 1e-9


def normalize_answer(s: str) -> str:
    """lower → strip punctuation → drop articles → collapse whitespace (hotpot_evaluate_v1)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def is_prompt_example(prediction: str | None) -> bool:
    """Does the answer copy an answer the student prompt shows (`prompts.STUDENT_PROMPT_EXAMPLES`)?
    Compared after normalisation, so `<answer> And. </answer>` is a copy too."""
    p = normalize_answer(prediction or "")
    return bool(p) and any(p == normalize_answer(e) for e in STUDENT_PROMPT_EXAMPLES)


def is_no_answer(prediction: str | None) -> bool:
    """Does the answer say nothing: empty after normalisation (only punctuation or articles, such
    as a prompt format's `...` placeholder), or a copy of a prompt example? Every metric scores
    such an answer 0."""
    return not normalize_answer(prediction or "") or is_prompt_example(prediction)


def _golds(gold: str | Sequence[str]) -> list[str]:
    golds = [gold] if isinstance(gold, str) else [str(g) for g in gold]
    return golds or [""]


def exact_match(pred: str, gold: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold alias. A prediction that
    normalises to nothing (no answer, or only punctuation/articles) never matches, not even a
    gold alias that normalises to nothing too (`A+`, `---`): no answer scores 0 on every metric."""
    p = normalize_answer(pred or "")
    return float(bool(p) and any(p == normalize_answer(g) for g in _golds(gold)))


def cover_exact_match(pred: str, gold: str | Sequence[str]) -> float:
    """Cover-EM: a normalised gold alias occurs in the normalised prediction at token boundaries."""
    p = f" {normalize_answer(pred)} "
    return float(any(f" {normalize_answer(g)} " in p for g in _golds(gold) if normalize_answer(g)))


def substring_match(pred: str, gold: str | Sequence[str]) -> float:
    """FlashRAG `acc` / Search-R1 `subem`: a normalised gold is a plain substring of the normalised
    prediction (no word boundary, so "1" matches "1995"); `cover_exact_match` is the stricter,
    token-boundary variant."""
    p = normalize_answer(pred)
    return float(any(normalize_answer(g) in p for g in _golds(gold) if normalize_answer(g)))


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


# -- RAMP: span by span -------------------------------------------------------------------------


def split_spans(prediction: str) -> list[str]:
    """The parts of a RAMP answer (`a ; b ; c`, any spacing around `;`), stripped, empties dropped."""
    sep = SPAN_SEPARATOR.strip()
    return [p.strip() for p in (prediction or "").split(sep) if p.strip()]


def span_match(part: str, span: str) -> bool:
    """One predicted part fills one masked span: normalised EM or token F1 >= SPAN_F1_THRESHOLD."""
    if normalize_answer(part) == normalize_answer(span):
        return True
    return f1_prec_recall(part, span)[0] >= SPAN_F1_THRESHOLD - _EPS


def span_matches(prediction: str, spans: Sequence[str]) -> list[bool]:
    """Per masked span, in order: is it filled by the prediction's part at the same position?
    (A missing part is False; extra parts are ignored here, `ramp_correct` rejects them.)"""
    parts = split_spans(prediction)
    return [i < len(parts) and span_match(parts[i], s) for i, s in enumerate(spans)]


def span_recall(prediction: str, spans: Sequence[str]) -> float:
    """Fraction of masked spans filled in order (`span_matches`)."""
    matches = span_matches(prediction, spans)
    return sum(matches) / len(matches) if matches else 0.0


def span_score(prediction: str, spans: Sequence[str]) -> float:
    """The strict span rule with partial credit: spans filled in order (`span_matches`) over
    max(#spans, #parts), so extra parts (a padded list of candidates) cost credit as missing ones
    do. 1.0 exactly when `ramp_correct`; a reversed answer fills nothing."""
    spans = [s for s in spans if s.strip()]
    if not spans or not prediction:
        return 0.0
    parts = split_spans(prediction)
    return sum(span_matches(prediction, spans)) / max(len(spans), len(parts))


def ramp_correct(prediction: str, spans: Sequence[str]) -> bool:
    """THE RAMP acceptance rule (see module docstring): one part per span, each matched in order."""
    spans = [s for s in spans if s.strip()]
    if not spans or not prediction:
        return False
    return len(split_spans(prediction)) == len(spans) and all(span_matches(prediction, spans))


# -- one answer, all rule scores ----------------------------------------------------------------


def score_answer(prediction: str, answers: Sequence[str], task: str) -> dict[str, float]:
    """Rule scores of one answer. RAMP (`answers` = masked spans in order): `recall` =
    `mask_recall`, `em`/`f1` against the ` ; `-joined spans, `span_recall`, `correct`
    (`ramp_correct`). QA (`answers` = aliases): recall, em, f1, max over aliases.
    An empty prediction scores 0; no gold answers → {}."""
    answers = [a for a in answers if a.strip()]
    if not answers:
        return {}
    prediction = "" if is_prompt_example(prediction) else (prediction or "")
    if task == "ramp":
        gold = SPAN_SEPARATOR.join(answers)
        return {
            "recall": mask_recall(prediction, answers),
            "em": exact_match(prediction, gold) if prediction else 0.0,
            "f1": f1(prediction, gold) if prediction else 0.0,
            "span_recall": span_recall(prediction, answers),
            "correct": float(ramp_correct(prediction, answers)),
        }
    if not prediction:
        return {"recall": 0.0, "em": 0.0, "f1": 0.0}
    return {
        "recall": token_recall(prediction, answers),
        "em": exact_match(prediction, answers),
        "f1": f1(prediction, answers),
    }


def answer_correct(
    prediction: str | None, answers: Sequence[str], task: str, *, recall_threshold: float = 0.5
) -> bool:
    """Is the answer correct? RAMP: `ramp_correct`. QA: token recall >= `recall_threshold`. A copy
    of a prompt example (`is_prompt_example`) never is."""
    if not prediction or is_prompt_example(prediction):
        return False
    if task == "ramp":
        return ramp_correct(prediction, answers)
    answers = [a for a in answers if a.strip()]
    return bool(answers) and token_recall(prediction, answers) >= recall_threshold - _EPS


def gold_text(answers: Sequence[str], task: str) -> str:
    """Gold answers as one string for a judge prompt: spans ` ; `-joined (RAMP), aliases ` | `."""
    return (SPAN_SEPARATOR if task == "ramp" else " | ").join(answers)


# -- FanoutQA loose accuracy --------------------------------------------------------------------

# FanoutQA loose accuracy (fanoutqa/eval/string.py) without spaCy: the official `normalize`
# lower-cases, fixes mojibake (ftfy), drops thousands separators, lemmatises with spaCy
# `en_core_web_sm`, removes [,.?!:;] and collapses whitespace. Here every step but the
# lemmatisation is reproduced (ftfy is replaced by Unicode NFKC), so "countries" does not
# match "country" and clitics like "'s" stay attached; scores can be slightly lower than official.
_FANOUT_NUM_COMMAS = re.compile(r"(\d+,)+\d+(\.\d+)?")
_FANOUT_PUNCT = re.compile(r"[,.?!:;]")


def fanout_normalize(text: object) -> str:
    s = unicodedata.normalize("NFKC", str(text).lower())
    s = _FANOUT_NUM_COMMAS.sub(lambda m: m[0].replace(",", ""), s)
    s = _FANOUT_PUNCT.sub("", s)
    return re.sub(r"\s+", " ", s).strip()


def _fanout_leaves(reference: object) -> Iterator[str]:
    """The reference's strings: list items, dict keys AND values (recursively), or the one
    primitive (a bool as yes/no), each normalised."""
    if isinstance(reference, list):
        for r in reference:
            yield from _fanout_leaves(r)
    elif isinstance(reference, dict):
        for key, value in reference.items():
            yield from _fanout_leaves(key)
            yield from _fanout_leaves(value)
    elif isinstance(reference, bool):
        yield "yes" if reference else "no"
    else:
        yield fanout_normalize(reference)


def fanout_loose_accuracy(pred: str, reference: object) -> float:
    """FanoutQA loose accuracy: fraction of the reference's strings (list items, dict keys AND
    values, or the one primitive) found in the prediction at word boundaries after normalisation.

    Equal to the official score for flat references. For nested ones (a dict whose values are
    lists, a list of lists) every string counts once in the total: the official code counts a
    nested container as one item but all of its missing strings, so its score can go negative;
    this one stays in [0, 1]."""
    norm_pred = fanout_normalize(pred)
    leaves = list(_fanout_leaves(reference))
    if not leaves:
        return 1.0
    found = sum(re.search(rf"\b{re.escape(a)}\b", norm_pred) is not None for a in leaves)
    return found / len(leaves)


# -- judge verdicts -----------------------------------------------------------------------------

_VERDICT_WORD = r"\**\s*(correct|incorrect)\s*\.?\s*\**\s*\.?"
_VERDICT_LINE = re.compile(
    rf"^\s*\**\s*evaluation\s*\**\s*:\s*{_VERDICT_WORD}\s*$", re.IGNORECASE | re.MULTILINE
)
_VERDICT_ONLY = re.compile(rf"^\s*{_VERDICT_WORD}\s*$", re.IGNORECASE)


def parse_verdict(text: str) -> bool | None:
    """A judge reply → True (correct) / False (incorrect) / None (unclear, never accepted).

    Only an explicit verdict counts, in this order: a `<verdict>correct|incorrect</verdict>` tag
    (the last one; prompts.JUDGE), else whole `evaluation: correct|incorrect` lines
    (prompts.JUDGE_RELAXED; contradictory lines → None), else a reply that is nothing but the
    word. Free text that merely mentions "correct" ("The answer is not correct") is None, so no
    wording can be misread as a verdict.
    """
    text = text or ""
    tagged = extract_tag(text, "verdict", last=True)
    if tagged is not None:
        m = _VERDICT_ONLY.match(tagged)
        return None if m is None else m.group(1).lower() == "correct"
    lines = {v.lower() for v in _VERDICT_LINE.findall(text)}
    if lines:
        return lines.pop() == "correct" if len(lines) == 1 else None
    m = _VERDICT_ONLY.match(text)
    return None if m is None else m.group(1).lower() == "correct"


def task_of(example: Mapping[str, Any]) -> str:
    """The task an example (a graph state or a record) is scored as: its `task`, or `ramp` when
    its question has mask blanks and `qa` otherwise."""
    task = example.get("task")
    if task:
        return str(task)
    return "ramp" if is_mask_question(example.get("question", "")) else "qa"
