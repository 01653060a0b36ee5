"""Metrics against an oracle written after the official HotpotQA script, plus FanoutQA / judge rules."""

from __future__ import annotations

import random
import re
import string
from collections import Counter

import pytest

from masksearch import scoring
from masksearch.eval.items import EvalItem
from masksearch.eval.judge import LLMJudge
from masksearch.eval.scoring import score_prediction
from masksearch.scoring import parse_verdict
from masksearch.tagformat import final_answer

# ---------------------------------------------------------------- oracle: hotpot_evaluate_v1.py


def oracle_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def oracle_f1_score(prediction, ground_truth):
    normalized_prediction = oracle_normalize_answer(prediction)
    normalized_ground_truth = oracle_normalize_answer(ground_truth)
    ZERO_METRIC = (0, 0, 0)
    if (
        normalized_prediction in ["yes", "no", "noanswer"]
        and normalized_prediction != normalized_ground_truth
    ):
        return ZERO_METRIC
    if (
        normalized_ground_truth in ["yes", "no", "noanswer"]
        and normalized_prediction != normalized_ground_truth
    ):
        return ZERO_METRIC
    prediction_tokens = normalized_prediction.split()
    ground_truth_tokens = normalized_ground_truth.split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return ZERO_METRIC
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1, precision, recall


def oracle_exact_match_score(prediction, ground_truth):
    """The official rule, with our one deviation: a prediction that normalises to nothing never
    matches (the official script gives "" vs a gold like "A+" or "---" an exact match)."""
    normalized = oracle_normalize_answer(prediction)
    return bool(normalized) and normalized == oracle_normalize_answer(ground_truth)


TRICKY = [
    ("yes", "yes"),
    ("Yes.", "yes"),
    ("yes it is", "yes"),
    ("yes", "yes it is"),
    ("no", "No!"),
    ("noanswer", "noanswer"),
    ("no answer", "noanswer"),
    ("No", "Norway"),
    ("", ""),
    ("", "Paris"),
    ("Paris", ""),
    ("The Paris", "paris"),
    ("a an the", ""),
    ("the Danube", "Danube River"),
    ("U.S.A.", "USA"),
    ("U.S. Army", "the US army"),
    ("Hello, World!", "hello world"),
    ("Wisła", "Wisla"),
    ("Zürich", "zürich"),
    ("naïve café", "Naïve Café"),
    ("“quoted”", "quoted"),
    ("1,234", "1234"),
    ("3.5 million", "35 million"),
    ("New York New York", "New York"),
    ("the the the", "the"),
    ("Anne", "an"),
    ("theory of relativity", "the theory of relativity"),
    ("Ⅻ", "XII"),
    ("résumé", "resume"),
    ("Mar 4, 1907", "March 4 1907"),
    ("  spaced\tout\n", "spaced out"),
    ("AN apple", "apple"),
    ("Tenzing–Norgay", "Tenzing Norgay"),
    ("Ol' Blue", "ol blue"),
]


@pytest.mark.parametrize(("pred", "gold"), TRICKY)
def test_em_f1_recall_match_official_rules(pred, gold):
    f1, prec, rec = oracle_f1_score(pred, gold)
    assert scoring.normalize_answer(pred) == oracle_normalize_answer(pred)
    assert scoring.exact_match(pred, gold) == float(oracle_exact_match_score(pred, gold))
    assert scoring.f1(pred, gold) == pytest.approx(f1)
    assert scoring.precision(pred, gold) == pytest.approx(prec)
    assert scoring.token_recall(pred, gold) == pytest.approx(rec)


def test_yes_no_rule_examples():
    assert scoring.f1("yes it is", "yes") == 0.0
    assert scoring.token_recall("yes it is", "yes") == 0.0  # the special-token rule, not 1/1
    assert scoring.token_recall("Yes.", "yes") == 1.0
    assert scoring.exact_match("", "") == 0.0 and scoring.f1("", "") == 0.0


