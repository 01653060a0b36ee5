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
    """Paper datasets first in the paper's order, then any others by name."""
    known = [n for n in PAPER_ORDER if n in names]
    return known + sorted(n for n in set(names) if n not in PAPER_ORDER)


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


# Fields that only one official format has, checked on the first record (lower-cased keys).
_SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("flashrag", ("golden_answers",)),
    ("2wikimultihopqa", ("evidences", "entity_ids", "answer_id")),
    ("hotpotqa", ("level",)),
    ("musique", ("paragraphs", "question_decomposition", "answerable", "answer_aliases")),
    ("fanoutqa", ("decomposition", "necessary_evidence", "categories")),
    ("freshqa", ("answer_0", "false_premise", "next_review")),
)


def guess_format(keys: set[str]) -> str | None:
    """Which format a record's field names belong to (None: no telling field)."""
    for fmt, marks in _SIGNATURES:
        if any(m in keys for m in marks):
            return fmt
    return None  # Bamboogle (question, answer) has no field of its own


def _first_keys(path: Path) -> set[str] | None:
    if ".csv" in path.suffixes:
        for _, row in readers.csv_rows(path):
            cells = {c.strip().lower() for c in row}
            if "question" in cells:
                return cells
        return None
    first = readers.peek_first_object(path)
    return None if first is None else {str(k).strip().lower() for k in first}


def detect_format(name: str, path: str | Path) -> str:
    """`"flashrag"` when the file is a FlashRAG split (`golden_answers`), else the official name.

    A file that is not text (or not parquet) is refused, and so is an official name given a file
    of another benchmark (e.g. `bamboogle=hotpot_dev.json`), naming the format it looks like."""
    path = Path(path)
    readers.check_text_file(path)
    if ".parquet" in path.suffixes:
        columns = {c.lower() for c in readers.parquet_columns(path)}
        guessed = guess_format(columns)
    else:
        keys = _first_keys(path)
        guessed = None if keys is None else guess_format(keys)
    if guessed == "flashrag" or (name not in OFFICIAL_LOADERS and ".parquet" in path.suffixes):
        return "flashrag"
    if name in OFFICIAL_LOADERS:
        if guessed is not None and guessed != name:
            raise InputError(
                f"this file looks like {display_name(guessed)}, not {display_name(name)} "
                f"(dataset {name!r}); name it {guessed}=PATH or pass the {display_name(name)} file",
                path=str(path),
            )
        return name
    raise InputError(
        f"unknown dataset {name!r}: official loaders exist for {', '.join(PAPER_ORDER)}; "
        "other names need a FlashRAG-format file (id, question, golden_answers)",
        path=str(path),
    )


def iter_items(
    spec: DatasetSpec, *, limit: int | None = None, aliases: str | Path | None = None
) -> Iterator[EvalItem]:
    """Stream a benchmark's items (in file order), normalised to `EvalItem`. `aliases` is 2Wiki's
    `id_aliases.json` (default: the one next to the data file)."""
    if limit is not None and limit < 1:
        raise InputError(f"must be at least 1, got {limit}", field="--limit")
    fmt = detect_format(spec.name, spec.path)
    if aliases is not None and fmt != "2wikimultihopqa":
        raise InputError(
            f"an aliases file only applies to 2Wiki (official format), not {spec.name} ({fmt})",
            field="--aliases",
        )
    if spec.split and fmt != "freshqa":
        raise InputError(
            f"a :SPLIT suffix only applies to freshqa (one file holds both splits); "
            f"for {spec.name} pass the split's own file",
            field="--dataset",
        )
    if fmt == "flashrag":
        items = loaders.load_flashrag(spec.path, dataset=spec.name)
    elif fmt == "2wikimultihopqa":
        items = loaders.load_2wiki(spec.path, aliases_path=aliases)
    else:
        items = OFFICIAL_LOADERS[fmt](spec.path, split=spec.split)
    for item in itertools.islice(items, limit):
        item.dataset = spec.name
        yield item


def load_items(
    spec: DatasetSpec, *, limit: int | None = None, aliases: str | Path | None = None
) -> list[EvalItem]:
    """All items (up to `limit`); duplicate ids are an error naming the id."""
    items = list(iter_items(spec, limit=limit, aliases=aliases))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"duplicate question id {item.id!r}", path=str(spec.path), field="id")
        seen.add(item.id)
    return items
