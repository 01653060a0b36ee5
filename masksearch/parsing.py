"""Parsing LLM output: tagged actions (regex) and JSON objects (json + schema checks). Never eval."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

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
    return (found[-1] if last else found[0]).strip()


def extract_tags(text: str, tag: str) -> list[str]:
    """Contents of every complete `<tag>…</tag>`, stripped, in order."""
    return [m.strip() for m in _tag_re(tag).findall(text or "")]


def strip_tags(text: str) -> str:
    """Text with any `<tag>`/`</tag>` markers removed (content kept), whitespace collapsed per line."""
    cleaned = re.sub(r"</?\s*[a-zA-Z_]+\s*>", " ", text or "")
    return "\n".join(" ".join(line.split()) for line in cleaned.splitlines() if line.strip())


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
    """One query per non-empty line; JSON-ish lists (`["a", "b"]` or `[{"query": ..}]`) are accepted too."""
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
    return dedupe(" ".join(line.split()) for line in block.splitlines() if line.strip())


def dedupe(items: Any) -> list[str]:
    """Drop duplicates (case-insensitive), keep first-seen order."""
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        key = item.casefold()
        if item and key not in seen:
            seen.add(key)
            out.append(item)
    return out


def parse_action(text: str) -> Action:
    """Parse `<think>…</think>` + the FIRST `<search>…</search>` or `<answer>…</answer>` (Search-R1 rule)."""
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


_VERDICT_RE = re.compile(r"\b(correct|incorrect)\b", re.IGNORECASE)
_NEGATED_RE = re.compile(r"\b(not|isn't|is not|n't)\s+correct\b", re.IGNORECASE)


def parse_verdict(text: str) -> bool | None:
    """Judge verdict: True only for an explicit "correct", False for "incorrect", None if unclear.

    A `<verdict>` tag wins; otherwise the verdict words in the text must agree (all "correct"
    or all "incorrect"). Anything else is None (unclear, counted as not accepted).
    """
    tagged = extract_tag(text or "", "verdict", last=True)
    source = tagged if tagged is not None else (text or "")
    if _NEGATED_RE.search(source):
        return False
    words = {w.lower() for w in _VERDICT_RE.findall(source)}
    if words == {"correct"}:
        return True
    if words == {"incorrect"}:
        return False
    return None
