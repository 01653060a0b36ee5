"""The one item type every benchmark loader produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from masksearch.types import MaskedExample


@dataclass(slots=True)
class EvalItem:
    """One benchmark question with its gold answers.

    `golden_answers` are the answer and its aliases (scored with max over aliases). `reference`
    keeps a structured answer where the benchmark has one (FanoutQA str/list/dict) for metrics
    that need it (FanoutQA loose accuracy); it is None elsewhere.
    """

    id: str
    question: str
    golden_answers: list[str]
    dataset: str
    metadata: dict[str, Any] = field(default_factory=dict)
    reference: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_example(self) -> MaskedExample:
        """The graph's input type (`task="qa"`, no spans)."""
        return MaskedExample(
            id=self.id,
            question=self.question,
            answers=list(self.golden_answers),
            task="qa",
            source_id=self.dataset,
        )
