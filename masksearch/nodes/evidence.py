"""Observer thoughts composed from the model's own choices and the retrieved text.

A small model asked to justify its RAMP decision writes `Doc 1`, or pastes a passage. Here the
node writes the thought from what the model chose — which search result it copies from, which
words it copied, which query it searches next — and from the search results themselves, so every
statement about what was retrieved is checked against it:

- **answering**: the cited result (`Doc N (Title: T)`, as the student's `<information>` block
  numbers it), how many blanks it has the passage's wording around, and for each blank a verbatim
  quote of that result around the copied words (`quality.quote_around`);
- **searching again**: how close the best result came (the blanks whose surrounding words it
  has), which blanks are still missing, and which of the passage's own words the next query
  carries (why it should find the passage).

Nothing here reads the gold spans.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from masksearch import prompts
from masksearch.corpus.split import split_sentences
from masksearch.quality import citation, normalize_space, quote_around, word_set

_STOPWORDS = set(
    "a an and are as at be by for from has have in is it its of on or that the this to was were "
    "which with who his her their".split()
)


def blank_contexts(question: str) -> list[tuple[str, str]]:
    """(the last 3 words before, the first 2 words after) each blank of a RAMP question, as
    they read with the other blanks still masked."""
    parts = prompts.masked_text(question).split(prompts.MASK_TOKEN)
    out = []
    for i in range(len(parts) - 1):
        left = " ".join(parts[i].split()[-3:])
        right = " ".join(parts[i + 1].split()[:2])
        out.append((left, right))
    return out


def wording_matches(question: str, text: str, *, both: bool = False) -> list[bool]:
    """Per blank: does `text` hold the words just before or just after it (case-insensitive;
    `both`: every one of them)? A context cut short by a neighbouring blank or the passage's
    edge counts when it is at least two words long."""
    hay = normalize_space(text).casefold()
    found: list[bool | None] = []
    for left, right in blank_contexts(question):
        hits = [c.casefold() in hay for c in (left, right) if len(c.split()) >= 2]
        found.append((all(hits) if both else any(hits)) if hits else None)
    # a blank with no context of its own (between two blanks: "[mask], [mask].") goes with its
    # nearest neighbour that has one: it is where they are
    out = []
    for i, f in enumerate(found):
        if f is None:
            nearest = sorted(range(len(found)), key=lambda j: abs(j - i))
            f = next((found[j] for j in nearest if found[j] is not None), False)
        out.append(bool(f))
    return out


def passage_with_every_blank(question: str, passages: Sequence[Mapping[str, Any]]) -> int | None:
    """The index of the first of `passages` holding the words on both sides of every blank (the
    masked passage itself, by its wording), or None."""
    for j, p in enumerate(passages):
        if all(wording_matches(question, str(p.get("text", "")), both=True)):
            return j
    return None


def _blanks(indices: Iterable[int]) -> str:
    names = [f"[mask {i + 1}]" for i in indices]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _end(text: str) -> str:
    return text if text.rstrip().endswith((".", "!", "?")) else text + "."


def answer_thought(
    question: str, spans: Sequence[str], passage: Mapping[str, Any], cite: str
) -> str:
    """The thought of a RAMP answer copied from `passage` (cited as `cite`)."""
    text = str(passage.get("text", ""))
    k = len(spans)
    matched = sum(wording_matches(question, text))
    if matched == k:
        lead = f"{cite} has the passage's wording around every blank."
    elif matched:
        lead = f"{cite} has the passage's wording around {matched} of the {k} blanks."
    else:
        lead = f"{cite} is the closest result, though it lacks the wording around the blanks."
    parts = []
    for i, span in enumerate(spans):
        left, _ = prompts.mask_context(question, list(spans[:i]), i)
        quote = quote_around(text, span, left_hint=left)
        if quote:
            parts.append(f'for [mask {i + 1}] it reads "{quote}"')
        else:
            parts.append(f"for [mask {i + 1}] I give {span}")
    body = "; ".join(parts)
    so = "So the masked span is " if k == 1 else "So the masked spans are "
    return f"{lead} {body[0].upper()}{body[1:]}. {_end(so + ' ; '.join(spans))}"


def search_thought(question: str, passages: Sequence[Mapping[str, Any]], query: str) -> str:
    """The thought of a RAMP observer that searches again with `query` after reading
    `passages` (the latest results, numbered Doc 1..)."""
    k = prompts.count_masks(question)
    per_doc = [wording_matches(question, str(p.get("text", ""))) for p in passages]
    best = max(range(len(per_doc)), key=lambda j: sum(per_doc[j]), default=-1)
    m = sum(per_doc[best]) if best >= 0 else 0
    if m == 0:
        lead = (
            f"None of the {len(passages)} results has the passage's wording around the blanks."
            if len(passages) > 1
            else "The result lacks the passage's wording around the blanks."
            if passages
            else "The search returned no results."
        )
        missing = list(range(k))
    else:
        cite = citation(best + 1, str(passages[best].get("title", "")))
        if m == k:
            lead = (
                f"{cite} has the passage's wording around every blank, but I search once more "
                f"to confirm the words hidden by {_blanks(range(k))}."
            )
            missing = []
        else:
            lead = f"{cite} has the passage's wording around {m} of the {k} blanks only."
            missing = [i for i, ok in enumerate(per_doc[best]) if not ok]
    still = f"Still missing: the words hidden by {_blanks(missing)}." if missing else ""
    return " ".join(
        x for x in (lead, still, _query_reason(question, query, "So I search for")) if x
    )


def _query_reason(question: str, query: str, so: str) -> str:
    """Why `query` should find the masked passage: the passage's own words it carries."""
    passage_words = word_set(prompts.masked_text(question))
    carried_by_key: dict[str, str] = {}
    for w in query.split():
        key = w.casefold().strip(".,;:()'\"")
        if key in passage_words and key not in _STOPWORDS:
            carried_by_key.setdefault(key, w.strip(".,;:()'\""))
    carried = list(carried_by_key.values())
    if carried:
        words = ", ".join(carried[:-1]) + (" and " if len(carried) > 1 else "") + carried[-1]
        noun = "words" if len(carried) > 1 else "word"
        return (
            f"{so} {query}: it has the passage's own {noun} {words}, "
            "which should retrieve the passage that holds them."
        )
    return f"{so} {query}, other words for the subject of the passage."


