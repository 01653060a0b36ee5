"""Optional spaCy NER span proposal (`--strategy spacy`; spaCy is not a dependency)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from masksearch.errors import ConfigError
from masksearch.types import Passage, Span

SPACY_LABELS = {
    "PERSON": "PERSON",
    "ORG": "ORG",
    "GPE": "LOC",
    "LOC": "LOC",
    "FAC": "LOC",
    "DATE": "DATE",
    "TIME": "DATE",
    "CARDINAL": "NUMBER",
    "QUANTITY": "NUMBER",
    "MONEY": "NUMBER",
    "PERCENT": "NUMBER",
    "ORDINAL": "NUMBER",
}


class SpacySpanProposer:
    """Named entities from a spaCy pipeline (default `en_core_web_sm`)."""

    name = "spacy"

    def __init__(self, model: str | None = None, *, batch_size: int = 64) -> None:
        try:
            import spacy
        except ImportError:
            raise ConfigError(
                "--strategy spacy needs spaCy and an English pipeline: "
                "pip install spacy && python -m spacy download en_core_web_sm "
                "(or use --strategy rule, which needs nothing)"
            ) from None
        name = model or "en_core_web_sm"
        try:
            self.nlp: Any = spacy.load(name, disable=["lemmatizer"])
        except OSError as e:
            raise ConfigError(f"cannot load spaCy pipeline {name!r}: {e}") from None
        self.batch_size = batch_size

    def propose(self, passages: Sequence[Passage]) -> list[list[Span] | str]:
        out: list[list[Span] | str] = []
        for doc in self.nlp.pipe((p.text for p in passages), batch_size=self.batch_size):
            out.append(
                [
                    Span(e.start_char, e.end_char, e.text, SPACY_LABELS.get(e.label_, "ENTITY"))
                    for e in doc.ents
                ]
            )
        return out
