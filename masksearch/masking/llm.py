"""LLM span proposal: prompt a chat model for JSON spans, parse safely, locate by exact match."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from masksearch.errors import ConfigError
from masksearch.prompts import SPAN_EXTRACTION_SYSTEM, SPAN_EXTRACTION_USER
from masksearch.types import Passage, Span
from masksearch.workers.pool import PoolSettings, pool_map_sync

log = logging.getLogger(__name__)

LABELS = {"ENTITY", "PERSON", "ORG", "LOC", "DATE", "NUMBER", "TERM"}
_LABEL_ALIASES = {
    "ORGANIZATION": "ORG",
    "ORGANISATION": "ORG",
    "LOCATION": "LOC",
    "PLACE": "LOC",
    "GPE": "LOC",
    "TIME": "DATE",
    "YEAR": "DATE",
    "QUANTITY": "NUMBER",
    "CARDINAL": "NUMBER",
    "MONEY": "NUMBER",
    "PERCENT": "NUMBER",
    "CONCEPT": "TERM",
    "PER": "PERSON",
}


class SpanOutputError(ValueError):
    """The model's reply is not the expected JSON."""


def outer_json_object(reply: str) -> dict[str, Any]:
    """Parse the first complete top-level JSON object in `reply` (code fences and prose allowed)."""
    start = reply.find("{")
    while start != -1:
        end = _matching_brace(reply, start)
        if end is not None:
            try:
                obj = json.loads(reply[start : end + 1])
            except json.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                return obj
        start = reply.find("{", start + 1)
    raise SpanOutputError("no JSON object in the reply")


def _matching_brace(s: str, start: int) -> int | None:
    depth, in_str, esc = 0, False, False
    for i in range(start, len(s)):
        ch = s[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def parse_span_reply(reply: str) -> list[tuple[str, str]]:
    """Validate `{"spans": [{"text": str, "label": str}]}` → [(text, LABEL)]; bad items raise."""
    obj = outer_json_object(reply)
    items = obj.get("spans")
    if not isinstance(items, list):
        raise SpanOutputError("'spans' must be a list")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):  # tolerate a bare list of strings
            item = {"text": item}
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise SpanOutputError(f"spans[{i}] must be an object with a string 'text'")
        label = item.get("label", "ENTITY")
        label = str(label).strip().upper() if isinstance(label, str | int | float) else "ENTITY"
        label = _LABEL_ALIASES.get(label, label)
        out.append((item["text"].strip(), label if label in LABELS else "ENTITY"))
    return out


def locate_spans(text: str, proposed: Sequence[tuple[str, str]]) -> tuple[list[Span], int]:
    """Find each proposed span by exact whole-word match; drop absent or repeated ones.

    Returns the located spans and how many proposals were rejected.
    """
    spans: list[Span] = []
    rejected = 0
    seen: set[str] = set()
    for phrase, label in proposed:
        if not phrase or phrase.lower() in seen:
            rejected += 1
            continue
        seen.add(phrase.lower())
        hits = [m for m in re.finditer(rf"(?<!\w){re.escape(phrase)}(?!\w)", text)]
        if len(hits) != 1:
            rejected += 1
            continue
        m = hits[0]
        spans.append(Span(m.start(), m.end(), phrase, label))
    return sorted(spans, key=lambda s: s.start), rejected


def _reply_text(msg: Any) -> str:
    text = getattr(msg, "text", None)
    if isinstance(text, str):  # langchain-core >= 1: a str property
        return str(text)
    if callable(text):
        text = text()
    if isinstance(text, str):
        return text
    content = getattr(msg, "content", msg)
    return content if isinstance(content, str) else json.dumps(content)


class LLMSpanProposer:
    """Ask a LangChain chat model for salient spans of a batch of passages."""

    name = "llm"

    def __init__(
        self, model: Any, *, max_spans: int = 8, max_concurrency: int = 8, retries: int = 2
    ) -> None:
        if isinstance(model, str):
            model = _load_model(model)
        if not hasattr(model, "batch"):
            raise ConfigError("--strategy llm needs a chat model spec (--model provider:name)")
        self.model = model.with_retry(stop_after_attempt=retries + 1) if retries > 0 else model
        self.max_spans = max_spans
        self.max_concurrency = max_concurrency
        self.rejected_spans = 0

    def messages(self, passage: Passage) -> list[tuple[str, str]]:
        user = SPAN_EXTRACTION_USER.substitute(
            title=passage.title, text=passage.text, max_spans=self.max_spans
        )
        return [("system", SPAN_EXTRACTION_SYSTEM), ("human", user)]

    def propose(self, passages: Sequence[Passage]) -> list[list[Span] | str]:
        """Spans for each passage, or a skip reason ("llm_error", "llm_bad_output"); the model
        calls run on the worker pool, `max_concurrency` at a time."""
        settings = PoolSettings(concurrency=self.max_concurrency, progress=False)
        replies = pool_map_sync(passages, self._ask, settings)
        out: list[list[Span] | str] = []
        for p, reply in zip(passages, replies, strict=True):
            if isinstance(reply, BaseException):
                log.warning("LLM call failed for passage %s: %s", p.id, type(reply).__name__)
                out.append("llm_error")
                continue
            try:
                proposed = parse_span_reply(_reply_text(reply))
            except SpanOutputError as e:
                log.debug("bad LLM output for passage %s: %s", p.id, e)
                out.append("llm_bad_output")
                continue
            spans, rejected = locate_spans(p.text, proposed)
            self.rejected_spans += rejected
            out.append(spans)
        return out

    async def _ask(self, passage: Passage) -> Any:
        """The model's reply for one passage, or the exception its call raised."""
        try:
            return await self.model.ainvoke(self.messages(passage))
        except Exception as e:  # counted as "llm_error" by `propose`
            return e


def _load_model(spec: str) -> Any:
    try:
        from masksearch.models import load_chat_model  # written by the models helper
    except ImportError as e:
        raise ConfigError(
            f"cannot load chat model {spec!r}: masksearch.models.load_chat_model "
            f"is unavailable ({e})"
        ) from None
    return load_chat_model(spec)
