"""Output formats of every role, as GBNF grammars (llama.cpp) and JSON schemas (API models).

A node asks for a format by name (`call_model(..., output_format="action")`); a model that decodes
under grammars (the llama.cpp `local:` model) then cannot emit anything else, so a local teacher
never produces a malformed action. Models without grammar support get the same prompt and the tag
parser as the fallback; API models get JSON mode for the JSON formats (`json_schema_for`).

| name | output |
|---|---|
| `action` | `<think>…</think>` then exactly one `<search>query</search>` or `<answer>…</answer>` |
| `search` | `<think>…</think>` then one `<search>query</search>` (a masked example must search first) |
| `answer` | `<think>…</think>` then one `<answer>…</answer>` |
| `answer_only` | `<answer>…</answer>` (the forced answer) |
| `rewrites` | `{"queries": ["…", …]}` with 1..`MAX_REWRITES` queries |
| `verdict` | `<verdict>correct</verdict>` or `<verdict>incorrect</verdict>` |
| `span` | a short span on one line (one masked blank) |

RAMP with a grammar-capable (local) model: the planner decodes only its first query
(`keyword_search`), the observer only its choice (`ramp_action`: one more query or the bare
`<answer>` opening) — the node composes their thoughts (`masksearch.nodes.evidence`) — and the
answer goes one blank at a time (`masksearch.nodes.ramp`): `choice` (which search result is the
masked passage), `fill_grammar` (one verbatim span of that result, at most `MAX_FILL_TOKENS`
tokens, starting where it continues the words before the blank). Keyword queries are whole words
(`MAX_KEYWORD_WORDS`); thoughts a model writes are bounded by sentences (`THINK_SENTENCES`).

`passage_span_rules(passages)` builds the rules of "a contiguous run of words copied from one of
these passages" (RAMP answers are verbatim spans of the source passage; `qa_span`, a QA answer,
is one of at most `MAX_QA_SPAN_TOKENS`). A grammar string
(containing `::=`) is accepted wherever a format name is.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from typing import Any

MAX_THINK_CHARS = 400
MAX_QUERY_CHARS = 160
MAX_KEYWORD_WORDS = 10  # a keyword query (rewriter, RAMP search): a few distinctive words ...
MAX_WORD_CHARS = 24  # ... of at most this many characters each
MAX_KEYWORD_CHARS = MAX_KEYWORD_WORDS * (MAX_WORD_CHARS + 1) - 1  # the longest keyword query
MAX_ANSWER_CHARS = 240
MAX_SPAN_CHARS = 80
MAX_REWRITES = 5

# character classes: no tag can be opened inside free text, so the closing tag is unambiguous
_TEXT = r"[^<>]"
_LINE = r"[^<>\n]"
# the first character of an answer or a span: no space and no sentence punctuation, so the
# placeholder of a prompt's format line (`<answer>...</answer>`), which a small model copies,
# cannot stand as an answer
_FIRST = r"[^<>\n .,;:!?\u2026]"


# Free text of a thought in the question's script(s) (`think_charset`): ASCII, common punctuation
# and symbols, and the letters of the scripts the writer has read. Letters of any other script —
# a Cyrillic word fragment in an English thought — cannot be sampled.
_ASCII = "\\x20-\\x3B\\x3D\\x3F-\\x7E\\n"  # ASCII without < and >
_ASCII_IN_SENTENCE = "\\x20\\x22-\\x2D\\x2F-\\x3B\\x3D\\x40-\\x7E"  # ... without .!? and newline
_COMMON = (
    _ASCII + "\\u00A0-\\u00BF\\u00D7\\u00F7"  # Latin-1 punctuation and symbols
    "\\u2010-\\u2027\\u2030-\\u205E\\u2070-\\u20CF\\u2100-\\u214F\\u2190-\\u22FF"
)
SCRIPT_RANGES: dict[str, str] = {
    "LATIN": "\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u024F\\u1E00-\\u1EFF",
    "GREEK": "\\u0370-\\u03FF\\u1F00-\\u1FFF",
    "COPTIC": "\\u0370-\\u03FF\\u2C80-\\u2CFF",
    "CYRILLIC": "\\u0400-\\u052F",
    "ARMENIAN": "\\u0530-\\u058F",
    "HEBREW": "\\u0590-\\u05FF",
    "ARABIC": "\\u0600-\\u06FF\\u0750-\\u077F",
    "DEVANAGARI": "\\u0900-\\u097F",
    "BENGALI": "\\u0980-\\u09FF",
    "TAMIL": "\\u0B80-\\u0BFF",
    "THAI": "\\u0E00-\\u0E7F",
    "GEORGIAN": "\\u10A0-\\u10FF",
    "HANGUL": "\\u1100-\\u11FF\\u3130-\\u318F\\uAC00-\\uD7AF",
    "HIRAGANA": "\\u3000-\\u303F\\u3040-\\u309F\\uFF00-\\uFFEF",
    "KATAKANA": "\\u3000-\\u303F\\u30A0-\\u30FF\\uFF00-\\uFFEF",
    "CJK": "\\u3000-\\u303F\\u3400-\\u4DBF\\u4E00-\\u9FFF\\uFF00-\\uFFEF",
}
SENTENCE_END = "[.!?] [\"')\\]]?"  # a thought ends at a sentence end (closing quote allowed)
THINK_TAIL_CHARS = 120  # a thought cut by its budget may finish its sentence within this


def think_charset(context: str | None = None) -> str:
    """The characters (GBNF class body) a thought may hold: `context` None → anything but `<`
    and `>`; else ASCII, common punctuation and the letters of the scripts in `context` (the
    question and the passages the writer read; a script without a range here: its letters)."""
    if context is None:
        return "^<>"
    from masksearch.quality import script_of

    ranges = [_COMMON]
    extra: set[str] = set()
    for script in sorted({script_of(ch) for ch in set(context)} - {""}):
        if script in SCRIPT_RANGES:
            ranges.append(SCRIPT_RANGES[script])
        else:
            extra |= {ch for ch in set(context) if ch.isalpha() and script_of(ch) == script}
    ranges += [
        f"\\u{ord(ch):04X}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08X}" for ch in sorted(extra)
    ]
    return "".join(ranges)


def _inner(body: str) -> str:
    """`body` (a GBNF class body from `think_charset`) without the sentence-ending `.!?` and the
    newline."""
    if body.startswith("^"):
        return body + ".!?\\n"
    return body.replace(_ASCII, _ASCII_IN_SENTENCE, 1)  # `body` starts with `_COMMON`


def _think_rule(
    chars: int | None = None, context: str | None = None, sentences: int | None = None
) -> str:
    """`<think>` free text `</think>` ending at a sentence end: at most `chars` + 2 characters
    (None: unbounded — the caller's token budget and `thought_tail` bound it); with `sentences`,
    at most that many sentences on one line (`!`, `?` and a `.` that is not followed by a digit
    or a small letter, as in `7.7` or `e.g.`, end one), so the model closes the thought instead
    of running into its token budget."""
    body = think_charset(context)
    first = body if body.startswith("^") else body.replace("\\x20-", "\\x21-").replace("\\n", "")
    first = first + " \\n" if first.startswith("^") else first
    if sentences is not None and chars is None:
        return "\n".join(
            [
                f'think ::= "<think>" [ \\n]? sent (" " sent){{0,{sentences - 1}}} "</think>"',
                f'sent ::= [{first}] ([{_inner(body)}] | "." [0-9a-z])* [.!?] ["\')\\]]?',
            ]
        )
    rep = "*" if chars is None else f"{{0,{chars}}}"
    return f'think ::= "<think>" [ \\n]? [{first}] [{body}]{rep} {SENTENCE_END} "</think>"'


def _rewrites_rules(n: int) -> list[str]:
    """`{"queries": [...]}` with 1..n keyword queries of whole words (`MAX_KEYWORD_WORDS`), none
    holding a `;` (two queries glued into one: each query is its own string)."""
    return [
        f'root ::= "{{\\"queries\\": [" q (", " q){{0,{n - 1}}} "]}}"',
        f'q ::= "\\"" qw (" " qw){{0,{MAX_KEYWORD_WORDS - 1}}} "\\""',
        f'qw ::= [^"\\\\<>\\n;\\[\\]\\x20]{{1,{MAX_WORD_CHARS}}}',
    ]


def _rewrites_tokens(n: int) -> int:
    return n * (MAX_KEYWORD_CHARS + 4) + 20


def _keyword_search_rule() -> str:
    """One keyword query in `<search>`: up to `MAX_KEYWORD_WORDS` words on one line, with no `;`,
    `(`, `)` or `:` (a small model copies a result's `Doc 2(Title: …)` line into its query
    otherwise) and no `[` or `]` (a masked passage's `[mask]`). A query is whole words: a length
    bound in characters cut queries mid-word."""
    return "\n".join(
        [
            f'search ::= "<search>" " "? kw (" " kw){{0,{MAX_KEYWORD_WORDS - 1}}} "</search>"',
            f"kw ::= [^<>\\n;():\\[\\]\\x20]{{1,{MAX_WORD_CHARS}}}",
        ]
    )


def build_grammars(
    think: int = MAX_THINK_CHARS,
    query: int = MAX_QUERY_CHARS,
    answer: int = MAX_ANSWER_CHARS,
    span: int = MAX_SPAN_CHARS,
) -> dict[str, str]:
    """The named grammars with these length bounds (characters of free text)."""
    t = _think_rule(think)
    s = f'search ::= "<search>" " "? [^<>\\n ] {_LINE}{{0,{query}}} "</search>"'
    a = f'answer ::= "<answer>" " "? {_FIRST} {_LINE}{{0,{answer}}} "</answer>"'
    return {
        "action": "\n".join(['root ::= think "\\n" (search | answer)', t, s, a]),
        "search": "\n".join(['root ::= think "\\n" search', t, s]),
        "answer": "\n".join(['root ::= think "\\n" answer', t, a]),
        "answer_only": "\n".join(["root ::= answer", a]),
        "rewrites": "\n".join(_rewrites_rules(MAX_REWRITES)),
        "verdict": 'root ::= "<verdict>" ("correct" | "incorrect") "</verdict>"',
        "span": f"root ::= {_FIRST} [^<>;\\n]{{0,{span}}}",
    }


GRAMMARS: dict[str, str] = build_grammars()
_THINK = GRAMMARS["search"].splitlines()[1]
_KEYWORD_SEARCH = _keyword_search_rule()

JSON_SCHEMAS: dict[str, dict[str, Any]] = {
    "rewrites": {
        "type": "object",
        "properties": {
            "queries": {
                "type": "array",
                "items": {"type": "string", "maxLength": MAX_KEYWORD_CHARS + 1},
                "minItems": 1,
                "maxItems": MAX_REWRITES,
            }
        },
        "required": ["queries"],
        "additionalProperties": False,
    }
}

# an upper bound on tokens for each format (a token is at least one character): with this budget a
# grammar-constrained generation always completes instead of being cut mid-format
MAX_TOKENS: dict[str, int] = {
    "action": MAX_THINK_CHARS + MAX_ANSWER_CHARS + 40,
    "search": MAX_THINK_CHARS + MAX_QUERY_CHARS + 40,
    "answer": MAX_THINK_CHARS + MAX_ANSWER_CHARS + 40,
    "answer_only": MAX_ANSWER_CHARS + 20,
    "rewrites": _rewrites_tokens(MAX_REWRITES),
    "verdict": 10,
    "span": MAX_SPAN_CHARS + 2,
}


def rewrites(n: int) -> str:
    """The rewriter's format for at most `n` queries (`rewrites:n`; the plain `rewrites` allows
    `MAX_REWRITES`): a local model stops after the queries that will be used."""
    n = max(1, min(int(n), MAX_REWRITES))
    return "rewrites" if n == MAX_REWRITES else f"rewrites:{n}"


def _rewrites_count(output_format: str) -> int | None:
    name, _, count = output_format.partition(":")
    return int(count) if name == "rewrites" and count.isdigit() else None


def grammar_for(output_format: str) -> str:
    """The GBNF grammar of a format name, or `output_format` itself if it is a grammar."""
    if "::=" in output_format:
        return output_format
    n = _rewrites_count(output_format)
    if n is not None:
        return "\n".join(_rewrites_rules(n))
    try:
        return GRAMMARS[output_format]
    except KeyError:
        raise ValueError(
            f"unknown output format {output_format!r}; known: {', '.join(GRAMMARS)}"
        ) from None


def json_schema_for(output_format: str | None) -> dict[str, Any] | None:
    """The JSON schema of a JSON format (for providers' structured output), else None."""
    n = _rewrites_count(output_format or "")
    if n is not None:
        schema = copy.deepcopy(JSON_SCHEMAS["rewrites"])
        schema["properties"]["queries"]["maxItems"] = n
        return schema
    return JSON_SCHEMAS.get(output_format or "")


GRAMMAR_TOKENS = 1024  # budget for a grammar given as a string (think + answer spans)


def token_budget(output_format: str | None, default: int) -> int:
    """Tokens to allow for a format: enough to finish it (at least `default`)."""
    if output_format and "::=" in output_format:
        return max(default, GRAMMAR_TOKENS)
    n = _rewrites_count(output_format or "")
    if n is not None:
        return max(default, _rewrites_tokens(n))
    return max(default, MAX_TOKENS.get(output_format or "", 0))


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    return json.dumps(text, ensure_ascii=False)


_WORD = re.compile(r"\w+|[^\w\s]")


def _starts_after(text: str, matches: list[re.Match[str]], after: str | None) -> set[int] | None:
    """The indices of the words of `text` that directly follow an occurrence of the last words
    of `after` (case and spacing aside), or None when `after` is not found there."""
    words = _WORD.findall(after or "")[-6:]
    if not words:
        return None
    pattern = re.compile(r"\s*".join(re.escape(w) for w in words), re.IGNORECASE)
    ends = [m.end() for m in pattern.finditer(text)]
    found = {next((i for i, w in enumerate(matches) if w.start() >= e), -1) for e in ends}
    found.discard(-1)
    return found or None


def passage_span_rules(
    passages: Iterable[str], after: str | None = None, *, limit: int | None = None
) -> list[str]:
    """GBNF rules whose rule `span` is one contiguous run of words copied verbatim from one of
    `passages` (empty list when the passages hold no word).

    Passages are cut into words and punctuation marks keeping the separator between them, so
    `Gustave Eiffel` or `1889` can be taken out of `by Gustave Eiffel in 1889,`. The rules are
    linear in the passages' length: `wI` is "token I, then optionally its separator and wI+1"; a
    span starts at any word (not at punctuation), or, with `after` (the words before a blank),
    only right after those words where a passage holds them. Its length is bounded by the token
    budget, or, with `limit`, to that many words and punctuation marks (`wIdD`: token I as the
    span's D-th)."""
    rules: list[str] = []
    starts: list[str] = []
    texts = list(passages)
    at = [_starts_after(t, list(_WORD.finditer(t)), after) for t in texts]
    only = any(a is not None for a in at)
    depths: list[int | None] = list(range(1, limit + 1)) if limit else [None]

    def name(i: int, d: int | None) -> str:
        return f"w{i}" if d is None else f"w{i}d{d}"

    n = 0
    for text, allowed in zip(texts, at, strict=True):
        matches = list(_WORD.finditer(text))
        for i, m in enumerate(matches):
            token = m.group(0)
            more = i + 1 < len(matches) and ";" not in (token, matches[i + 1].group(0))
            sep = text[m.end() : matches[i + 1].start()] if more else ""  # never across a `;`
            sep = " " if sep and not sep.strip() else sep  # newlines/tabs read as one space
            for d in depths:
                if more and (d is None or d < len(depths)):
                    nxt = f"({gbnf_literal(sep)} {name(n + i + 1, None if d is None else d + 1)})?"
                    rules.append(f"{name(n + i, d)} ::= {gbnf_literal(token)} {nxt}")
                else:
                    rules.append(f"{name(n + i, d)} ::= {gbnf_literal(token)}")
            if (allowed is not None and i in allowed) or (not only and token[0].isalnum()):
                starts.append(name(n + i, depths[0]))
        n += len(matches)
    if not starts:
        return []
    return [f"span ::= {' | '.join(starts)}", *rules]


def ramp_grammar(
    k: int, passages: Iterable[str] | None = None, *, may_search: bool, think: bool = True
) -> str:
    """A RAMP decision: `<think>…</think>` then either one `<search>` (if `may_search`) or
    `<answer>s1 ; … ; sk</answer>` with exactly `k` spans, each copied verbatim from `passages`
    (free short text when no passages are given). `think=False`: the answer alone."""
    k = max(1, k)
    rules = passage_span_rules(passages or [])
    if not rules:
        rules = [f"span ::= {_FIRST} [^<>;\\n]{{0,{MAX_SPAN_CHARS}}}"]
    answer = 'answer ::= "<answer>" span' + ' " ; " span' * (k - 1) + ' "</answer>"'
    if not think:
        return "\n".join(["root ::= answer", answer, *rules])
    root = 'root ::= think "\\n" ' + ("(search | answer)" if may_search else "answer")
    parts = [root, _THINK, answer, *rules]
    if may_search:
        parts.insert(2, _KEYWORD_SEARCH)
    return "\n".join(parts)


MAX_FILL_TOKENS = 16  # one masked span: names, dates, numbers, short phrases
# Token budgets of a thought (the whole call gets this plus what its action needs). A thought that
# runs past it is cut back to its last complete sentence and the action is asked for after it
# (`masksearch.nodes.thought`), so a stored thought always ends at a sentence end.
THINK_TOKENS = 128
ACTION_TOKENS = 48  # `<search>` with one keyword query, or the bare `<answer>` opening
# a continuation's budget: enough for any action the formats allow (a token is at least one
# character), so it always completes
REST_TOKENS = MAX_ANSWER_CHARS + 40


THINK_SENTENCES = 3  # a thought a model writes under a grammar (the QA planner and observer)


def ramp_action(*, may_search: bool) -> str:
    """A masked example's observer step on a model that decodes under grammars: one `<search>`
    (if `may_search`) or the bare `<answer>` opening, no thought — the node composes the thought
    from this choice and the results (`masksearch.nodes.evidence`), and the spans are filled
    afterwards, one blank at a time (`fill_grammar`)."""
    if not may_search:
        return 'root ::= "<answer>"'
    return "\n".join(['root ::= search | "<answer>"', _KEYWORD_SEARCH])


def whole_words(query: str) -> str:
    """A keyword query decoded under `_KEYWORD_SEARCH`: one that used all `MAX_KEYWORD_WORDS`
    words may end in a word glued to the one the model wanted next (no space is allowed after
    the last word), so that last word is dropped."""
    words = query.split(" ")
    return " ".join(words[:-1]) if len(words) >= MAX_KEYWORD_WORDS else query


def keyword_search() -> str:
    """One `<search>` with a keyword query, no thought: a masked example's first step on a model
    that decodes under grammars (the node composes the planner's thought)."""
    return "\n".join(["root ::= search", _KEYWORD_SEARCH])


def _thought_rule(line: str) -> bool:
    return line.startswith(("think ::=", "sent ::="))


def thinking(grammar: str, context: str | None = None, sentences: int | None = None) -> str:
    """A format that starts with `<think>` (`root ::= think "\\n" …`) with its thought limited to
    the scripts of `context` and to `sentences` sentences (unbounded in length: the caller's
    token budget bounds it)."""
    lines = [ln for ln in grammar.splitlines() if not _thought_rule(ln)]
    return "\n".join([*lines, _think_rule(None, context, sentences)])


def after_thought(grammar: str) -> str:
    """What follows `</think>\\n` in a thinking format: its root without the thought."""
    root, *rules = grammar.splitlines()
    head = 'root ::= think "\\n" '
    if not root.startswith(head):
        raise ValueError("not a thinking format: " + root)
    return "\n".join(["root ::= " + root[len(head) :], *[r for r in rules if not _thought_rule(r)]])


def thought_tail(grammar: str, context: str | None = None) -> str:
    """The rest of a thought cut inside its first sentence: at most `THINK_TAIL_CHARS` more
    characters to a sentence end, `</think>`, then what the format has after the thought."""
    rest = after_thought(grammar).splitlines()
    body = think_charset(context)
    tail = f"tail ::= [{body}]{{0,{THINK_TAIL_CHARS}}} {SENTENCE_END}"
    return "\n".join(
        ['root ::= tail "</think>\\n" ' + rest[0][len("root ::= ") :], tail, *rest[1:]]
    )


def choice(n: int) -> str:
    """One of the numbers 1..n."""
    return "root ::= " + " | ".join(f'"{i}"' for i in range(n, 0, -1))


def fill_grammar(passages: Iterable[str], after: str | None = None) -> str:
    """One verbatim span of `passages` (a leading space allowed: it continues a phrase); with
    `after`, one that starts where a passage continues those words (`passage_span_rules`)."""
    rules = passage_span_rules(passages, after)
    if not rules:
        return GRAMMARS["span"]
    return "\n".join(['root ::= " "? span', *rules])


# a QA answer copied from the results: at most this many words and punctuation marks
MAX_QA_SPAN_TOKENS = 10


def qa_span(passages: Iterable[str], *, close: bool = False) -> str:
    """A short answer copied verbatim from `passages` (at most `MAX_QA_SPAN_TOKENS` words and
    punctuation marks, starting at a word), or free short text when they hold no word; `close`:
    then `</answer>` (a turn continued after `<answer>`: the model ends the span by closing the
    tag, as its prompt shows, instead of copying on)."""
    rules = passage_span_rules(passages, limit=MAX_QA_SPAN_TOKENS)
    end = ' "</answer>"' if close else ""
    if not rules:
        rules = GRAMMARS["span"].replace("root ::= ", "span ::= ").splitlines()
    return "\n".join([f"root ::= span{end}", *rules])


def for_student(question: str, turn: int, *, forced: bool = False) -> str:
    """The student's (single agent's) format on a model that decodes under grammars — the
    teacher's action grammar: `action` (think, then one search or the answer); a masked passage's
    first turn must search (`search`: its hidden words cannot be known without retrieval); the
    forced answer is `answer` (think, then the answer)."""
    from masksearch.prompts import count_masks

    if forced:
        return "answer"
    return "search" if turn == 0 and count_masks(question) else "action"


def for_role(
    role: str, question: str, *, may_search: bool = True, context: str | None = None
) -> str:
    """The output format of a teacher role for this question, on a model that decodes under
    grammars.

    RAMP questions (with `[mask]`): the planner must search (the hidden words cannot be known
    without retrieval) and the observer decides between a search and the bare `<answer>`
    opening, both without a thought of their own (the node composes it: `nodes.evidence`); the
    answer's spans are then filled one blank at a time (`masksearch.nodes.ramp`); `ramp_grammar`
    is the one-call alternative (all `k` spans at once). QA: the generic action / answer formats
    (where a QA role decodes under grammars the node asks for choices instead, as for a masked
    passage: `keyword_search`, `ramp_action`, `qa_span`). `context`: the text the role has read
    (question, passages); its thought keeps to their scripts (`think_charset`). Thinking formats
    bound the thought by sentences (`THINK_SENTENCES`) and tokens, not characters."""
    from masksearch.prompts import count_masks

    k = count_masks(question)
    if role == "rewriter":
        return "rewrites"  # `rewrites(n)` for at most n queries
    if role == "judge":
        return "verdict"
    if role == "planner":
        if k:
            return keyword_search()
        return thinking(GRAMMARS["action"], context, THINK_SENTENCES)
    if role == "observer":
        if k:
            return ramp_action(may_search=may_search)
        grammar = GRAMMARS["action" if may_search else "answer"]
        return thinking(grammar, context, THINK_SENTENCES)
    if role == "answer":
        return "answer_only"
    raise ValueError(f"no output format for role {role!r}")
