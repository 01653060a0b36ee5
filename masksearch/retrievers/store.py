"""On-disk passage store: `passages.jsonl` (row = index id) plus a memory-mapped offsets file.

Lookups slice the memory-mapped jsonl by byte offset, so a loaded index never copies the corpus
text into process memory.
"""

from __future__ import annotations

import json
import mmap
import os
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from masksearch.errors import InputError
from masksearch.types import Passage

PASSAGES = "passages.jsonl"
OFFSETS = "passages.offsets.npy"


class PassageWriter:
    """Append passages to `passages.jsonl`, recording each row's byte offset."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.dir / PASSAGES, "wb")
        self._offsets = array("q")  # compact: 8 bytes per row
        self._pos = 0

    def add(self, passage: Passage) -> int:
        """Write one passage; returns its row id."""
        line = (
            json.dumps({"id": passage.id, "contents": passage.contents}, ensure_ascii=False).encode(
                "utf-8"
            )
            + b"\n"
        )
        self._offsets.append(self._pos)
        self._fh.write(line)
        self._pos += len(line)
        return len(self._offsets) - 1

    def __len__(self) -> int:
        return len(self._offsets)

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.close()
        self._offsets.append(self._pos)
        np.save(self.dir / OFFSETS, np.frombuffer(self._offsets, dtype=np.int64))

    def __enter__(self) -> PassageWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PassageStore:
    """Random access to passages by row id; thread-safe, offsets memory-mapped.

    Up to `cache_size` decoded passages are kept (about 1 KB each for typical 100-word
    passages; 0 disables the cache)."""

    def __init__(self, path: str | os.PathLike[str], cache_size: int = 100_000) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("passages file not found (rebuild the index)", path=str(self.path))
        offsets_path = self.path.with_name(OFFSETS)
        if not offsets_path.is_file():
            self._offsets = _scan_offsets(self.path)
        else:
            # a plain ndarray view of the memory map (numpy's memmap subclass makes every
            # gather several times slower)
            self._offsets = np.asarray(np.load(offsets_path, mmap_mode="r"))
        size, end = self.path.stat().st_size, int(self._offsets[-1]) if len(self._offsets) else 0
        if size != end or len(self._offsets) == 0:  # emptied, cut short or appended to
            raise InputError(
                f"damaged index file ({size:,} bytes where its offsets end at {end:,}); "
                "rebuild the index with `masksearch index`",
                path=str(self.path),
            )
        self._fh = open(self.path, "rb")
        # The text is memory-mapped: lookups are slices served from the page cache (no RAM copy,
        # no seek/read syscalls, safe to share between threads).
        self._data = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if len(self) else b""
        self._cache: dict[int, tuple[str, str, str]] = {}
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def get(self, row: int, score: float | None = None) -> Passage:
        if not 0 <= row < len(self):
            raise IndexError(f"passage row {row} out of range (0..{len(self) - 1})")
        return self._passage(row, int(self._offsets[row]), int(self._offsets[row + 1]), score)

    def _passage(self, row: int, start: int, end: int, score: float | None) -> Passage:
        fields = self._cache.get(row)
        if fields is None:
            fields = self._decode(row, self._data[start:end])
            if self._cache_size > 0:
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()  # bounded; hot passages come back at once
                self._cache[row] = fields
        return Passage(fields[0], fields[1], fields[2], score)

    def _decode(self, row: int, raw: bytes) -> tuple[str, str, str]:
        """(id, title, text) of one stored line (json's C decoder: a hand-rolled slicer of
        PassageWriter's lines measured slower)."""
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            raise InputError(
                "corrupt passage row (offsets do not match the file)",
                path=str(self.path),
                line=row + 1,
            ) from None
        p = Passage.from_contents(obj["id"], obj["contents"])
        return p.id, p.title, p.text

    def get_many(self, rows: Iterable[int], scores: Iterable[float] | None = None) -> list[Passage]:
        """Passages for `rows` (a FAISS/bm25s id row), with `scores` if given. Offsets are
        gathered in one numpy call; decoded passages are cached (bounded), so a popular
        passage is parsed once."""
        rows_l = rows.tolist() if hasattr(rows, "tolist") else list(rows)
        n = len(self)
        if rows_l and (min(rows_l) < 0 or max(rows_l) >= n):
            bad = next(r for r in rows_l if not 0 <= r < n)
            raise IndexError(f"passage row {bad} out of range (0..{n - 1})")
        idx = np.asarray(rows_l, dtype=np.int64)
        starts = self._offsets[idx].tolist()
        ends = self._offsets[idx + 1].tolist()
        if scores is None:
            score_l: list[float | None] = [None] * len(rows_l)
        else:
            score_l = [float(x) for x in (scores.tolist() if hasattr(scores, "tolist") else scores)]
            if len(score_l) != len(rows_l):
                raise ValueError("rows and scores differ in length")
        return [
            self._passage(r, a, b, sc)
            for r, a, b, sc in zip(rows_l, starts, ends, score_l, strict=True)
        ]

    def __iter__(self) -> Iterator[Passage]:
        for row in range(len(self)):
            yield self.get(row)

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()
        self._fh.close()


def _scan_offsets(path: Path) -> np.ndarray:
    offsets = [0]
    with open(path, "rb") as fh:
        for line in fh:
            offsets.append(offsets[-1] + len(line))
    return np.asarray(offsets, dtype=np.int64)