def plan_thought(question: str, query: str) -> str:
    """The thought of a RAMP planner whose first search is `query`: where each blank is (the
    words just before it, or after it) and why the query should find the passage."""
    where = []
    for i, (left, right) in enumerate(blank_contexts(question)):
        left = left.lstrip(" ,.;:")
        if any(ch.isalnum() for ch in left):
            where.append(f'[mask {i + 1}] after "{left}"')
        elif any(ch.isalnum() for ch in right):
            where.append(f'[mask {i + 1}] before "{right}"')
        elif i:
            where.append(f"[mask {i + 1}] right after [mask {i}]")
        else:
            where.append(f"[mask {i + 1}]")
    if len(where) == 1:
        lead = f"The passage hides one span, {where[0]}; it cannot be known without the passage."
    else:
        lead = (
            f"The passage hides {len(where)} spans: {'; '.join(where)}. They cannot be known "
            "without the passage itself."
        )
    return f"{lead} {_query_reason(question, query, 'So I first search for')}"


_QUESTION_WORDS = set("what which who whom whose when where why how many much does did do".split())
SUPPORT_SHARE = 0.4  # of the question's content words, in the sentence holding the answer


def content_words(text: str) -> set[str]:
    """The words of `text` that carry its content (no stopwords, question words or letters)."""
    return {w for w in word_set(text) if len(w) > 1 and w not in _STOPWORDS | _QUESTION_WORDS}


