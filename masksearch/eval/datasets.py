"""Benchmark registry: names, display names (paper order) and format detection."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from masksearch.errors import InputError
from masksearch.eval import loaders, readers
from masksearch.eval.items import EvalItem

# The MaskSearch table's columns, in order.
PAPER_ORDER = ("hotpotqa", "fanoutqa", "musique", "2wikimultihopqa", "bamboogle", "freshqa")
DISPLAY = {
    "hotpotqa": "HotpotQA",
    "fanoutqa": "FanoutQA",
    "musique": "MuSiQue",
    "2wikimultihopqa": "2Wiki",
    "bamboogle": "Bamboogle",
    "freshqa": "FreshQA",
}
ALIASES = {
    "hotpot": "hotpotqa",
    "2wiki": "2wikimultihopqa",
    "twowiki": "2wikimultihopqa",
    "fanout": "fanoutqa",
    "fresh": "freshqa",
}
OFFICIAL_LOADERS: dict[str, loaders.Loader] = {
    "hotpotqa": loaders.load_hotpotqa,
    "fanoutqa": loaders.load_fanoutqa,
    "musique": loaders.load_musique,
    "2wikimultihopqa": loaders.load_2wiki,
    "bamboogle": loaders.load_bamboogle,
    "freshqa": loaders.load_freshqa,
}


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    return ALIASES.get(key, key)


def display_name(name: str) -> str:
    return DISPLAY.get(name, name)


def column_order(names: list[str]) -> list[str]:
    """Paper datasets first in the paper's order, then any others in first-seen order."""
    known = [n for n in PAPER_ORDER if n in names]
    return known + [n for n in dict.fromkeys(names) if n not in PAPER_ORDER]


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """`NAME[:SPLIT]=PATH` from the command line."""

    name: str
    path: Path
    split: str | None = None

    @classmethod
    def parse(cls, text: str) -> DatasetSpec:
        if "=" not in text:
            raise InputError(
                f"dataset must be NAME=PATH or NAME:SPLIT=PATH, got {text!r}", field="--dataset"
            )
        left, _, path = text.partition("=")
        name, _, split = left.partition(":")
        if not name.strip() or not path.strip():
            raise InputError(f"dataset must be NAME=PATH, got {text!r}", field="--dataset")
        return cls(canonical_name(name), Path(path.strip()), split.strip() or None)


def detect_format(name: str, path: str | Path) -> str:
    """`"flashrag"` when the file is a FlashRAG split (`golden_answers`), else the official name."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=str(path))
    if ".parquet" in path.suffixes:
        columns = readers.parquet_columns(path)
        if "golden_answers" in columns or name not in OFFICIAL_LOADERS:
            return "flashrag"
        return name
    first = readers.peek_first_object(path)
    if first is not None and "golden_answers" in first:
        return "flashrag"
    if name in OFFICIAL_LOADERS:
        return name
    raise InputError(
        f"unknown dataset {name!r}: official loaders exist for {', '.join(PAPER_ORDER)}; "
        "other names need a FlashRAG-format file (id, question, golden_answers)",
        path=str(path),
    )


def iter_items(spec: DatasetSpec, *, limit: int | None = None) -> Iterator[EvalItem]:
    """Stream a benchmark's items (in file order), normalised to `EvalItem`."""
    fmt = detect_format(spec.name, spec.path)
    if spec.split and fmt != "freshqa":
        raise InputError(
            f"a :SPLIT suffix only applies to freshqa (one file holds both splits); "
            f"for {spec.name} pass the split's own file",
            field="--dataset",
        )
    if fmt == "flashrag":
        items = loaders.load_flashrag(spec.path, dataset=spec.name)
    else:
        items = OFFICIAL_LOADERS[fmt](spec.path, split=spec.split)
    for item in itertools.islice(items, limit):
        item.dataset = spec.name
        yield item


def load_items(spec: DatasetSpec, *, limit: int | None = None) -> list[EvalItem]:
    """All items (up to `limit`); duplicate ids are an error naming the id."""
    items = list(iter_items(spec, limit=limit))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"duplicate question id {item.id!r}", path=str(spec.path), field="id")
        seen.add(item.id)
    return items
