"""RAMP masking with the rule strategy: offsets, k sampling, filters and determinism."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from masksearch.errors import ConfigError
from masksearch.masking import (
    KDist,
    MaskConfig,
    MaskSummary,
    RuleSpanProposer,
    apply_masks,
    extract_rule_spans,
    fill_masks,
    filter_candidates,
    mask_passages,
)
from masksearch.masking.runner import iter_flashrag_jsonl
from masksearch.masking.select import MASK_TOKEN, choose_spans, title_regions
from masksearch.prompts import RAMP_INSTRUCTION
from masksearch.types import Passage, Span

NAMES = [
    "Anna Berg",
    "Tomas Lind",
    "Maria Olsen",
    "Pavel Novak",
    "Ines Duarte",
    "Kofi Mensah",
    "Lena Fischer",
    "Omar Haddad",
    "Yuki Sato",
    "Carlos Mendes",
    "Eva Horvath",
    "Ravi Iyer",
]
CITIES = ["Lisbon", "Bergen", "Krakow", "Accra", "Osaka", "Porto", "Graz", "Tunis", "Pune", "Cork"]


def synthetic_passages(n: int, seed: int = 7) -> list[Passage]:
    """Passages with many distinct maskable spans (names, places, dates, numbers)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.sample(NAMES, 2)
        c1, c2 = rng.sample(CITIES, 2)
        y1 = rng.randint(1800, 1950)
        text = (
            f"The bridge over the river was designed by {a} and opened in {y1}. "
            f"It links {c1} with {c2} and carries {rng.randint(2, 9)},{rng.randint(100, 999)} "
            f"vehicles a day. The chief engineer, {b}, retired on {rng.randint(1, 28)} March "
            f"{y1 + rng.randint(5, 40)}."
        )
        out.append(Passage(id=f"syn{i}", title=f"Bridge {i}", text=text))
    return out


@pytest.fixture(scope="module")
def tiny_passages(request) -> list[Passage]:
    from pathlib import Path

    return list(iter_flashrag_jsonl(Path(__file__).parent / "data" / "tiny_corpus.jsonl"))


def run_rule(passages, config=None, **kw):
    summary = MaskSummary()
    exs = list(
        mask_passages(
            passages, RuleSpanProposer(), config or MaskConfig(min_words=10), summary=summary, **kw
        )
    )
    return exs, summary


# ---- extraction ----------------------------------------------------------------------------


def test_rule_extractor_finds_dates_numbers_names_with_exact_offsets():
    text = (
        "Edmund Hillary and Tenzing Norgay reached the summit on 29 May 1953. Apollo 11 landed "
        "on July 20, 1969. The peak is 8,849 metres high; the Nile is 6,650 kilometres long. "
        "It was studied at the University of Oxford by Leonardo da Vinci and NASA in the 1980s."
    )
    spans = extract_rule_spans(text)
    got = {(s.text, s.label) for s in spans}
    for expected in [
        ("Edmund Hillary", "ENTITY"),
        ("Tenzing Norgay", "ENTITY"),
        ("29 May 1953", "DATE"),
        ("Apollo 11", "ENTITY"),
        ("July 20, 1969", "DATE"),
        ("8,849 metres", "NUMBER"),
        ("6,650 kilometres", "NUMBER"),
        ("University of Oxford", "ENTITY"),
        ("Leonardo da Vinci", "ENTITY"),
        ("NASA", "TERM"),
        ("1980s", "DATE"),
    ]:
        assert expected in got, expected
    for s in spans:
        assert text[s.start : s.end] == s.text
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))
    # sentence-initial common words are not names
    assert not any(s.text.split()[0] in ("The", "It") for s in spans)


def test_rule_extractor_offsets_exact_on_corpus(tiny_passages):
    total = 0
    for p in tiny_passages:
        for s in extract_rule_spans(p.text):
            assert p.text[s.start : s.end] == s.text
            total += 1
    assert total > 100


# ---- masking by offset ---------------------------------------------------------------------


def test_mask_by_offset_not_first_substring():
    text = "In 1960 the club had 6 members and a budget of 16 pounds."
    six = text.index(" 6 ") + 1
    masked = apply_masks(text, [Span(six, six + 1, "6", "NUMBER")])
    assert masked == "In 1960 the club had [mask] members and a budget of 16 pounds."
    assert fill_masks(masked, ["6"]) == text


class ProposeSix:
    """Proposes "6" (as an LLM might): it must be found as a whole word, not inside "1960"."""

    name = "six"

    def propose(self, passages):
        from masksearch.masking.llm import locate_spans

        return [locate_spans(p.text, [("6", "NUMBER")])[0] for p in passages]


