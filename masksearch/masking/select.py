"""Span filtering, k sampling and offset-exact masking shared by every strategy."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from masksearch.masking.kdist import KDist, OnFew
from masksearch.masking.rule import CONNECTORS, STOPWORDS
from masksearch.prompts import RAMP_QUESTION, RAMP_TITLED_QUESTION
from masksearch.types import MaskedExample, Passage, Span

MASK_TOKEN = "[mask]"
TitleMode = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class MaskConfig:
    """Settings shared by all strategies (see docs/masking.md)."""

    k_dist: KDist = field(default_factory=KDist)
    seed: int = 0
    min_words: int = 20
    max_span_chars: int = 60
    on_few: OnFew = "resample"
    title_in_question: TitleMode = "auto"


def passage_rng(seed: int, passage_id: str) -> random.Random:
    """A per-passage RNG: results do not depend on iteration order or concurrency."""
    return random.Random(f"masksearch-ramp:{seed}:{passage_id}")


def base_title(title: str) -> str:
    """ "Mercury (planet)" → "Mercury"."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", title).strip()


def _phrase_regex(phrase: str, plural: bool = False) -> re.Pattern[str]:
    tail = r"(?:s|es|'s|’s)?" if plural else ""
    return re.compile(rf"(?<!\w){re.escape(phrase)}{tail}(?!\w)", re.IGNORECASE)


def count_mentions(text: str, phrase: str) -> int:
    """Whole-word, case-insensitive occurrences (plural/possessive forms count too)."""
    return len(_phrase_regex(phrase, plural=True).findall(text)) if phrase.strip() else 0


def title_regions(text: str, title: str) -> list[tuple[int, int]]:
    """Character ranges of the title, its base form and its distinctive words in `text`."""
    variants = {title.strip(), base_title(title)}
    for word in re.findall(r"[^\W_][\w'’-]*", base_title(title)):
        if (
            len(word) >= 3
            and word.lower() not in STOPWORDS
            and word.lower() not in CONNECTORS
            and (word[0].isupper() or word[0].isdigit())
        ):
            variants.add(word)
    regions: list[tuple[int, int]] = []
    for v in variants:
        if v:
            regions.extend(m.span() for m in _phrase_regex(v, plural=True).finditer(text))
    return sorted(regions)


def filter_candidates(
    text: str, title: str, spans: Sequence[Span], *, max_span_chars: int = 60
) -> tuple[list[Span], dict[str, int]]:
    """Keep spans that are maskable; return them sorted with counts of rejections by reason.

    Rejected: bad offsets, empty or overlong, at the very start of the passage, overlapping a
    title occurrence, mentioned more than once (case-insensitive), overlapping an earlier span.
    """
    regions = title_regions(text, title)
    kept: list[Span] = []
    rejected: dict[str, int] = {}

    def reject(reason: str) -> None:
        rejected[reason] = rejected.get(reason, 0) + 1

    for sp in sorted(spans, key=lambda s: (s.start, -s.end)):
        if not (0 <= sp.start < sp.end <= len(text)) or text[sp.start : sp.end] != sp.text:
            reject("bad_offsets")
        elif not sp.text.strip() or len(sp.text) > max_span_chars or MASK_TOKEN in sp.text:
            reject("bad_length")
        elif not re.search(r"\w", text[: sp.start]):
            reject("at_start")
        elif any(sp.start < e and s < sp.end for s, e in regions):
            reject("title")
        elif count_mentions(text, sp.text) > 1:
            reject("repeated")
        elif kept and kept[-1].end > sp.start:
            reject("overlap")
        else:
            kept.append(sp)
    return kept, rejected


def conflicts(a: Span, b: Span, text: str) -> bool:
    """Two spans cannot both be masked if they overlap or touch (only whitespace between)."""
    first, second = (a, b) if a.start <= b.start else (b, a)
    return first.end > second.start or not text[first.end : second.start].strip()


def max_compatible(cands: Sequence[Span], text: str) -> list[Span]:
    """A largest set of pairwise compatible spans (greedy by end offset is optimal)."""
    chosen: list[Span] = []
    for sp in sorted(cands, key=lambda s: (s.end, s.start)):
        if not chosen or not conflicts(chosen[-1], sp, text):
            chosen.append(sp)
    return chosen