@pytest.mark.parametrize("gold", ["A+", "---", ")", "the", "a an"])
def test_no_answer_scores_zero_even_when_a_gold_alias_normalises_to_nothing(gold):
    """NQ-open has aliases such as `A+` and `---`: they normalise to "", like a missing answer."""
    assert scoring.normalize_answer(gold) == ""
    assert scoring.exact_match("", [gold, "Paris"]) == 0.0
    assert scoring.exact_match("?!", [gold]) == 0.0  # an answer of only punctuation is no answer
    item = EvalItem(id="q", question="Which grade?", golden_answers=[gold, "Paris"], dataset="nq")
    scores = score_prediction("", item)
    assert scores and set(scores.values()) == {0.0}, scores
    assert score_prediction("Paris", item)["em"] == 1.0


def test_random_strings_match_oracle():
    rng = random.Random(1234)
    vocab = [
        "the",
        "a",
        "an",
        "yes",
        "no",
        "noanswer",
        "Paris",
        "paris,",
        "New",
        "York",
        "1,000",
        "U.S.",
        "Zürich",
        "don't",
        "—",
        "!",
        "rock'n'roll",
        "x",
        "Y",
        "A.",
        "café",
        "42",
        "(",
        ")",
    ]
    for _ in range(600):
        pred = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 6)))
        golds = [
            " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 4)))
            for _ in range(rng.randint(1, 3))
        ]
        expect = [oracle_f1_score(pred, g) for g in golds]
        assert scoring.f1(pred, golds) == pytest.approx(max(e[0] for e in expect))
        assert scoring.precision(pred, golds) == pytest.approx(max(e[1] for e in expect))
        assert scoring.token_recall(pred, golds) == pytest.approx(max(e[2] for e in expect))
        assert scoring.exact_match(pred, golds) == float(
            any(oracle_exact_match_score(pred, g) for g in golds)
        )


def test_alias_max_is_per_metric():
    golds = ["Vistula", "Vistula River"]
    assert scoring.exact_match("the vistula river", golds) == 1.0
    assert scoring.token_recall("Vistula", golds) == 1.0  # 1/1 against the first alias
    assert scoring.f1("Vistula in Poland", golds) == pytest.approx(
        max(2 * (1 / 3) / (1 / 3 + 1), 2 * (1 / 3 * 1 / 2) / (1 / 3 + 1 / 2))
    )


def test_cover_em_is_token_bounded_and_substring_is_not():
    assert scoring.cover_exact_match("It was built in 1889 in Paris.", ["1889"]) == 1.0
    assert scoring.cover_exact_match("The year 1995", ["1"]) == 0.0
    assert scoring.substring_match("The year 1995", ["1"]) == 1.0
    assert scoring.cover_exact_match("new york city", ["New York"]) == 1.0
    assert scoring.cover_exact_match("anything", [""]) == 0.0  # empty gold never matches
    assert scoring.cover_exact_match("", ["Paris"]) == 0.0
    assert scoring.cover_exact_match("the Eiffel Tower", ["Eiffel Tower", "x"]) == 1.0


def test_fanout_loose_accuracy_hand_computed():
    ref = {"Tenzing Norgay": 1914, "Edmund Hillary": 1919}
    # keys and values both count: 4 strings, 3 found ("1919" missing)
    assert scoring.fanout_loose_accuracy("Tenzing Norgay (1914) and Edmund Hillary", ref) == 0.75
    assert scoring.fanout_loose_accuracy(
        "Peru, Colombia", ["Peru", "Colombia", "Brazil"]
    ) == pytest.approx(2 / 3)
    assert (
        scoring.fanout_loose_accuracy("about 1,234,567 people", 1234567) == 1.0
    )  # thousands separators
    assert scoring.fanout_loose_accuracy("Perusia", ["Peru"]) == 0.0  # word boundary
    assert scoring.fanout_loose_accuracy("Yes, it did.", True) == 1.0
    assert (
        scoring.fanout_loose_accuracy("countries", "country") == 0.0
    )  # no lemmatisation (documented)


