"""Benchmark loaders: each official file format (and FlashRAG jsonl) → `EvalItem`s.

JSONL and CSV files stream; JSON-list files (HotpotQA, 2Wiki, FanoutQA) are parsed whole, as
their official readers do. Every malformed item raises `InputError` naming the file, the line
(JSONL/CSV) or the JSON list index (as `[i].field`), and the field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from masksearch.errors import InputError
from masksearch.eval.items import EvalItem
from masksearch.jsonl import iter_jsonl, open_text

Where = tuple[str, int | None, int | None]  # (path, line, json index)


def _fail(msg: str, where: Where, field: str | None = None) -> InputError:
    path, line, index = where
    if index is not None:
        field = f"[{index}]" + (f".{field}" if field else "")
    return InputError(msg, path=path, line=line, field=field)


def _text(obj: dict[str, Any], key: str, where: Where, *, allow_empty: bool = False) -> str:
    if key not in obj or obj[key] is None:
        raise _fail("missing required field", where, key)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(f"expected a string, got {type(value).__name__}", where, key)
    value = str(value).strip()
    if not value and not allow_empty:
        raise _fail("must not be empty", where, key)
    return value


def _str_list(obj: dict[str, Any], key: str, where: Where) -> list[str]:
    value = obj.get(key, [])
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise _fail("expected a list of strings", where, key)
    return [str(v) for v in value]


def _dedupe(answers: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for a in answers:
        a = a.strip()
        if a and a not in seen:
            seen.add(a)
            out.append(a)
    return out


def load_json_list(path: str | Path) -> list[Any]:
    """A whole-file JSON list (HotpotQA/2Wiki/FanoutQA); located error on bad JSON."""
    path = str(path)
    try:
        with open_text(path) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=e.lineno) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not valid UTF-8 ({e.reason} at byte {e.start})", path=path) from None
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of questions, got {type(data).__name__}", path=path)
    if not data:
        raise InputError("file holds no questions", path=path)
    return data


def _json_items(path: str | Path) -> Iterator[tuple[Where, dict[str, Any]]]:
    for i, obj in enumerate(load_json_list(path)):
        where: Where = (str(path), None, i)
        if not isinstance(obj, dict):
            raise _fail(f"expected a JSON object, got {type(obj).__name__}", where)
        yield where, obj


def _jsonl_items(path: str | Path) -> Iterator[tuple[Where, dict[str, Any]]]:
    for line, obj in iter_jsonl(path):
        yield (str(path), line, None), obj


# ---------------------------------------------------------------- official formats

def _id(obj: dict[str, Any], key: str, where: Where) -> str:
    return _text(obj, key, where)


def parse_hotpotqa(obj: dict[str, Any], where: Where, dataset: str = "hotpotqa") -> EvalItem:
    """`{_id, question, answer, supporting_facts, context, type, level}`; one gold string."""
    if "answer" not in obj:
        raise _fail("missing required field (is this the test split, which has no answers?)", where, "answer")
    meta = {k: obj[k] for k in ("type", "level", "supporting_facts") if k in obj}
    return EvalItem(_id(obj, "_id", where), _text(obj, "question", where),
                    [_text(obj, "answer", where)], dataset, meta)


def load_hotpotqa(path: str | Path, **_: Any) -> Iterator[EvalItem]:
    for where, obj in _json_items(path):
        yield parse_hotpotqa(obj, where)


def load_2wiki_aliases(path: str | Path) -> dict[str, list[str]]:
    """`id_aliases.json` (JSONL of `{Q_id, aliases, demonyms}`) → Q_id → aliases + demonyms."""
    out: dict[str, list[str]] = {}
    for line, obj in iter_jsonl(path, required=("Q_id",)):
        where: Where = (str(path), line, None)
        out[str(obj["Q_id"])] = _str_list(obj, "aliases", where) + _str_list(obj, "demonyms", where)
    return out


def load_2wiki(path: str | Path, *, aliases_path: str | Path | None = None, **_: Any) -> Iterator[EvalItem]:
    """HotpotQA-style JSON plus `evidences`, `entity_ids`, `answer_id`; aliases from `id_aliases.json`.

    With no `aliases_path`, an `id_aliases.json` next to the data file is used when present
    (the official v1.1 scorer adds those aliases to the gold set).
    """
    if aliases_path is None and (Path(path).parent / "id_aliases.json").exists():
        aliases_path = Path(path).parent / "id_aliases.json"
    aliases = load_2wiki_aliases(aliases_path) if aliases_path else {}
    for where, obj in _json_items(path):
        item = parse_hotpotqa(obj, where, "2wikimultihopqa")
        for key in ("evidences", "entity_ids", "answer_id"):
            if key in obj:
                item.metadata[key] = obj[key]
        item.golden_answers = _dedupe(item.golden_answers + aliases.get(str(obj.get("answer_id")), []))
        yield item


def load_musique(path: str | Path, *, include_unanswerable: bool = False, **_: Any) -> Iterator[EvalItem]:
    """JSONL `{id, question, answer, answer_aliases, paragraphs, answerable}` (streams).

    Unanswerable items (MuSiQue-Full) are skipped unless `include_unanswerable`.
    """
    for where, obj in _jsonl_items(path):
        answerable = obj.get("answerable", True)
        if not isinstance(answerable, bool):
            raise _fail("expected true or false", where, "answerable")
        if not answerable and not include_unanswerable:
            continue
        golds = _dedupe([_text(obj, "answer", where)] + _str_list(obj, "answer_aliases", where))
        meta: dict[str, Any] = {"answerable": answerable}
        if isinstance(obj.get("question_decomposition"), list):
            meta["hops"] = len(obj["question_decomposition"])
        yield EvalItem(_id(obj, "id", where), _text(obj, "question", where), golds, "musique", meta)


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
        raise _fail(f"expected str, number, bool, list or dict, got {type(value).__name__}", where, field)


def load_fanoutqa(path: str | Path, **_: Any) -> Iterator[EvalItem]:
    """JSON list of DevQuestion `{id, question, decomposition, answer, categories, ...}`."""
    for where, obj in _json_items(path):
        if "answer" not in obj:
            raise _fail("missing required field (the test split has no answers)", where, "answer")
        answer = obj["answer"]
        _check_fanout_answer(answer, where, "answer")
        gold = fanout_answer_text(answer).strip()
        if not gold:
            raise _fail("must not be empty", where, "answer")
        meta = {"categories": obj.get("categories", [])}
        if isinstance(obj.get("necessary_evidence"), list):
            meta["n_evidence"] = len(obj["necessary_evidence"])
        yield EvalItem(_id(obj, "id", where), _text(obj, "question", where), [gold], "fanoutqa",
                       meta, reference=answer)


def _csv_rows(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) for each CSV record; located error on bad encoding/quoting."""
    path = str(path)
    with open_text(path) as fh:
        reader = csv.reader(fh)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as e:
                raise InputError(f"unreadable CSV ({e})", path=path, line=reader.line_num + 1) from None
            yield reader.line_num, row