def choose_spans(
    cands: Sequence[Span],
    k: int,
    text: str,
    rng: random.Random,
    scores: Sequence[float] | None = None,
) -> list[Span]:
    """Pick k compatible spans without replacement: uniformly, or the k highest `scores`."""
    if scores is not None:
        order = [
            c for _, c in sorted(zip(scores, cands, strict=True), key=lambda t: (-t[0], t[1].start))
        ]
    else:
        order = list(cands)
        rng.shuffle(order)
    chosen: list[Span] = []
    for sp in order:
        if len(chosen) == k:
            break
        if all(not conflicts(sp, c, text) for c in chosen):
            chosen.append(sp)
    if len(chosen) < k:  # greedy order got stuck: draw from a maximal compatible set instead
        pool = max_compatible(cands, text)
        if scores is not None:
            rank = {id(c): s for c, s in zip(cands, scores, strict=True)}
            chosen = sorted(pool, key=lambda c: (-rank[id(c)], c.start))[:k]
        else:
            chosen = rng.sample(pool, k)
    return sorted(chosen, key=lambda s: s.start)


def apply_masks(text: str, spans: Sequence[Span]) -> str:
    """Replace each span BY OFFSET with `[mask]` (never by substring search)."""
    out, pos = [], 0
    for sp in sorted(spans, key=lambda s: s.start):
        if sp.start < pos or text[sp.start : sp.end] != sp.text:
            raise ValueError(f"span {sp} overlaps another or does not match the text")
        out.append(text[pos : sp.start])
        out.append(MASK_TOKEN)
        pos = sp.end
    out.append(text[pos:])
    return "".join(out)


def fill_masks(masked_text: str, answers: Sequence[str]) -> str:
    """Inverse of `apply_masks`: put the answers back in order."""
    parts = masked_text.split(MASK_TOKEN)
    if len(parts) != len(answers) + 1:
        raise ValueError(f"{len(parts) - 1} masks but {len(answers)} answers")
    return "".join(p + a for p, a in zip(parts, [*answers, ""], strict=True))


def build_question(masked_text: str, title: str, text: str, mode: TitleMode = "auto") -> str:
    """The RAMP question; the title is shown when asked, or (auto) when the text never names it."""
    show = mode == "always" or (mode == "auto" and bool(title) and not title_regions(text, title))
    if show:
        return RAMP_TITLED_QUESTION.substitute(title=base_title(title), masked_text=masked_text)
    return RAMP_QUESTION.substitute(masked_text=masked_text)


def build_example(
    passage: Passage, spans: Sequence[Span], strategy: str, title_mode: TitleMode = "auto"
) -> MaskedExample:
    spans = sorted(spans, key=lambda s: s.start)
    masked = apply_masks(passage.text, spans)
    return MaskedExample(
        id=f"{passage.id}:k{len(spans)}",
        question=build_question(masked, passage.title, passage.text, title_mode),
        answers=[s.text for s in spans],
        task="ramp",
        source_id=passage.id,
        title=passage.title,
        text=passage.text,
        masked_text=masked,
        spans=list(spans),
        strategy=strategy,
    )


@dataclass
class Plan:
    """A passage ready for span choice: its RNG (k already drawn) and filtered candidates."""

    passage: Passage
    rng: random.Random
    k: int
    candidates: list[Span]


def plan_passage(
    passage: Passage,
    candidates: Sequence[Span],
    config: MaskConfig,
    rejected: dict[str, int] | None = None,
) -> Plan | str:
    """Filter candidates and draw k; returns a `Plan` or a skip reason."""
    rng = passage_rng(config.seed, passage.id)
    target = config.k_dist.sample(rng)
    if len(passage.text.split()) < config.min_words:
        return "too_short"
    if MASK_TOKEN in passage.text:
        return "contains_mask_token"
    kept, why = filter_candidates(
        passage.text, passage.title, candidates, max_span_chars=config.max_span_chars
    )
    if rejected is not None:
        for reason, n in why.items():
            rejected[reason] = rejected.get(reason, 0) + n
    feasible = len(max_compatible(kept, passage.text))
    if feasible == 0:
        return "no_candidates"
    k = target
    if target is not None and target > feasible:
        if config.on_few == "skip":
            return "too_few_candidates"
        k = feasible if config.on_few == "smaller" else config.k_dist.sample(rng, max_k=feasible)
    if k is None:
        return "too_few_candidates"
    return Plan(passage, rng, k, kept)


def finish_plan(
    plan: Plan, strategy: str, config: MaskConfig, scores: Sequence[float] | None = None
) -> MaskedExample:
    spans = choose_spans(plan.candidates, plan.k, plan.passage.text, plan.rng, scores)
    return build_example(plan.passage, spans, strategy, config.title_in_question)