def supports(question: str, answer: str, passage: Mapping[str, Any]) -> bool:
    """Whether `passage` states `answer` as the answer to `question`: a sentence of it holds the
    answer verbatim and at least `SUPPORT_SHARE` (at least one) of the question's content words
    other than the answer's. How a QA observer on a small model knows it may answer (asked to
    choose, a 1.5B teacher searched on until its turns ran out)."""
    needle = normalize_space(answer).casefold()
    if not needle:
        return False
    asked = content_words(question) - content_words(answer)
    need = max(1, math.ceil(SUPPORT_SHARE * len(asked)))
    for sentence in split_sentences(str(passage.get("text", ""))):
        if needle in normalize_space(sentence).casefold():
            if not asked or len(asked & content_words(sentence)) >= need:
                return True
    return False


def qa_plan_thought(query: str) -> str:
    """The thought of a QA planner whose first query is `query` (composed: nothing in it is
    claimed before a result says it)."""
    return f"I need a source that states the answer, so I search for {query.rstrip('?.!')}."


def qa_search_thought(passages: Sequence[Mapping[str, Any]], query: str) -> str:
    """The thought of a QA observer that searches again with `query` after reading `passages`
    (the model chose to: the node cannot know whether a result states the answer, so the thought
    says only that the observer is not sure)."""
    lead = (
        f"I am not yet sure of the answer from these {len(passages)} results,"
        if len(passages) > 1
        else "I am not yet sure of the answer from this result,"
        if passages
        else "The search returned no results,"
    )
    return f"{lead} so I search for {query.rstrip('?.!')}."


def qa_answer_thought(answer: str, quote: str) -> str:
    """The thought of a QA observer answering `answer`, with the sentence quoting the result that
    states it (`quoted`)."""
    return f"{quote} So the answer is {answer}." if quote else f"So the answer is {answer}."


def unsearched(question: str, query: str, searched: Iterable[str]) -> str:
    """`query`, or, when it was searched already (it would find the same results), the
    passage's own words not searched yet (`fresh_query`; `query` when there are none)."""
    seen = {_query_key(q) for q in searched}
    if _query_key(query) not in seen:
        return query
    return fresh_query(question, seen) or query


def was_searched(query: str, searched: Iterable[str]) -> bool:
    """Whether `query` was searched already (case and spacing aside)."""
    return _query_key(query) in {_query_key(q) for q in searched}


def not_searched(
    question: str, queries: Sequence[str], subquery: str, searched: Iterable[str]
) -> list[str]:
    """A round's queries without those searched in earlier rounds (the same query finds the same
    results); when none is left, one query that was not: the sub-query, else `fresh_query`."""
    seen = {_query_key(q) for q in searched}
    kept = [q for q in queries if _query_key(q) not in seen]
    return kept or [unsearched(question, subquery, seen)]


def _query_key(query: str) -> str:
    return normalize_space(query).casefold()


def fresh_query(question: str, searched: Iterable[str], words: int = 8) -> str:
    """A keyword query of the passage's own words not searched yet: the first `words` words of
    its longest stretch without a blank (in words; then the next longest), or "" when every one
    was. A plain question (no blank) is searched whole."""
    seen = {_query_key(q) for q in searched}
    stretches = [
        [w for w in (w.strip(".,;:()[]\"'?") for w in part.split()) if w]
        for part in prompts.masked_text(question).split(prompts.MASK_TOKEN)
    ]
    if len(stretches) == 1:  # a plain question: all of it
        words = max(words, len(stretches[0]))
    for kept in sorted(stretches, key=lambda ws: -len(ws)):  # stable: earlier first
        query = " ".join(kept[:words])
        if query and _query_key(query) not in seen:
            return query
    return ""


def quoted(answer: str, passage: Mapping[str, Any], cite: str) -> str:
    """`<cite> reads "…answer…".` when the passage holds the answer verbatim, else ""."""
    quote = quote_around(str(passage.get("text", "")), answer.strip())
    return f'{cite} reads "{quote}".' if quote else ""


def qa_evidence(answer: str, passages: Sequence[Mapping[str, Any]], search: int | None) -> str:
    """A sentence quoting the first result (of `passages`, numbered Doc 1..) that holds the
    answer verbatim, or "" when none does."""
    for j, p in enumerate(passages):
        sentence = quoted(answer, p, citation(j + 1, str(p.get("title", "")), search))
        if sentence:
            return sentence
    return ""
