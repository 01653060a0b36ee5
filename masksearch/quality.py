"""THE data-quality rules of teacher trajectories: complete thoughts, the question's script,
evidence quoted from the cited passage, distinct rewrites — and the per-run report built on them.

The teacher nodes use these rules while they write a trajectory (`last_complete_sentence` trims a
thought cut by its token budget, `distinct_queries` drops near-duplicate rewrites, `quote_around`
takes the evidence quoted in an observer's thought), and the run summary and
`benchmarks/offline_teacher.py` measure every record with the same functions
(`record_quality`, `QualityReport`), so what is enforced and what is reported cannot drift apart.

- A thought is **complete** when it ends at a sentence end: `.`, `!` or `?` (closing quotes or
  brackets may follow) after a word that is not an abbreviation, an initial or a list number.
- A thought has **foreign-script tokens** when it holds a letter of a script (Unicode name prefix:
  LATIN, CYRILLIC, CJK, …) that neither the question nor the retrieved passages contain. ASCII is
  never foreign (digits, punctuation and the Latin letters of names occur in every corpus).
- An answering thought **quotes evidence** when it cites a search result as
  `Doc N (Title: T)` (`of search R` for an earlier round than the last) and every `"…"` quote in it
  occurs verbatim in that result's text as the student read it; a RAMP answer needs one quote per
  blank.
- Two rewrites of one sub-query are **near-duplicates** when the Jaccard index of their word sets
  is at least `NEAR_DUPLICATE_JACCARD` (0.6).
- Thought length is counted in word and punctuation tokens (`\\w+` or one other non-space
  character), a tokenizer-free stand-in for model tokens.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NEAR_DUPLICATE_JACCARD = 0.6

_CLOSERS = "\"')]}\u201d\u2019"
_END = re.compile(rf"[.!?][{re.escape(_CLOSERS)}]*(?=\s|$)")
# a period after these does not end a sentence
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "no", "vs", "jr", "sr", "prof", "e.g", "i.e", "cf", "approx",
    "ca", "fig", "vol", "inc", "ltd", "co", "mt", "ft", "gen", "col", "lt", "sgt", "rev",
}  # fmt: skip
_TOKEN = re.compile(r"\w+|[^\w\s]")


# -- complete sentences -------------------------------------------------------------------------


def _is_sentence_end(text: str, m: re.Match[str]) -> bool:
    if text[m.start()] != ".":
        return True
    before = text[: m.start()]
    word = re.search(r"(\S+)$", before)
    if word is None:
        return False
    raw = word.group(1).lstrip("\"'([{\u201c\u2018")
    w = raw.lower()
    if w in _ABBREVIATIONS or (len(raw) == 1 and raw.isupper()):
        return False  # "Dr.", "e.g.", an initial "J."
    line_start = before[: word.start()].rsplit("\n", 1)[-1].strip() == ""
    return not (w.isdigit() and line_start)  # "1." numbering a list line


def sentence_ends(text: str) -> list[int]:
    """Offsets just after each sentence end in `text`."""
    return [m.end() for m in _END.finditer(text) if _is_sentence_end(text, m)]


def ends_sentence(text: str) -> bool:
    """Does `text` (stripped) end at a sentence end?"""
    text = text.rstrip()
    return bool(text) and bool(sentence_ends(text)) and sentence_ends(text)[-1] == len(text)


def last_complete_sentence(text: str) -> str:
    """`text` cut back to its last sentence end ("" when it holds no complete sentence)."""
    ends = sentence_ends(text)
    return text[: ends[-1]].strip() if ends else ""


def is_cut(thought: str) -> bool:
    """A thought that stops inside a sentence (or is empty)."""
    return not ends_sentence(thought)


# -- scripts ------------------------------------------------------------------------------------


def script_of(ch: str) -> str:
    """The script of a letter (the first word of its Unicode name: LATIN, CYRILLIC, GREEK, CJK,
    HIRAGANA, …); "" for anything that is not a letter."""
    if not ch.isalpha():
        return ""
    if ch.isascii():
        return "LATIN"
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def letter_scripts(text: str) -> set[str]:
    """The scripts of the letters in `text`."""
    return {s for s in map(script_of, set(text)) if s}


def foreign_letters(thought: str, context: str) -> str:
    """The non-ASCII letters of `thought` whose script does not occur in `context` (the question
    and the passages the writer read), in order, once each."""
    allowed = letter_scripts(context)
    out: dict[str, None] = {}
    for ch in thought:
        if not ch.isascii() and ch.isalpha() and script_of(ch) not in allowed:
            out[ch] = None
    return "".join(out)


# -- rewrites -----------------------------------------------------------------------------------


def word_set(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def jaccard(a: str, b: str) -> float:
    """Jaccard index of the two texts' word sets (1.0 for two empty texts)."""
    wa, wb = word_set(a), word_set(b)
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0


