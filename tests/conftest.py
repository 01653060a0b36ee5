"""Shared test setup: everything offline, small data the project ships in tests/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).parent / "data"


@pytest.fixture
def tiny_corpus_path() -> Path:
    """24 short encyclopedic passages in FlashRAG jsonl (`id`, `contents` = title\\ntext)."""
    return DATA / "tiny_corpus.jsonl"