def test_six_inside_1960_through_the_pipeline():
    p = Passage(
        "p6",
        "Club",
        "Founded in 1960, the club has won 6 national titles and plays in "
        "a stadium built by the city council with seats for many thousands of supporters.",
    )
    (ex,) = mask_passages([p], ProposeSix(), MaskConfig(min_words=10))
    assert ex.answers == ["6"] and ex.spans[0].start == p.text.index(" 6 ") + 1
    assert ex.masked_text == p.text.replace(" 6 ", " [mask] ")
    assert "1960" in ex.masked_text and fill_masks(ex.masked_text, ex.answers) == p.text


def test_masked_text_reconstructs_and_offsets_match(tiny_passages):
    exs, summary = run_rule(tiny_passages + synthetic_passages(50))
    assert len(exs) == summary.written > 60
    for ex in exs:
        assert ex.masked_text.count(MASK_TOKEN) == ex.k == len(ex.answers) >= 1
        assert fill_masks(ex.masked_text, ex.answers) == ex.text
        assert ex.answers == [s.text for s in ex.spans]
        for s in ex.spans:
            assert ex.text[s.start : s.end] == s.text
        assert ex.question.startswith(ex.masked_text) or ex.question.startswith("Title: ")
        assert ex.question.endswith(RAMP_INSTRUCTION)
        assert ex.id == f"{ex.source_id}:k{ex.k}" and ex.task == "ramp" and ex.strategy == "rule"
        assert not ex.masked_text.startswith(MASK_TOKEN)


def test_no_overlap_no_duplicates_no_touching(tiny_passages):
    exs, _ = run_rule(synthetic_passages(100) + tiny_passages)
    for ex in exs:
        starts = [s.start for s in ex.spans]
        assert len(set(starts)) == len(starts)  # without replacement
        for a, b in zip(ex.spans, ex.spans[1:], strict=False):
            assert a.end <= b.start and ex.text[a.end : b.start].strip()


def test_title_never_masked(tiny_passages):
    exs, summary = run_rule(tiny_passages)
    assert summary.rejected_spans["title"] > 0
    for ex in exs:
        regions = title_regions(ex.text, ex.title)
        for s in ex.spans:
            assert not any(s.start < e and b < s.end for b, e in regions), (ex.title, s)
            assert s.text.lower() != ex.title.lower()
    # parenthetical disambiguators are stripped: "Python (programming language)" guards "Python"
    py = next(p for p in tiny_passages if p.title.startswith("Python"))
    assert not any(
        s.text == "Python"
        for s in filter_candidates(py.text, py.title, extract_rule_spans(py.text))[0]
    )


def test_repeated_spans_never_masked():
    p = Passage(
        "r",
        "Report",
        "The treaty was signed in Paris by Anna Berg. Later, paris hosted "
        "the ceremony where Tomas Lind spoke in 1921 before the delegates from Krakow and Accra.",
    )
    kept, why = filter_candidates(p.text, p.title, extract_rule_spans(p.text))
    assert "Paris" not in [s.text for s in kept] and why["repeated"] >= 1
    for seed in range(30):
        (ex,), _ = run_rule([p], MaskConfig(seed=seed, min_words=10))
        assert "Paris" not in ex.answers
        assert ex.masked_text.count("Paris") + ex.masked_text.count("paris") == 2


def test_plural_mention_counts_as_repeat():
    text = "She won the Nobel Prize in 1903 and is one of few people with two Nobel Prizes today."
    kept, _ = filter_candidates(text, "Marie Curie", [Span(12, 23, "Nobel Prize")])
    assert kept == []


def test_passage_start_is_never_masked():
    text = (
        "Anna Berg designed the bridge over the river in Bergen, which opened in 1911 to traffic."
    )
    kept, why = filter_candidates(text, "Bridge", extract_rule_spans(text))
    assert why.get("at_start") == 1 and all(s.start > 0 for s in kept)


def test_too_short_and_no_candidates_are_skipped():
    short = Passage("s", "Short", "Anna Berg was here in 1911.")
    bland = Passage("b", "Bland", " ".join(["the river runs slowly through the quiet valley"] * 4))
    exs, summary = run_rule([short, bland], MaskConfig(min_words=10))
    assert exs == [] and summary.skipped == Counter({"too_short": 1, "no_candidates": 1})


# ---- k distribution ------------------------------------------------------------------------


def test_k_distribution_balanced_and_honoured():
    passages = synthetic_passages(400)
    exs, summary = run_rule(passages, MaskConfig(seed=3, min_words=10))
    assert summary.written == 400 and summary.skipped == Counter()
    counts = Counter(ex.k for ex in exs)
    assert counts == summary.by_k
    assert set(counts) == {1, 2, 3, 4}
    for k in (1, 2, 3, 4):
        assert 70 <= counts[k] <= 130, counts


def test_k_distribution_configurable():
    exs, _ = run_rule(
        synthetic_passages(200), MaskConfig(k_dist=KDist.parse("1:0,2:1,4:3"), min_words=10)
    )
    counts = Counter(ex.k for ex in exs)
    assert set(counts) <= {2, 4} and counts[4] > 2 * counts[2]