def load_bamboogle(path: str | Path, **_: Any) -> Iterator[EvalItem]:
    """Bamboogle as CSV (`Question`,`Answer` columns), a JSON list or JSONL of such objects."""
    suffixes = Path(path).suffixes
    if ".csv" in suffixes:
        records = _csv_records(path, ("question", "answer"))
    elif ".parquet" in suffixes:  # e.g. the HF mirror chiayewken/bamboogle
        records = ((w, _lower_keys(o)) for w, o in _parquet_rows(path))
    elif ".jsonl" in suffixes:
        records = ((w, _lower_keys(o)) for w, o in _jsonl_items(path))
    else:
        records = ((w, _lower_keys(o)) for w, o in _json_items(path))
    for n, (where, rec) in enumerate(records):
        item_id = str(rec.get("id") or f"bamboogle-{n}")
        yield EvalItem(item_id, _text(rec, "question", where), [_text(rec, "answer", where)], "bamboogle")


def _lower_keys(obj: dict[str, Any]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in obj.items()}


def _csv_records(path: str | Path, need: tuple[str, ...], max_preamble: int = 20
                 ) -> Iterator[tuple[Where, dict[str, str]]]:
    """Dict rows keyed by lower-cased header; the header is the first row holding all of `need`
    (the FreshQA sheet export has two title rows above it)."""
    header: list[str] | None = None
    for line, row in _csv_rows(path):
        if header is None:
            cells = [c.strip().lower() for c in row]
            if all(n in cells for n in need):
                header = cells
            elif line >= max_preamble:
                break
            continue
        if not any(c.strip() for c in row):
            continue
        yield (str(path), line, None), dict(zip(header, row, strict=False))
    if header is None:
        raise InputError(f"no header row with columns {', '.join(need)} in the first {max_preamble} rows",
                         path=str(path))