def test_final_answer_is_search_r1_rule():
    # the last complete <answer> counts; an unclosed one (cut at max_tokens) or no tag at all is
    # no answer (Search-R1 scores it 0; eval used to score the tail / the whole response instead)
    assert final_answer("<think>x</think><answer>A</answer> then <answer> B  c </answer>") == "B c"
    assert final_answer("<think>long</think><answer>Dijon") is None
    assert final_answer("  just text \n") is None
    assert final_answer("") is None


def test_score_prediction_adds_loose_acc_only_for_structured_reference():
    plain = EvalItem("1", "q", ["Dijon"], "hotpotqa")
    fan = EvalItem("2", "q", ["Peru\nBrazil"], "fanoutqa", reference=["Peru", "Brazil"])
    s = score_prediction("Dijon", plain)
    assert s == {"recall": 1.0, "em": 1.0, "f1": 1.0, "precision": 1.0, "cover_em": 1.0, "acc": 1.0}
    s2 = score_prediction("Peru", fan)
    assert s2["loose_acc"] == 0.5 and s2["recall"] == 0.5 and s2["precision"] == 1.0


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("comment: right.\nevaluation: correct", True),
        ("comment: wrong.\nEvaluation: Incorrect.", False),
        ("**evaluation:** correct", True),
        ("The response is correct.", None),  # no verdict line
        ("evaluation: correct, mostly", None),  # not a whole-line verdict
        ("evaluation: correct\nevaluation: incorrect", None),  # contradictory
        ("", None),
    ],
)
def test_judge_verdict_parser_is_strict(text, verdict):
    assert parse_verdict(text) is verdict


class _Reply:
    def __init__(self, content):
        self.content = content


class _FakeJudgeModel:
    """Minimal chat model: `ainvoke` only (no with_retry), records prompts."""

    def __init__(self, replies):
        self.replies, self.prompts = list(replies), []

    async def ainvoke(self, messages):
        self.prompts.append(messages[0].content)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return _Reply(reply)


async def test_llm_judge_with_fake_model():
    model = _FakeJudgeModel(
        ["comment: ok\nevaluation: correct", "I think so", RuntimeError("down")]
    )
    judge = LLMJudge(model)
    r1 = await judge.grade("Who?", ["Neil Armstrong", "Neil Alden Armstrong"], "Neil Armstrong")
    assert r1.verdict is True and r1.score == 1.0
    assert "correct answer(s): Neil Armstrong | Neil Alden Armstrong" in model.prompts[0]
    assert "response: Neil Armstrong" in model.prompts[0]
    r2 = await judge.grade("Who?", ["x"], "y")
    assert r2.verdict is None and r2.score is None and r2.error
    r3 = await judge.grade("Who?", ["x"], "y")
    assert r3.verdict is None and "RuntimeError" in r3.error


def test_fanout_loose_accuracy_nested_never_negative():
    # official counting: {"A": ["x", "y", "z"]} has 2 "items" but 3 missing strings → −0.5
    ref = {"Alpha": ["x1", "y2", "z3"], "Beta": {"Gamma": ["w4", "v5"]}}
    assert scoring.fanout_loose_accuracy("nothing here", ref) == 0.0
    # leaves: Alpha x1 y2 z3 Beta Gamma w4 v5 = 8 strings; 3 found
    assert scoring.fanout_loose_accuracy("Alpha and x1, Gamma", ref) == pytest.approx(3 / 8)
    assert scoring.fanout_loose_accuracy("Alpha x1 y2 z3 Beta Gamma w4 v5", ref) == 1.0
    assert scoring.fanout_loose_accuracy("a", [[["deep"]], []]) == 0.0
    assert scoring.fanout_loose_accuracy("deep", [[["deep"]], []]) == 1.0
