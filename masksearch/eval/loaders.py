"""Benchmark loaders: each official file format (and FlashRAG jsonl) → `EvalItem`s.

JSONL and CSV files stream; JSON-list files (HotpotQA, 2Wiki, FanoutQA) are parsed whole, as
their official readers do. Every malformed item raises `InputError` naming the file, the line
(JSONL/CSV) or the JSON list index (as `[i].field`), and the field.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from masksearch.eval.items import EvalItem
from masksearch.eval.readers import (
    Where,
    csv_records,
    fail,
    first_char,
    id_field,
    json_items,
    jsonl_items,
    lower_keys,
    parquet_rows,
    str_list,
    text_field,
)
from masksearch.jsonl import iter_jsonl
from masksearch.tagformat import dedupe

log = logging.getLogger(__name__)


def _id(obj: dict[str, Any], key: str, where: Where) -> str:
    return id_field(obj, key, where)


def parse_hotpotqa(obj: dict[str, Any], where: Where, dataset: str = "hotpotqa") -> EvalItem:
    """`{_id, question, answer, supporting_facts, context, type, level}`; one gold string."""
    if "answer" not in obj:
        raise fail(
            "missing required field (is this the test split, which has no answers?)",
            where,
            "answer",
        )
    meta: dict[str, Any] = {k: obj[k] for k in ("type", "level", "supporting_facts") if k in obj}
    return EvalItem(
        _id(obj, "_id", where),
        text_field(obj, "question", where),
        [text_field(obj, "answer", where)],
        dataset,
        meta,
    )


def load_hotpotqa(path: str | Path, **_: Any) -> Iterator[EvalItem]:
    for where, obj in json_items(path):
        yield parse_hotpotqa(obj, where)


def load_2wiki_aliases(path: str | Path) -> dict[str, list[str]]:
    """`id_aliases.json` (JSONL of `{Q_id, aliases, demonyms}`) → Q_id → aliases + demonyms."""
    out: dict[str, list[str]] = {}
    for line, obj in iter_jsonl(path, required=("Q_id",)):
        where: Where = (str(path), line, None)
        out[str(obj["Q_id"])] = str_list(obj, "aliases", where) + str_list(obj, "demonyms", where)
    return out


def load_2wiki(
    path: str | Path, *, aliases_path: str | Path | None = None, **_: Any
) -> Iterator[EvalItem]:
    """HotpotQA-style JSON plus `evidences`, `entity_ids`, `answer_id`; aliases from `id_aliases.json`.

    With no `aliases_path`, an `id_aliases.json` next to the data file is used when present
    (the official v1.1 scorer adds those aliases to the gold set); when there is none, a warning
    says so (scores are then lower than official) and how to point at it.
    """
    if aliases_path is None and (Path(path).parent / "id_aliases.json").exists():
        aliases_path = Path(path).parent / "id_aliases.json"
    if aliases_path is None:
        log.warning(
            "%s: no id_aliases.json next to it, so 2Wiki answers are scored without their "
            "aliases (the official v1.1 scorer uses them); pass --aliases 2wiki=PATH",
            path,
        )
    aliases = load_2wiki_aliases(aliases_path) if aliases_path else {}
    for where, obj in json_items(path):
        item = parse_hotpotqa(obj, where, "2wikimultihopqa")
        for key in ("evidences", "entity_ids", "answer_id"):
            if key in obj:
                item.metadata[key] = obj[key]
        item.golden_answers = dedupe(
            item.golden_answers + aliases.get(str(obj.get("answer_id")), []), ignore_case=False
        )
        yield item


def load_musique(
    path: str | Path, *, include_unanswerable: bool = False, **_: Any
) -> Iterator[EvalItem]:
    """JSONL `{id, question, answer, answer_aliases, paragraphs, answerable}` (streams).

    Unanswerable items (MuSiQue-Full) are skipped unless `include_unanswerable`.
    """
    for where, obj in jsonl_items(path):
        answerable = obj.get("answerable", True)
        if not isinstance(answerable, bool):
            raise fail("expected true or false", where, "answerable")
        if not answerable and not include_unanswerable:
            continue
        golds = dedupe(
            [text_field(obj, "answer", where)] + str_list(obj, "answer_aliases", where),
            ignore_case=False,
        )
        meta: dict[str, Any] = {"answerable": answerable}
        if isinstance(obj.get("question_decomposition"), list):
            meta["hops"] = len(obj["question_decomposition"])
        yield EvalItem(
            _id(obj, "id", where), text_field(obj, "question", where), golds, "musique", meta
        )


def fanout_answer_text(answer: Any) -> str:
    """FanoutQA answer (str/list/dict/primitive) as one string, like fanoutqa's `str_answer`."""
    if isinstance(answer, list):
        return "\n".join(fanout_answer_text(a) for a in answer)
    if isinstance(answer, dict):
        return "\n".join(f"{k} - {fanout_answer_text(v)}" for k, v in answer.items())
    if isinstance(answer, bool):
        return "yes" if answer else "no"
    return "" if answer is None else str(answer)


