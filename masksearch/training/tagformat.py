"""The tagged single-agent format as a state machine (Search-R1 v0.3 style, model-agnostic).

A valid trajectory is `think → (search → information → think)* → answer` with only whitespace
between tags, no nesting, and nothing after the answer. It checks our own text (assistant and tool
turn contents), never a model-specific chat template marker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from masksearch.parsing import extract_tag

TAGS = ("think", "search", "information", "answer")
_TAG_RE = re.compile(r"<(/?)(think|search|information|answer)>", re.IGNORECASE)

# After closing tag X, which opening tags may come next ("start" = before anything).
_NEXT: dict[str, tuple[str, ...]] = {
    "start": ("think",),
    "think": ("search", "answer"),
    "search": ("information",),
    "information": ("think",),
    "answer": (),
}


def trajectory_text(completion: Any) -> str:
    """The model-visible trajectory as text: a string, or the assistant/tool contents of messages."""
    if isinstance(completion, str):
        return completion
    parts = []
    for m in completion or []:
        if isinstance(m, Mapping) and m.get("role") in ("assistant", "tool"):
            parts.append(str(m.get("content") or ""))
    return "\n".join(parts)


def assistant_text(completion: Any) -> str:
    """Only what the model wrote (assistant turns); plain strings are returned unchanged."""
    if isinstance(completion, str):
        return completion
    return "\n".join(
        str(m.get("content") or "")
        for m in completion or []
        if isinstance(m, Mapping) and m.get("role") == "assistant"
    )


def final_answer(completion: Any) -> str | None:
    """The last `<answer>` the model wrote (None when it never answered)."""
    return extract_tag(assistant_text(completion), "answer", last=True)


def check_format(completion: Any) -> tuple[bool, str]:
    """(valid, reason) for a trajectory; reason names the first violation."""
    text = trajectory_text(completion)
    state, open_tag, pos = "start", None, 0
    for m in _TAG_RE.finditer(text):
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


def count_searches(completion: Any) -> int:
    return len(re.findall(r"<search>", assistant_text(completion), re.IGNORECASE))


def information_texts(completion: Any) -> list[str]:
    """Contents of every `<information>` block (what retrieval returned)."""
    return [
        t
        for t in re.findall(
            r"<information>(.*?)</information>",
            trajectory_text(completion),
            re.DOTALL | re.IGNORECASE,
        )
    ]


def split_spans(answer: str, separator: str = ";") -> list[str]:
    """Answer spans of a RAMP answer (`a ; b ; c`), stripped, empties dropped."""
    return [s.strip() for s in answer.split(separator) if s.strip()]


def is_sequence_of_messages(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, str)