def distinct_queries(
    queries: Iterable[str], threshold: float = NEAR_DUPLICATE_JACCARD
) -> list[str]:
    """The queries in order, without any that is a near-duplicate (word-set Jaccard >=
    `threshold`) of one kept before it."""
    kept: list[str] = []
    for q in queries:
        if all(jaccard(q, k) < threshold for k in kept):
            kept.append(q)
    return kept


def near_duplicate_pairs(queries: Sequence[str]) -> tuple[int, int]:
    """(near-duplicate pairs, pairs) among one round's queries."""
    pairs = [(a, b) for i, a in enumerate(queries) for b in queries[i + 1 :]]
    return sum(jaccard(a, b) >= NEAR_DUPLICATE_JACCARD for a, b in pairs), len(pairs)


# -- evidence -----------------------------------------------------------------------------------


def normalize_space(text: str) -> str:
    """Whitespace collapsed as `prompts.format_docs` shows a passage to the reader."""
    return " ".join(str(text).split())


def quote_around(
    text: str, span: str, *, left_hint: str = "", before: int = 4, after: int = 3
) -> str | None:
    """A verbatim quote of `text` (whitespace collapsed): the occurrence of `span` whose preceding
    words best match `left_hint`, with up to `before` words before and `after` words after it;
    None when `span` does not occur. Never contains a double quote."""
    text, span = normalize_space(text), normalize_space(span)
    if not span:
        return None
    hint = [w.casefold() for w in left_hint.split()][-before:]
    best: tuple[int, int] | None = None
    best_score = -1
    for m in re.finditer(re.escape(span), text):
        words = [w.casefold() for w in text[: m.start()].split()][-len(hint) :] if hint else []
        score = sum(a == b for a, b in zip(reversed(words), reversed(hint), strict=False))
        if score > best_score:
            best, best_score = (m.start(), m.end()), score
    if best is None:
        return None
    start, end = best
    for _ in range(before):
        prev = text.rfind(" ", 0, max(start - 1, 0))
        cand = 0 if prev < 0 else prev + 1
        if cand >= start or '"' in text[cand:start]:
            break
        start = cand
    for _ in range(after):
        nxt = text.find(" ", end + 1)
        cand = len(text) if nxt < 0 else nxt
        if cand <= end or '"' in text[end:cand]:
            break
        end = cand
    while end > best[1] and text[end - 1] in ".,;:":  # no trailing punctuation past the span
        end -= 1
    quote = text[start:end].strip()
    return quote if quote and '"' not in quote else None


_CITE = re.compile(r"Doc (\d+) \(Title: ")
_QUOTE = re.compile(r'"([^"\n]+)"')


def citation(doc: int, title: str, search: int | None = None) -> str:
    """How a thought names a search result (`search`: its round, when not the latest)."""
    return f"Doc {doc} (Title: {title})" + (f" of search {search}" if search else "")


def _doc_line(block: str, n: int) -> str | None:
    """`T) text` of the line `Doc n(Title: T) text` of an `<information>` block."""
    prefix = f"Doc {n}(Title: "
    for line in block.removeprefix("<information>").removesuffix("</information>").split("\n"):
        if line.startswith(prefix):
            return line[len(prefix) :]
    return None


def cited_text(thought: str, observations: Sequence[str]) -> str | None:
    """The text of the search result the thought cites first (`Doc N (Title: T)`, `of search R`
    for an earlier round than the last), from `observations` (the `<information>` blocks the
    reader saw, in order); None when it cites none that exists under that title."""
    m = _CITE.search(thought)
    if m is None or not observations:
        return None
    for close in (i for i, c in enumerate(thought) if c == ")" and i > m.end()):
        title = thought[m.end() : close]
        r = re.match(r" of search (\d+)", thought[close + 1 :])
        search = int(r.group(1)) if r else len(observations)
        if not 1 <= search <= len(observations):
            return None
        line = _doc_line(observations[search - 1], int(m.group(1)))
        if line is not None and line.startswith(title + ") "):
            return line[len(title) + 2 :]
    return None


def quotes_evidence(thought: str, observations: Sequence[str], k: int = 0) -> bool:
    """Does the thought cite a search result (`cited_text`) and quote it — at least `k` quotes
    (one per blank of a RAMP answer; at least one), each occurring verbatim in that result?"""
    text = cited_text(thought, observations)
    quotes = _QUOTE.findall(thought)
    return text is not None and len(quotes) >= max(k, 1) and all(q in text for q in quotes)


# -- records ------------------------------------------------------------------------------------

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_SEARCH = re.compile(r"<search>(.*?)</search>", re.DOTALL)


def thought_tokens(thought: str) -> int:
    return len(_TOKEN.findall(thought))


@dataclass
class RecordQuality:
    """The quality checks of one record's student view (its `messages`)."""

    thoughts: int = 0
    cut: int = 0
    foreign: int = 0
    thought_tokens: int = 0
    answering: int = 0  # final answers written after at least one search
    evidence: int = 0  # ... whose thought quotes the cited result
    rewrite_pairs: int = 0
    near_duplicates: int = 0
    examples: dict[str, str] = field(default_factory=dict)  # first offending thought per check


