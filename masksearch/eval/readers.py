"""File readers shared by the benchmark loaders: JSON lists, JSONL, CSV (with preamble rows) and
parquet, each yielding records with their location, plus field checks that raise located
`InputError`s (file, line or `[index]`, field)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from masksearch.errors import InputError
from masksearch.jsonl import check_unicode, id_problem, iter_jsonl, open_text

Where = tuple[str, int | None, int | None]  # (path, line, json index)


def fail(msg: str, where: Where, field: str | None = None) -> InputError:
    path, line, index = where
    if index is not None:
        field = f"[{index}]" + (f".{field}" if field else "")
    return InputError(msg, path=path, line=line, field=field)


MAX_TEXT_CHARS = 20_000  # a question or answer longer than this is not a benchmark item


def text_field(
    obj: dict[str, Any],
    key: str,
    where: Where,
    *,
    allow_empty: bool = False,
    max_chars: int = MAX_TEXT_CHARS,
) -> str:
    if key not in obj or obj[key] is None:
        raise fail("missing required field", where, key)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise fail(f"expected a string, got {type(value).__name__}", where, key)
    value = str(value).strip()
    if not value and not allow_empty:
        raise fail("must not be empty", where, key)
    if len(value) > max_chars:
        raise fail(f"too long ({len(value):,} characters; at most {max_chars:,})", where, key)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise fail(
            f"text is not valid Unicode (lone surrogate at character {e.start})", where, key
        ) from None
    return value


def id_field(obj: dict[str, Any], key: str, where: Where) -> str:
    """An item id: one printable line (no NUL, newline or bidi override)."""
    value = text_field(obj, key, where, max_chars=1000)
    problem = id_problem(value)
    if problem:
        raise fail(problem, where, key)
    return value


def str_list(obj: dict[str, Any], key: str, where: Where) -> list[str]:
    value = obj.get(key, [])
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise fail("expected a list of strings", where, key)
    return [str(v) for v in value]


def load_json_list(path: str | Path) -> list[Any]:
    """A whole-file JSON list (HotpotQA/2Wiki/FanoutQA); located error on bad JSON."""
    path = str(path)
    try:
        with open_text(path) as fh:
            text = fh.read()
        data = json.loads(text[1:] if text.startswith("\ufeff") else text)  # BOM is allowed
    except json.JSONDecodeError as e:
        raise InputError(
            f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=e.lineno
        ) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not valid UTF-8 ({e.reason} at byte {e.start})", path=path) from None
    except (EOFError, OSError) as e:  # e.g. a truncated .gz
        raise InputError(f"unreadable ({e})", path=path) from None
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of questions, got {type(data).__name__}", path=path)
    if not data:
        raise InputError("file holds no questions", path=path)
    return data


def json_items(path: str | Path) -> Iterator[tuple[Where, dict[str, Any]]]:
    for i, obj in enumerate(load_json_list(path)):
        where: Where = (str(path), None, i)
        if not isinstance(obj, dict):
            raise fail(f"expected a JSON object, got {type(obj).__name__}", where)
        try:
            check_unicode(obj)  # a lone surrogate (valid JSON) would fail at the results file
        except InputError as e:
            raise fail(e.reason, where, e.field) from None
        yield where, obj


def jsonl_items(path: str | Path) -> Iterator[tuple[Where, dict[str, Any]]]:
    for line, obj in iter_jsonl(path):
        yield (str(path), line, None), obj


def csv_rows(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) for each CSV record; located error on bad encoding/quoting."""
    path = str(path)
    with open_text(path) as fh:
        reader = csv.reader(fh)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError, EOFError, OSError) as e:
                raise InputError(
                    f"unreadable CSV ({e})", path=path, line=reader.line_num + 1
                ) from None
            if reader.line_num == 1 and row and row[0].startswith("\ufeff"):
                row[0] = row[0][1:]  # a UTF-8 byte-order mark (Excel's CSV export)
            yield reader.line_num, row


def lower_keys(obj: dict[str, Any]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in obj.items()}


def csv_records(
    path: str | Path, need: tuple[str, ...], max_preamble: int = 20
) -> Iterator[tuple[Where, dict[str, str]]]:
    """Dict rows keyed by lower-cased header; the header is the first row holding all of `need`
    (the FreshQA sheet export has two title rows above it)."""
    header: list[str] | None = None
    for line, row in csv_rows(path):
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
        raise InputError(
            f"no header row with columns {', '.join(need)} in the first {max_preamble} rows",
            path=str(path),
        )


def parquet_file(path: str | Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(str(path))
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise InputError(f"unreadable parquet ({e})", path=str(path)) from None


def parquet_columns(path: str | Path) -> list[str]:
    return list(parquet_file(path).schema_arrow.names)


def parquet_rows(path: str | Path) -> Iterator[tuple[Where, dict[str, Any]]]:
    row = 0
    for batch in parquet_file(path).iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            yield (str(path), None, row), obj
            row += 1


def first_char(path: str | Path) -> str:
    try:
        with open_text(path) as fh:
            while ch := fh.read(1):
                if not ch.isspace() and ch != "\ufeff":
                    return ch
    except UnicodeDecodeError as e:
        raise InputError(
            f"not valid UTF-8 ({e.reason} at byte {e.start})", path=str(path)
        ) from None
    except (EOFError, OSError) as e:
        raise InputError(f"unreadable ({e})", path=str(path)) from None
    raise InputError("file is empty", path=str(path))


def check_text_file(path: str | Path, sample: int = 64 * 1024) -> None:
    """Refuse a binary or non-UTF-8 file (e.g. an image or a model file given as a dataset)
    before any parser sees it; `.parquet` files are checked by their magic bytes instead."""
    import gzip

    from masksearch.fileio import check_input_file

    p = Path(path)
    if p.is_dir():
        raise InputError("is a directory, expected a dataset file", path=str(p))
    check_input_file(p)  # missing, a device (/dev/zero), a FIFO
    try:
        if ".parquet" in p.suffixes:
            with open(p, "rb") as fh:
                if fh.read(4) != b"PAR1":
                    raise InputError("not a parquet file (no PAR1 magic)", path=str(p))
            return
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as fh:
            head = fh.read(sample)
    except (EOFError, OSError) as e:
        raise InputError(f"unreadable ({e})", path=str(p)) from None
    if not head.strip():
        raise InputError("file is empty", path=str(p))
    if b"\x00" in head:
        raise InputError(
            "binary file (NUL bytes); expected JSON, JSONL, CSV or parquet", path=str(p)
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a character cut at the sample's end
            raise InputError(
                f"not UTF-8 text ({e.reason} at byte {e.start}); expected JSON, JSONL, CSV "
                "or parquet",
                path=str(p),
            ) from None


def peek_first_object(path: str | Path, chunk: int = 1 << 20) -> dict[str, Any] | None:
    """The first JSON object of a JSONL or JSON-list file without parsing the whole file."""
    suffixes = Path(path).suffixes
    if ".parquet" in suffixes or ".csv" in suffixes:
        return None
    if first_char(path) != "[":
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
