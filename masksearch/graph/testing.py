"""Offline helpers for tests and demos: a keyword retriever over a few passages, scripted teams."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from masksearch.models.fake import ScriptedChatModel, route_by_prompt
from masksearch.types import Passage

# Substrings that identify each role's prompt in masksearch.prompts (for route_by_prompt).
PLANNER_KEY = "planner of a search team"
REWRITER_KEY = "rewrite a search sub-query"
OBSERVER_KEY = "observer of a search team"
FORCE_KEY = "search budget is used up"
JUDGE_KEY = "grade a model's answer"

_WORD = re.compile(r"\w+")


class KeywordRetriever:
    """Ranks passages by query-word overlap (ties by corpus order); implements `Retriever`.
    Meant for a handful of passages: its search runs on the event loop (`inline`)."""

    name = "keyword"
    inline = True

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.passages = list(passages)
        self._words = [
            {w.lower() for w in _WORD.findall(f"{p.title} {p.text}")} for p in self.passages
        ]
        self.calls: list[list[str]] = []

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        self.calls.append(list(queries))
        out = []
        for q in queries:
            words = {w.lower() for w in _WORD.findall(q)}
            scored = []
            for i, (p, doc) in enumerate(zip(self.passages, self._words, strict=True)):
                overlap = len(words & doc)
                if overlap:
                    scored.append((-overlap, i, p))
            scored.sort(key=lambda t: (t[0], t[1]))
            out.append([p.with_score(float(-s)) for s, _, p in scored[:k]])
        return out


def scripted_team(
    *,
    planner: Sequence[Any] = (),
    rewriter: Sequence[Any] = (),
    observer: Sequence[Any] = (),
    answer: Sequence[Any] = (),
    judge: Sequence[Any] = (),
    name: str = "fake:team",
) -> ScriptedChatModel:
    """One scripted model serving every multi-agent role, routed by which prompt it receives."""
    routes = {
        PLANNER_KEY: planner,
        REWRITER_KEY: rewriter,
        OBSERVER_KEY: observer,
        FORCE_KEY: answer,
        JUDGE_KEY: judge,
    }
    return ScriptedChatModel(respond=route_by_prompt(routes), model_name=name)
