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

RAMP with a grammar-capable (local) model answers one blank at a time (`masksearch.nodes.ramp`):
`ramp_decision` (think, then a search or the bare `<answer>` opening), `choice` (which search result
is the masked passage), `fill_grammar` (one verbatim span of that result, at most
`MAX_FILL_TOKENS` tokens).

`passage_span_grammar(passages)` builds the grammar of "a contiguous run of words copied from one
of these passages" (RAMP answers are verbatim spans of the source passage). A grammar string
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
MAX_KEYWORD_CHARS = 80  # a keyword query (rewriter, RAMP search): a few distinctive words
MAX_ANSWER_CHARS = 240
MAX_SPAN_CHARS = 80
MAX_REWRITES = 5

# character classes: no tag can be opened inside free text, so the closing tag is unambiguous
_TEXT = r"[^<>]"
_LINE = r"[^<>\n]"


def _think_rule(chars: int) -> str:
    return f'think ::= "<think>" [ \\n]? [^<>\\n ] {_TEXT}{{0,{chars}}} "</think>"'


def _rewrites_rules(n: int, query: int) -> list[str]:
    """`{"queries": [...]}` with 1..n keyword queries of at most `query` + 1 characters, none
    holding a `;` (two queries glued into one: each query is its own string)."""
    return [
        f'root ::= "{{\\"queries\\": [" q (", " q){{0,{n - 1}}} "]}}"',
        f'q ::= "\\"" [^"\\\\<>\\n; ] [^"\\\\<>\\n;]{{0,{query}}} "\\""',
    ]


def _rewrites_tokens(n: int) -> int:
    return n * (MAX_KEYWORD_CHARS + 6) + 20


def _keyword_search_rule(chars: int = MAX_KEYWORD_CHARS) -> str:
    """One keyword query in `<search>`: one line, no `;`, at most `chars` + 1 characters."""
    return f'search ::= "<search>" " "? [^<>\\n; ] [^<>\\n;]{{0,{chars}}} "</search>"'