def load_freshqa(path: str | Path, *, split: str | None = None, **_: Any) -> Iterator[EvalItem]:
    """CSV export of the FreshQA sheet: `id, split, question, effective_year, next_review,
    false_premise, num_hops, fact_type, source, answer_0..answer_9, note`. `split` filters
    (`test`/`dev`, case-insensitive)."""
    answer_cols = [f"answer_{i}" for i in range(10)]
    for n, (where, rec) in enumerate(_csv_records(path, ("question", "answer_0"))):
        if split and rec.get("split", "").strip().lower() != split.lower():
            continue
        golds = _dedupe([rec.get(c, "") or "" for c in answer_cols])
        if not golds:
            raise _fail("no answer in answer_0..answer_9", where, "answer_0")
        meta: dict[str, Any] = {k: v.strip() for k, v in rec.items()
                                if k and k not in answer_cols and k not in ("id", "question") and v}
        if "false_premise" in meta:
            meta["false_premise"] = meta["false_premise"].upper() == "TRUE"
        item_id = (rec.get("id") or "").strip() or f"freshqa-{n}"
        yield EvalItem(item_id, _text(rec, "question", where), golds, "freshqa", meta)


# ---------------------------------------------------------------- FlashRAG

def parse_flashrag(obj: dict[str, Any], where: Where, dataset: str) -> EvalItem:
    """`{id, question, golden_answers, metadata}` (FlashRAG / Search-R1 data files)."""
    if "golden_answers" not in obj:
        raise _fail("missing required field", where, "golden_answers")
    golds = _dedupe(_str_list(obj, "golden_answers", where))
    if not golds:
        raise _fail("no non-empty answer", where, "golden_answers")
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise _fail(f"expected an object, got {type(meta).__name__}", where, "metadata")
    return EvalItem(_id(obj, "id", where), _text(obj, "question", where), golds, dataset, dict(meta))


def load_flashrag(path: str | Path, *, dataset: str = "flashrag", **_: Any) -> Iterator[EvalItem]:
    """FlashRAG split file: `.jsonl` (streamed), `.json` (list, or JSON lines) or `.parquet`."""
    suffixes = Path(path).suffixes
    if ".parquet" in suffixes:
        yield from _parquet_items(path, dataset)
        return
    if ".json" in suffixes and _first_char(path) == "[":
        records = _json_items(path)
    else:
        records = _jsonl_items(path)
    for where, obj in records:
        yield parse_flashrag(obj, where, dataset)


def _parquet_file(path: str | Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(str(path))
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise InputError(f"unreadable parquet ({e})", path=str(path)) from None


def parquet_columns(path: str | Path) -> list[str]:
    return list(_parquet_file(path).schema_arrow.names)


def _parquet_rows(path: str | Path) -> Iterator[tuple[Where, dict[str, Any]]]:
    row = 0
    for batch in _parquet_file(path).iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            yield (str(path), None, row), obj
            row += 1


def _parquet_items(path: str | Path, dataset: str) -> Iterator[EvalItem]:
    for where, obj in _parquet_rows(path):
        yield parse_flashrag(obj, where, dataset)


def _first_char(path: str | Path) -> str:
    with open_text(path) as fh:
        while ch := fh.read(1):
            if not ch.isspace():
                return ch
    raise InputError("file is empty", path=str(path))


def peek_first_object(path: str | Path, chunk: int = 1 << 20) -> dict[str, Any] | None:
    """The first JSON object of a JSONL or JSON-list file without parsing the whole file."""
    suffixes = Path(path).suffixes
    if ".parquet" in suffixes or ".csv" in suffixes:
        return None
    if _first_char(path) != "[":
        for _, obj in iter_jsonl(path):
            return obj
        return None
    with open_text(path) as fh:
        head = fh.read(chunk)
    start = head.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(head, start)
    except json.JSONDecodeError:
        data = load_json_list(path)  # first item larger than the chunk: parse it all
        obj = data[0]
    return obj if isinstance(obj, dict) else None


Loader = Callable[..., Iterator[EvalItem]]
