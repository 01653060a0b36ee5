"""Core data types shared across the package."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrievable unit of text with a stable id."""

    id: str
    title: str
    text: str
    score: float | None = None

    @property
    def contents(self) -> str:
        """FlashRAG/Search-R1 `contents`: title, newline, text."""
        return f"{self.title}\n{self.text}"

    @classmethod
    def from_contents(cls, id: str, contents: str, score: float | None = None) -> Passage:
        title, _, text = contents.partition("\n")
        return cls(id=str(id), title=title.strip().strip('"'), text=text.strip(), score=score)

    def with_score(self, score: float) -> Passage:
        return Passage(self.id, self.title, self.text, float(score))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Span:
    """A character span [start, end) of a passage's text."""

    start: int
    end: int
    text: str
    label: str = "ENTITY"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class MaskedExample:
    """One RAMP training/generation item (or a QA item when `spans` is empty)."""

    id: str
    question: str
    answers: list[str]
    task: str = "ramp"  # "ramp" (mask filling) or "qa"
    source_id: str = ""
    title: str = ""
    text: str = ""
    masked_text: str = ""
    spans: list[Span] = field(default_factory=list)
    strategy: str = ""

    @property
    def k(self) -> int:
        return len(self.spans) if self.task == "ramp" else 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["k"] = self.k
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MaskedExample:
        spans = [s if isinstance(s, Span) else Span(**s) for s in d.get("spans", [])]
        return cls(
            id=str(d["id"]),
            question=d["question"],
            answers=[str(a) for a in d["answers"]],
            task=d.get("task", "ramp"),
            source_id=str(d.get("source_id", "")),
            title=d.get("title", ""),
            text=d.get("text", ""),
            masked_text=d.get("masked_text", ""),
            spans=spans,
            strategy=d.get("strategy", ""),
        )