def build_grammars(
    think: int = MAX_THINK_CHARS,
    query: int = MAX_QUERY_CHARS,
    answer: int = MAX_ANSWER_CHARS,
    span: int = MAX_SPAN_CHARS,
) -> dict[str, str]:
    """The named grammars with these length bounds (characters of free text)."""
    t = _think_rule(think)
    s = f'search ::= "<search>" " "? [^<>\\n ] {_LINE}{{0,{query}}} "</search>"'
    a = f'answer ::= "<answer>" " "? [^<>\\n ] {_LINE}{{0,{answer}}} "</answer>"'
    return {
        "action": "\n".join(['root ::= think "\\n" (search | answer)', t, s, a]),
        "search": "\n".join(['root ::= think "\\n" search', t, s]),
        "answer": "\n".join(['root ::= think "\\n" answer', t, a]),
        "answer_only": "\n".join(["root ::= answer", a]),
        "rewrites": "\n".join(_rewrites_rules(MAX_REWRITES, MAX_KEYWORD_CHARS)),
        "verdict": 'root ::= "<verdict>" ("correct" | "incorrect") "</verdict>"',
        "span": f"root ::= [^<>;\\n ] [^<>;\\n]{{0,{span}}}",
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
        return "\n".join(_rewrites_rules(n, MAX_KEYWORD_CHARS))
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


def passage_span_rules(passages: Iterable[str]) -> list[str]:
    """GBNF rules whose rule `span` is one contiguous run of words copied verbatim from one of
    `passages` (empty list when the passages hold no word).

    Passages are cut into words and punctuation marks keeping the separator between them, so
    `Gustave Eiffel` or `1889` can be taken out of `by Gustave Eiffel in 1889,`. The rules are
    linear in the passages' length: `wI` is "token I, then optionally its separator and wI+1"; a
    span starts at any word (not at punctuation). Its length is bounded by the token budget."""
    rules: list[str] = []
    starts: list[str] = []
    n = 0
    for text in passages:
        matches = list(_WORD.finditer(text))
        for i, m in enumerate(matches):
            token, name = m.group(0), f"w{n + i}"
            if i + 1 < len(matches) and ";" not in (token, matches[i + 1].group(0)):
                sep = text[m.end() : matches[i + 1].start()]  # never across a `;` (the separator)
                sep = " " if sep and not sep.strip() else sep  # newlines/tabs read as one space
                nxt = f"({gbnf_literal(sep)} w{n + i + 1})?"
                rules.append(f"{name} ::= {gbnf_literal(token)} {nxt}")
            else:
                rules.append(f"{name} ::= {gbnf_literal(token)}")
            if token[0].isalnum():
                starts.append(name)
        n += len(matches)
    if not starts:
        return []
    return [f"span ::= {' | '.join(starts)}", *rules]


def passage_span_grammar(passages: Iterable[str]) -> str:
    """One verbatim span of the passages (falls back to `span` when they hold no word)."""
    rules = passage_span_rules(passages)
    return "\n".join(["root ::= span", *rules]) if rules else GRAMMARS["span"]


def ramp_grammar(
    k: int, passages: Iterable[str] | None = None, *, may_search: bool, think: bool = True
) -> str:
    """A RAMP decision: `<think>…</think>` then either one `<search>` (if `may_search`) or
    `<answer>s1 ; … ; sk</answer>` with exactly `k` spans, each copied verbatim from `passages`
    (free short text when no passages are given). `think=False`: the answer alone."""
    k = max(1, k)
    rules = passage_span_rules(passages or [])
    if not rules:
        rules = [f"span ::= [^<>;\\n ] [^<>;\\n]{{0,{MAX_SPAN_CHARS}}}"]
    answer = 'answer ::= "<answer>" span' + ' " ; " span' * (k - 1) + ' "</answer>"'
    if not think:
        return "\n".join(["root ::= answer", answer, *rules])
    root = 'root ::= think "\\n" ' + ("(search | answer)" if may_search else "answer")
    parts = [root, _THINK, answer, *rules]
    if may_search:
        parts.insert(2, _KEYWORD_SEARCH)
    return "\n".join(parts)


MAX_FILL_TOKENS = 16  # one masked span: names, dates, numbers, short phrases
RAMP_THINK_CHARS = 200  # a RAMP thought names the search or the matching result: keep it short


def ramp_decision(*, may_search: bool, think: int = RAMP_THINK_CHARS) -> str:
    """`<think>…</think>` then one `<search>` (if `may_search`) or the bare `<answer>` opening:
    the spans are filled afterwards, one blank at a time (`fill_grammar`)."""
    t = _think_rule(think)
    if not may_search:
        return "\n".join(['root ::= think "\\n" "<answer>"', t])
    return "\n".join(['root ::= think "\\n" (search | "<answer>")', t, _KEYWORD_SEARCH])


def ramp_search(think: int = RAMP_THINK_CHARS) -> str:
    """A masked example's first step: a short `<think>…</think>`, then one `<search>`."""
    return "\n".join(['root ::= think "\\n" search', _think_rule(think), _KEYWORD_SEARCH])


def choice(n: int) -> str:
    """One of the numbers 1..n."""
    return "root ::= " + " | ".join(f'"{i}"' for i in range(n, 0, -1))


def fill_grammar(passages: Iterable[str]) -> str:
    """One verbatim span of `passages` (a leading space allowed: it continues a phrase)."""
    rules = passage_span_rules(passages)
    if not rules:
        return GRAMMARS["span"]
    return "\n".join(['root ::= " "? span', *rules])


def for_student(question: str, turn: int, *, forced: bool = False) -> str:
    """The student's (single agent's) format on a model that decodes under grammars — the
    teacher's action grammar: `action` (think, then one search or the answer); a masked passage's
    first turn must search (`search`: its hidden words cannot be known without retrieval); the
    forced answer is `answer` (think, then the answer)."""
    from masksearch.prompts import count_masks

    if forced:
        return "answer"
    return "search" if turn == 0 and count_masks(question) else "action"


def for_role(role: str, question: str, *, may_search: bool = True) -> str:
    """The output format of a teacher role for this question, on a model that decodes under
    grammars.

    RAMP questions (with `[mask]`): the planner must search (the hidden words cannot be known
    without retrieval); the observer decides between a search and the bare `<answer>` opening,
    whose spans are then filled one blank at a time (`masksearch.nodes.ramp`). QA: the generic
    action / answer formats. (`ramp_grammar` is the one-call alternative: all `k` spans at once.)"""
    from masksearch.prompts import count_masks

    k = count_masks(question)
    if role == "rewriter":
        return "rewrites"  # `rewrites(n)` for at most n queries
    if role == "judge":
        return "verdict"
    if role == "planner":
        return ramp_search() if k else "action"
    if role == "observer":
        if k:
            return ramp_decision(may_search=may_search)
        return "action" if may_search else "answer"
    if role == "answer":
        return "answer_only"
    raise ValueError(f"no output format for role {role!r}")