def test_kdist_parse_errors():
    assert KDist.parse("").probabilities() == {1: 0.25, 2: 0.25, 3: 0.25, 4: 0.25}
    assert KDist.parse("1:1,3:3").probabilities() == {1: 0.25, 3: 0.75}
    for bad in ("1:x", "0:1", "1:1,1:2", "1:0,2:0", "a"):
        with pytest.raises(ConfigError):
            KDist.parse(bad)


@pytest.mark.parametrize("policy", ["resample", "smaller", "skip"])
def test_few_candidates_policy(policy):
    # exactly two maskable spans (Bergen, 1911): k=3/4 draws cannot be honoured
    p = [
        Passage(
            f"f{i}",
            "Bridge",
            "The new bridge was opened in Bergen in 1911 and it carried "
            "trains across the wide river for a very long time after that.",
        )
        for i in range(60)
    ]
    exs, summary = run_rule(p, MaskConfig(on_few=policy, min_words=10))
    ks = Counter(ex.k for ex in exs)
    assert set(ks) <= {1, 2}
    if policy == "skip":
        assert summary.skipped["too_few_candidates"] > 0
        assert summary.written + summary.skipped["too_few_candidates"] == 60
    else:
        assert summary.written == 60
    if policy == "smaller":
        assert ks[2] > ks[1]  # every k>=2 draw becomes 2


def test_choose_spans_fallback_reaches_k_with_touching_candidates():
    text = "x Alpha Beta Gamma Delta y"
    cands = [Span(2, 7, "Alpha"), Span(8, 12, "Beta"), Span(13, 18, "Gamma"), Span(19, 24, "Delta")]
    for seed in range(20):
        got = choose_spans(cands, 2, text, random.Random(seed))
        assert len(got) == 2 and not (got[0].end + 1 == got[1].start)


# ---- determinism ---------------------------------------------------------------------------


def test_seed_determinism_and_order_independence(tiny_passages):
    passages = tiny_passages + synthetic_passages(40)
    a, _ = run_rule(passages, MaskConfig(seed=11, min_words=10))
    b, _ = run_rule(list(reversed(passages)), MaskConfig(seed=11, min_words=10), chunk_size=5)
    c, _ = run_rule(passages[::3], MaskConfig(seed=11, min_words=10), chunk_size=1)
    by_id = {e.source_id: e.to_dict() for e in a}
    assert {e.source_id: e.to_dict() for e in b} == by_id
    assert all(by_id[e.source_id] == e.to_dict() for e in c)
    d, _ = run_rule(passages, MaskConfig(seed=12, min_words=10))
    assert [e.to_dict() for e in d] != [e.to_dict() for e in a]


def test_rule_extractor_skips_ordinary_words():
    text = (
        "Basic steel was made for a millennium. Modern plants in Ohio use 3 furnaces and "
        "12 cranes; the Bessemer process changed metallurgy."
    )
    got = [s.text for s in extract_rule_spans(text)]
    assert "Basic" not in got and "Modern" not in got  # lone sentence-initial capitals
    assert "millennium" not in got and "3" not in got  # common "-ium" word, bare single digit
    assert {"Ohio", "12", "Bessemer", "metallurgy"} <= set(got)


# ---- k calibration -------------------------------------------------------------------------


def test_calibration_matches_target_on_skewed_corpus():
    from masksearch.masking.kdist import achieved_distribution, calibrate
    from masksearch.masking.runner import calibrated_config

    # a corpus where 20% of passages allow one mask only and 80% allow four or more
    one = Passage(
        "x",
        "Bridge",
        "The old wooden bridge over the quiet river was opened in 1911 "
        "after a long and difficult period of careful work by the local people.",
    )
    many = synthetic_passages(300)
    passages = [Passage(f"one{i}", one.title, one.text) for i in range(75)] + many
    plain, _ = run_rule(passages, MaskConfig(min_words=10))
    plain_k = Counter(e.k for e in plain)
    assert plain_k[1] / len(plain) > 0.33  # uncalibrated: the corpus drags k towards 1

    config, hist = calibrated_config(passages, RuleSpanProposer(), MaskConfig(min_words=10))
    assert hist[1] == 75
    predicted = achieved_distribution(config.k_dist.weights, hist)
    assert all(abs(p - 0.25) < 0.01 for p in predicted.values())
    exs, _ = run_rule(passages, config)
    counts = Counter(e.k for e in exs)
    assert all(abs(counts[k] / len(exs) - 0.25) < 0.06 for k in (1, 2, 3, 4)), counts
    # unreachable targets degrade gracefully: as close as the corpus allows
    w = calibrate(KDist(), {1: 40, 7: 60}).probabilities()
    got = achieved_distribution(w, {1: 40, 7: 60})
    assert abs(sum(w.values()) - 1) < 1e-9 and abs(got[1] - 0.4) < 1e-3
    assert all(abs(got[k] - 0.2) < 1e-3 for k in (2, 3, 4))
