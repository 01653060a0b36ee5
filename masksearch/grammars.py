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

`passage_span_grammar(passages)` builds the grammar of "a contiguous run of words copied from one
of these passages" (RAMP answers are verbatim spans of the source passage). A grammar string
(containing `::=`) is accepted wherever a format name is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

MAX_THINK_CHARS = 600
MAX_QUERY_CHARS = 160
MAX_ANSWER_CHARS = 240
MAX_SPAN_CHARS = 80
MAX_REWRITES = 5

# character classes: no tag can be opened inside free text, so the closing tag is unambiguous
_TEXT = r"[^<>]"
_LINE = r"[^<>\n]"

_THINK = f'think ::= "<think>" {_TEXT}{{1,{MAX_THINK_CHARS}}} "</think>"'
_SEARCH = f'search ::= "<search>" " "? [^<>\\n ] {_LINE}{{0,{MAX_QUERY_CHARS}}} "</search>"'
_ANSWER = f'answer ::= "<answer>" " "? [^<>\\n ] {_LINE}{{0,{MAX_ANSWER_CHARS}}} "</answer>"'

GRAMMARS: dict[str, str] = {
    "action": "\n".join(['root ::= think "\\n" (search | answer)', _THINK, _SEARCH, _ANSWER]),
    "search": "\n".join(['root ::= think "\\n" search', _THINK, _SEARCH]),
    "answer": "\n".join(['root ::= think "\\n" answer', _THINK, _ANSWER]),
    "answer_only": "\n".join(["root ::= answer", _ANSWER]),
    "rewrites": "\n".join(
        [
            f'root ::= "{{\\"queries\\": [" q (", " q){{0,{MAX_REWRITES - 1}}} "]}}"',
            f'q ::= "\\"" [^"\\\\<>\\n ] [^"\\\\<>\\n]{{0,{MAX_QUERY_CHARS}}} "\\""',
        ]
    ),
    "verdict": 'root ::= "<verdict>" ("correct" | "incorrect") "</verdict>"',
    "span": f"root ::= [^<>;\\n ] [^<>;\\n]{{0,{MAX_SPAN_CHARS}}}",
}

JSON_SCHEMAS: dict[str, dict[str, Any]] = {
    "rewrites": {
        "type": "object",
        "properties": {
            "queries": {
                "type": "array",
                "items": {"type": "string"},
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
    "rewrites": MAX_REWRITES * (MAX_QUERY_CHARS + 6) + 20,
    "verdict": 10,
    "span": MAX_SPAN_CHARS + 2,
}


def grammar_for(output_format: str) -> str:
    """The GBNF grammar of a format name, or `output_format` itself if it is a grammar."""
    if "::=" in output_format:
        return output_format
    try:
        return GRAMMARS[output_format]
    except KeyError:
        raise ValueError(
            f"unknown output format {output_format!r}; known: {', '.join(GRAMMARS)}"
        ) from None


def json_schema_for(output_format: str | None) -> dict[str, Any] | None:
    """The JSON schema of a JSON format (for providers' structured output), else None."""
    return JSON_SCHEMAS.get(output_format or "")


def token_budget(output_format: str | None, default: int) -> int:
    """Tokens to allow for a format: enough to finish it (at least `default`)."""
    return max(default, MAX_TOKENS.get(output_format or "", 0))


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    return json.dumps(text, ensure_ascii=False)


_WORD = re.compile(r"\w+|[^\w\s]")


def passage_span_grammar(passages: Iterable[str]) -> str:
    """Grammar of one contiguous run of words copied verbatim from one of `passages`.

    Passages are cut into words and punctuation marks keeping the separator between them, so
    `Gustave Eiffel` or `1889` can be taken out of `by Gustave Eiffel in 1889,`. The grammar is
    linear in the passages' length: rule `wI` is "token I, then optionally its separator and rule
    wI+1"; a span starts at any word (not at punctuation). Its length is bounded by the caller's
    token budget."""
    rules: list[str] = []
    starts: list[str] = []
    n = 0
    for text in passages:
        matches = list(_WORD.finditer(text))
        for i, m in enumerate(matches):
            token, name = m.group(0), f"w{n + i}"
            if i + 1 < len(matches):
                sep = text[m.end() : matches[i + 1].start()]
                sep = " " if sep and not sep.strip() else sep  # newlines/tabs read as one space
                rules.append(f"{name} ::= {gbnf_literal(token)} ({gbnf_literal(sep)} w{n + i + 1})?")
            else:
                rules.append(f"{name} ::= {gbnf_literal(token)}")
            if token[0].isalnum():
                starts.append(name)
        n += len(matches)
    if not starts:
        return GRAMMARS["span"]
    return "\n".join([f"root ::= {' | '.join(starts)}", *rules])
