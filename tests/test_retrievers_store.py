"""The memory-mapped passage store returns exactly what was written, fast path or not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from masksearch.retrievers.store import PassageStore, PassageWriter
from masksearch.types import Passage

TRICKY = [
    Passage.from_contents("a", '"Title"\nplain text'),
    Passage.from_contents("b", "no title line"),
    Passage.from_contents('q"uote', 'T\nsays "hi" and \\n literally, a tab\there'),
    Passage.from_contents("c", "Ünïcödé 标题\n文本 with emoji 🙂 and \\\\ slashes"),
    Passage.from_contents("d", "Title\nends with a backslash \\"),
    Passage.from_contents("e", 'T\n", "contents": "fake separator'),
]


@pytest.mark.parametrize("cache_size", [0, 100])
def test_store_round_trips_every_passage(tmp_path, cache_size):
    with PassageWriter(tmp_path) as w:
        for p in TRICKY:
            w.add(p)
    store = PassageStore(tmp_path / "passages.jsonl", cache_size=cache_size)
    for row, p in enumerate(TRICKY):
        line = (tmp_path / "passages.jsonl").read_text(encoding="utf-8").splitlines()[row]
        want = Passage.from_contents(json.loads(line)["id"], json.loads(line)["contents"])
        assert store.get(row) == want == p
    rows = np.array([5, 0, 3, 3])
    got = store.get_many(rows, np.array([0.5, 0.25, 1.0, 2.0], dtype="float32"))
    assert [(g.id, g.text, g.score) for g in got] == [
        (TRICKY[5].id, TRICKY[5].text, 0.5),
        (TRICKY[0].id, TRICKY[0].text, 0.25),
        (TRICKY[3].id, TRICKY[3].text, 1.0),
        (TRICKY[3].id, TRICKY[3].text, 2.0),
    ]
    with pytest.raises(IndexError):
        store.get_many([0, -1])  # FAISS pads missing hits with -1
    with pytest.raises(IndexError):
        store.get(len(TRICKY))