def record_quality(record: Mapping[str, Any]) -> RecordQuality:
    """Check every thought of a record (the assistant turns of `messages`)."""
    q = RecordQuality()
    question = str(record.get("question", ""))
    k = int((record.get("meta") or {}).get("k", 0) or 0) if record.get("task") == "ramp" else 0
    observations: list[str] = []
    messages = list(record.get("messages") or [])
    last_assistant = max(
        (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1
    )
    for i, msg in enumerate(messages):
        content = str(msg.get("content", ""))
        if msg.get("role") == "tool":
            if content.startswith("<information>"):
                observations.append(content)
            continue
        if msg.get("role") != "assistant":
            continue
        m = _THINK.search(content)
        thought = m.group(1).strip() if m else ""
        q.thoughts += 1
        q.thought_tokens += thought_tokens(thought)
        if is_cut(thought):
            q.cut += 1
            q.examples.setdefault("cut", thought[-120:])
        if foreign_letters(thought, question + "\n" + "\n".join(observations)):
            q.foreign += 1
            q.examples.setdefault("foreign", thought[-120:])
        s = _SEARCH.search(content)
        if s:
            queries = [line.strip() for line in s.group(1).split("\n") if line.strip()]
            dup, pairs = near_duplicate_pairs(queries)
            q.near_duplicates += dup
            q.rewrite_pairs += pairs
            if dup:
                q.examples.setdefault("near_duplicate", " | ".join(queries))
        elif i == last_assistant and "<answer>" in content and observations:
            q.answering += 1
            if quotes_evidence(thought, observations, k):
                q.evidence += 1
            else:
                q.examples.setdefault("no_evidence", thought[:160])
    return q


_FIELDS = (
    "records",
    "accepted",
    "thoughts",
    "cut",
    "foreign",
    "thought_tokens",
    "answering",
    "evidence",
    "rewrite_pairs",
    "near_duplicates",
)


@dataclass
class QualityReport:
    """The quality checks summed by (task, k): `add` one record at a time."""

    groups: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any]) -> None:
        if record.get("status") == "failed":
            return
        task = str(record.get("task") or "ramp")
        k = int((record.get("meta") or {}).get("k", 0) or 0)
        key = f"{task} k={k}" if task == "ramp" else task
        q = record_quality(record)
        for name in ("all", key):
            g = self.groups.setdefault(name, dict.fromkeys(_FIELDS, 0))
            g["records"] += 1
            g["accepted"] += bool(record.get("accepted"))
            for f in _FIELDS[2:]:
                g[f] += getattr(q, f)
        for check, text in q.examples.items():
            self.examples.setdefault(check, text)

    def merge(self, other: QualityReport) -> None:
        """Add another report's counts (per-worker reports of a sharded run)."""
        for name, g in other.groups.items():
            mine = self.groups.setdefault(name, dict.fromkeys(_FIELDS, 0))
            for f in _FIELDS:
                mine[f] += g.get(f, 0)
        for check, text in other.examples.items():
            self.examples.setdefault(check, text)

    @staticmethod
    def rates(g: Mapping[str, int]) -> dict[str, Any]:
        def frac(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return {
            **g,
            "cut_rate": frac(g["cut"], g["thoughts"]),
            "foreign_rate": frac(g["foreign"], g["thoughts"]),
            "evidence_rate": frac(g["evidence"], g["answering"]),
            "near_duplicate_rate": frac(g["near_duplicates"], g["rewrite_pairs"]),
            "mean_thought_tokens": round(g["thought_tokens"] / g["thoughts"], 1)
            if g["thoughts"]
            else None,
        }

    def to_dict(self) -> dict[str, Any]:
        order = sorted(self.groups, key=lambda n: (n != "all", n))
        return {
            "by_group": {n: self.rates(self.groups[n]) for n in order},
            "examples": dict(self.examples),
        }

    def format(self) -> list[str]:
        """One line per group (all first)."""
        lines = []
        for name in sorted(self.groups, key=lambda n: (n != "all", n)):
            g = self.groups[name]
            r = self.rates(g)
            lines.append(
                f"  {name}: thoughts {g['thoughts']}, cut mid-sentence {g['cut']}, "
                f"foreign script {g['foreign']}, answers quoting evidence "
                f"{g['evidence']}/{g['answering']}, near-duplicate rewrites "
                f"{g['near_duplicates']}/{g['rewrite_pairs']}, mean thought "
                f"{r['mean_thought_tokens'] or 0} tokens, accepted {g['accepted']}/{g['records']}"
            )
        return lines


def quality_report(records: Iterable[Mapping[str, Any]]) -> QualityReport:
    report = QualityReport()
    for r in records:
        report.add(r)
    return report