def _check_fanout_answer(value: Any, where: Where, field: str) -> None:
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_fanout_answer(v, where, f"{field}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_fanout_answer(v, where, f"{field}.{k}")
    elif not isinstance(value, str | int | float | bool):
        raise fail(
            f"expected str, number, bool, list or dict, got {type(value).__name__}", where, field
        )


def load_fanoutqa(path: str | Path, **_: Any) -> Iterator[EvalItem]:
    """JSON list of DevQuestion `{id, question, decomposition, answer, categories, ...}`."""
    for where, obj in json_items(path):
        if "answer" not in obj:
            raise fail("missing required field (the test split has no answers)", where, "answer")
        answer = obj["answer"]
        _check_fanout_answer(answer, where, "answer")
        gold = fanout_answer_text(answer).strip()
        if not gold:
            raise fail("must not be empty", where, "answer")
        meta = {"categories": obj.get("categories", [])}
        if isinstance(obj.get("necessary_evidence"), list):
            meta["n_evidence"] = len(obj["necessary_evidence"])
        yield EvalItem(
            _id(obj, "id", where),
            text_field(obj, "question", where),
            [gold],
            "fanoutqa",
            meta,
            reference=answer,
        )


def load_bamboogle(path: str | Path, **_: Any) -> Iterator[EvalItem]:
    """Bamboogle as CSV (`Question`,`Answer` columns), a JSON list or JSONL of such objects."""
    suffixes = Path(path).suffixes
    if ".csv" in suffixes:
        records = csv_records(path, ("question", "answer"))
    elif ".parquet" in suffixes:  # e.g. the HF mirror chiayewken/bamboogle
        records = ((w, lower_keys(o)) for w, o in parquet_rows(path))
    elif ".jsonl" in suffixes:
        records = ((w, lower_keys(o)) for w, o in jsonl_items(path))
    else:
        records = ((w, lower_keys(o)) for w, o in json_items(path))
    for n, (where, rec) in enumerate(records):
        has_id = rec.get("id") not in (None, "") and str(rec.get("id")).strip()
        item_id = id_field(rec, "id", where) if has_id else f"bamboogle-{n}"
        yield EvalItem(
            item_id,
            text_field(rec, "question", where),
            [text_field(rec, "answer", where)],
            "bamboogle",
        )


def load_freshqa(path: str | Path, *, split: str | None = None, **_: Any) -> Iterator[EvalItem]:
    """CSV export of the FreshQA sheet: `id, split, question, effective_year, next_review,
    false_premise, num_hops, fact_type, source, answer_0..answer_9, note`. `split` filters
    (`test`/`dev`, case-insensitive)."""
    answer_cols = [f"answer_{i}" for i in range(10)]
    for n, (where, rec) in enumerate(csv_records(path, ("question", "answer_0"))):
        if split and rec.get("split", "").strip().lower() != split.lower():
            continue
        golds = dedupe([rec.get(c, "") or "" for c in answer_cols], ignore_case=False)
        if not golds:
            raise fail("no answer in answer_0..answer_9", where, "answer_0")
        meta: dict[str, Any] = {
            k: v.strip()
            for k, v in rec.items()
            if k and k not in answer_cols and k not in ("id", "question") and v
        }
        if "false_premise" in meta:
            meta["false_premise"] = meta["false_premise"].upper() == "TRUE"
        item_id = id_field(rec, "id", where) if (rec.get("id") or "").strip() else f"freshqa-{n}"
        yield EvalItem(item_id, text_field(rec, "question", where), golds, "freshqa", meta)


def parse_flashrag(obj: dict[str, Any], where: Where, dataset: str) -> EvalItem:
    """`{id, question, golden_answers, metadata}` (FlashRAG / Search-R1 data files)."""
    if "golden_answers" not in obj:
        raise fail("missing required field", where, "golden_answers")
    golds = dedupe(str_list(obj, "golden_answers", where), ignore_case=False)
    if not golds:
        raise fail("no non-empty answer", where, "golden_answers")
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise fail(f"expected an object, got {type(meta).__name__}", where, "metadata")
    return EvalItem(
        _id(obj, "id", where), text_field(obj, "question", where), golds, dataset, dict(meta)
    )


def load_flashrag(path: str | Path, *, dataset: str = "flashrag", **_: Any) -> Iterator[EvalItem]:
    """FlashRAG split file: `.jsonl` (streamed), `.json` (list, or JSON lines) or `.parquet`."""
    suffixes = Path(path).suffixes
    if ".parquet" in suffixes:
        yield from _parquet_items(path, dataset)
        return
    if ".json" in suffixes and first_char(path) == "[":
        records = json_items(path)
    else:
        records = jsonl_items(path)
    for where, obj in records:
        yield parse_flashrag(obj, where, dataset)


def _parquet_items(path: str | Path, dataset: str) -> Iterator[EvalItem]:
    for where, obj in parquet_rows(path):
        yield parse_flashrag(obj, where, dataset)


Loader = Callable[..., Iterator[EvalItem]]
