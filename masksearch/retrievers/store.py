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
    """Random access to passages by row id; thread-safe, offsets memory-mapped."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("passages file not found (rebuild the index)", path=str(self.path))
        offsets_path = self.path.with_name(OFFSETS)
        if not offsets_path.is_file():
            self._offsets = _scan_offsets(self.path)
        else:
            self._offsets = np.load(offsets_path, mmap_mode="r")
        self._fh = open(self.path, "rb")
        # The text is memory-mapped: lookups are slices served from the page cache (no RAM copy,
        # no seek/read syscalls, safe to share between threads).
        self._data = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if len(self) else b""

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def get(self, row: int, score: float | None = None) -> Passage:
        if not 0 <= row < len(self):
            raise IndexError(f"passage row {row} out of range (0..{len(self) - 1})")
        raw = self._data[int(self._offsets[row]) : int(self._offsets[row + 1])]
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            raise InputError(
                "corrupt passage row (offsets do not match the file)",
                path=str(self.path),
                line=row + 1,
            ) from None
        return Passage.from_contents(obj["id"], obj["contents"], score)

    def get_many(self, rows: Iterable[int], scores: Iterable[float] | None = None) -> list[Passage]:
        rows = rows.tolist() if hasattr(rows, "tolist") else rows
        if scores is None:
            return [self.get(r) for r in rows]
        scores = scores.tolist() if hasattr(scores, "tolist") else scores
        return [self.get(r, s) for r, s in zip(rows, scores, strict=True)]

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
