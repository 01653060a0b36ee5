"""THE tag format: `<think>`, `<search>`, `<information>`, `<answer>` (Search-R1 style).

Every stage reads model output through here: the graph's nodes, the RL rollout and rewards, the
exporters and eval. Regexes and `json` only; model output is never evaluated.

Two answer rules, both Search-R1's:
- `parse_action(turn)`: the FIRST complete `<search>` or `<answer>` of ONE generated turn is the
  action (`postprocess_predictions`); the turn is cut after it (`truncate_after_action`).
- `final_answer(response)`: the LAST complete `<answer>` of a whole response or trajectory counts
  (`extract_solution`). Text inside `<information>` (retrieved, not written by the model) never
  counts. No complete `<answer>` → None, and QA/RAMP scores are 0 (an unclosed `<answer>` cut by
  the token limit is no answer, as in Search-R1; the whole response is never scored instead).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

TAGS = ("think", "search", "information", "answer")

# Generation stops after a closed action: providers get these as `stop`, HF `stop_strings`.
STOP_STRINGS: tuple[str, ...] = ("</search>", "</answer>")

_TAG_CACHE: dict[str, re.Pattern[str]] = {}


def _tag_re(tag: str) -> re.Pattern[str]:
    if tag not in _TAG_CACHE:
        _TAG_CACHE[tag] = re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL | re.IGNORECASE)
    return _TAG_CACHE[tag]


def extract_tag(text: str, tag: str, *, last: bool = False) -> str | None:
    """Content of the first (or last) complete `<tag>…</tag>`, stripped; None when absent."""
    found = _tag_re(tag).findall(text or "")
    if not found:
        return None
    return str(found[-1] if last else found[0]).strip()


def strip_tags(text: str) -> str:
    """Text with any `<tag>`/`</tag>` markers removed (content kept), whitespace collapsed per line."""
    cleaned = re.sub(r"</?\s*[a-zA-Z_]+\s*>", " ", text or "")
    return "\n".join(" ".join(line.split()) for line in cleaned.splitlines() if line.strip())


def dedupe(items: Iterable[str], *, ignore_case: bool = True) -> list[str]:
    """Strip, drop empty strings and duplicates (case-insensitive unless `ignore_case=False`),
    keep first-seen order."""
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        item = item.strip()
        key = item.casefold() if ignore_case else item
        if item and key not in seen:
            seen.add(key)
            out.append(item)
    return out


# -- one turn: the action -------------------------------------------------------------------------

_ACTION_RE = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL | re.IGNORECASE)


@dataclass(slots=True)
class Action:
    """One parsed agent turn: `kind` is what the model asked for."""

    kind: Literal["search", "answer", "invalid"]
    think: str = ""
    queries: list[str] = field(default_factory=list)
    answer: str = ""
    error: str = ""


def split_queries(block: str) -> list[str]:
    """Queries of one `<search>` block: one per non-empty line, and `a ; b` on one line is two
    queries (models often write several that way); JSON lists (`["a", "b"]` or
    `[{"query": ..}]`) are accepted too. Whitespace collapsed, duplicates dropped."""
    block = (block or "").strip()
    if block.startswith("["):
        try:
            data = json.loads(block)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, list):
            out = []
            for item in data:
                q = item.get("query") if isinstance(item, dict) else item
                if isinstance(q, str) and q.strip():
                    out.append(" ".join(q.split()))
            return dedupe(out)
    return dedupe(
        " ".join(part.split())
        for line in block.splitlines()
        for part in line.split(";")
        if part.strip()
    )


def parse_action(text: str) -> Action:
    """`<think>…</think>` + the FIRST complete `<search>…</search>` or `<answer>…</answer>` of one
    turn (Search-R1 rule); anything else is `invalid` with the reason in `error`."""
    text = text or ""
    think = extract_tag(text, "think") or ""
    m = _ACTION_RE.search(text)
    if m is None:
        reason = "empty output" if not text.strip() else "no <search> or <answer> tag"
        return Action("invalid", think=think, error=reason)
    kind, body = m.group(1).lower(), m.group(2).strip()
    if kind == "answer":
        if not body:
            return Action("invalid", think=think, error="empty <answer>")
        return Action("answer", think=think, answer=" ".join(body.split()))
    queries = split_queries(body)
    if not queries:
        return Action("invalid", think=think, error="empty <search>")
    return Action("search", think=think, queries=queries)


def truncate_after_action(text: str) -> str:
    """Cut generated text after the first closing `</search>` or `</answer>` (what the student emits)."""
    m = _ACTION_RE.search(text or "")
    return text[: m.end()] if m else (text or "")


def restore_stop(text: str) -> str:
    """Re-close a tag whose closing stop sequence the provider cut off (OpenAI-style `stop`
    drops the matched string)."""
    text = (text or "").rstrip()
    for tag in ("search", "answer"):
        if text.rfind(f"<{tag}>") > text.rfind(f"</{tag}>"):
            return text + f"</{tag}>"
    return text


# -- a whole response / trajectory ----------------------------------------------------------------

_INFORMATION_RE = re.compile(r"<information>.*?(</information>|$)", re.DOTALL | re.IGNORECASE)

Completion = str | Sequence[Mapping[str, Any]]


def trajectory_text(completion: Completion | None) -> str:
    """The model-visible trajectory as text: a string, or the assistant/tool contents of messages."""
    if isinstance(completion, str):
        return completion
    parts = []
    for m in completion or []:
        if isinstance(m, Mapping) and m.get("role") in ("assistant", "tool"):
            parts.append(str(m.get("content") or ""))
    return "\n".join(parts)


def assistant_text(completion: Completion | None) -> str:
    """Only what the model wrote: the assistant turns of messages, or a string with its
    `<information>` blocks (retrieved text) removed."""
    if isinstance(completion, str):
        return _INFORMATION_RE.sub(" ", completion)
    return "\n".join(
        str(m.get("content") or "")
        for m in completion or []
        if isinstance(m, Mapping) and m.get("role") == "assistant"
    )


def final_answer(completion: Completion | None) -> str | None:
    """The last complete `<answer>` the model wrote, whitespace collapsed; None when it never
    answered (scores 0). See the module docstring for the rule."""
    answer = extract_tag(assistant_text(completion), "answer", last=True)
    return None if answer is None else " ".join(answer.split())


def count_searches(completion: Completion | None) -> int:
    return len(re.findall(r"<search>", assistant_text(completion), re.IGNORECASE))


_FORMAT_TAG_RE = re.compile(r"<(/?)(think|search|information|answer)>", re.IGNORECASE)

# After closing tag X, which opening tags may come next ("start" = before anything).
_NEXT: dict[str, tuple[str, ...]] = {
    "start": ("think",),
    "think": ("search", "answer"),
    "search": ("information",),
    "information": ("think",),
    "answer": (),
}


def check_format(completion: Completion | None) -> tuple[bool, str]:
    """(valid, reason) for a trajectory (Search-R1 v0.3 state machine, model-agnostic):
    `think → (search → information → think)* → answer`, only whitespace between tags, no nesting,
    nothing after the answer. Checks our own text, never a chat-template marker; reason names the
    first violation."""
    text = trajectory_text(completion)
    state, open_tag, pos = "start", None, 0
    for m in _FORMAT_TAG_RE.finditer(text):
        closing, tag = m.group(1) == "/", m.group(2).lower()
        between = text[pos : m.start()]
        pos = m.end()
        if open_tag is None:
            if between.strip():
                return False, f"text outside tags before <{'/' if closing else ''}{tag}>"
            if closing:
                return False, f"</{tag}> without an opening tag"
            if tag not in _NEXT[state]:
                expected = " or ".join(f"<{t}>" for t in _NEXT[state]) or "nothing"
                return False, f"<{tag}> after {_after(state)}; expected {expected}"
            open_tag = tag
        else:
            if not closing or tag != open_tag:
                return False, f"<{'/' if closing else ''}{tag}> inside <{open_tag}>"
            if tag != "information" and not between.strip():
                return False, f"empty <{tag}>"
            state, open_tag = tag, None
    if pos == 0:
        return False, "no tags"
    if open_tag is not None:
        return False, f"<{open_tag}> is never closed"
    if text[pos:].strip():
        return False, "text after the last tag"
    if state != "answer":
        return False, "no final <answer>"
    return True, "ok"


def _after(state: str) -> str:
    return "the start" if state == "start" else f"</{state}>"


# -- JSON outputs (rewriter) ----------------------------------------------------------------------


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The outermost JSON object in free text (code fences and prose around it allowed); None if none parses."""
    text = text or ""
    starts = [i for i, ch in enumerate(text) if ch == "{"]
    decoder = json.JSONDecoder()
    for start in starts:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


class ParseError(ValueError):
    """LLM output did not match the expected format (never retried: the same prompt gives the same output)."""


def parse_rewrites(text: str, *, max_queries: int) -> list[str]:
    """Rewriter output `{"queries": [...]}` → 1..max_queries non-empty distinct strings; ParseError otherwise."""
    obj = extract_json_object(text)
    if obj is None:
        raise ParseError("no JSON object in rewriter output")
    queries = obj.get("queries")
    if not isinstance(queries, list):
        raise ParseError("'queries' must be a list")
    if not all(isinstance(q, str) for q in queries):
        raise ParseError("'queries' must contain only strings")
    cleaned = dedupe(" ".join(q.split()) for q in queries if q.strip())
    if not cleaned:
        raise ParseError("'queries' is empty")
    return cleaned[:max_queries]
