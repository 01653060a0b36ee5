"""BM25 retrieval with `bm25s`; one `Analyzer` tokenises both the corpus and the queries.

FlashRAG stems its bm25s index but not its queries; here the analyzer settings are saved in the
manifest and the very same analyzer is rebuilt at load time, so "designed" matches "designs".
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from masksearch.retrievers.manifest import loading_index, read_manifest, write_manifest
from masksearch.retrievers.store import PASSAGES, PassageStore
from masksearch.types import Passage

BM25_SUBDIR = "bm25s"


def _bm25s() -> Any:
    """`bm25s`, imported with JAX kept off the accelerator.

    Where JAX is installed, importing bm25s runs a JAX top-k (`bm25s.selection`), which starts
    JAX's default backend. On a CUDA machine that is the GPU, where JAX by default preallocates
    75 % of the memory, inside our process (JAX was seen starting in RL runs on an H100; the
    memory it took was not measured). BM25 needs no accelerator: unless `JAX_PLATFORMS` is set
    already, JAX gets the CPU only (the variable counts only before JAX first starts)."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import bm25s

    return bm25s


@dataclass(frozen=True)
class AnalyzerConfig:
    lower: bool = True
    pattern: str = r"(?u)\b\w\w+\b"
    stopwords: str = "en"  # "en" or "none"
    stemmer: str = "english"  # a PyStemmer language, or "none"


# The per-word stem cache keeps at most this many words (the first seen, which include the
# frequent ones), so a server answering many distinct queries keeps a bounded memory.
STEM_CACHE_WORDS = 500_000


class Analyzer:
    """Lowercase, regex-split, drop stopwords, stem (PyStemmer) with a per-word cache."""

    def __init__(self, config: AnalyzerConfig | None = None) -> None:
        self.config = config or AnalyzerConfig()
        self._split = re.compile(self.config.pattern).findall
        if self.config.stopwords == "en":
            self._stop = frozenset(_bm25s().stopwords.STOPWORDS_EN)
        else:
            self._stop = frozenset()
        self._stem = None
        if self.config.stemmer != "none":
            import Stemmer

            self._stem = Stemmer.Stemmer(self.config.stemmer).stemWord
        self._cache: dict[str, str] = {}

    def __call__(self, text: str) -> list[str]:
        if self.config.lower:
            text = text.lower()
        words = [w for w in self._split(text) if w not in self._stop]
        if self._stem is None:
            return words
        cache = self._cache
        out = []
        for w in words:
            s = cache.get(w)
            if s is None:
                s = self._stem(w)
                if len(cache) < STEM_CACHE_WORDS and len(w) <= 32:
                    cache[w] = s
            out.append(s)
        return out


def build_bm25(
    passages: Iterable[Passage],
    out_dir: str | Path,
    *,
    corpus: str = "",
    passages_file: str = PASSAGES,
    analyzer: AnalyzerConfig | None = None,
    k1: float = 1.5,
    b: float = 0.75,
    method: str = "lucene",
    show_progress: bool = True,
) -> int:
    """Index `passages` (streamed once, in passage-store row order) into `out_dir`.

    The passages themselves must already be in `passages_file` (relative to `out_dir`), written
    by `masksearch.retrievers.build.build_index` or a `PassageWriter`. Returns the count.
    """
    bm25s = _bm25s()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ana = Analyzer(analyzer)
    vocab: dict[str, int] = {}
    token_ids: list[array] = []
    for passage in passages:
        token_ids.append(
            array("i", [vocab.setdefault(t, len(vocab)) for t in ana(passage.contents)])
        )
    if not token_ids:
        raise ValueError("no passages to index")
    model = bm25s.BM25(k1=k1, b=b, method=method)
    model.index((token_ids, vocab), create_empty_token=False, show_progress=show_progress)
    model.save(str(out / BM25_SUBDIR), show_progress=False)
    write_manifest(
        out,
        kind="bm25",
        corpus=corpus,
        count=len(token_ids),
        passages=passages_file,
        tokenizer=asdict(ana.config),
        bm25={"k1": k1, "b": b, "method": method},
    )
    return len(token_ids)


class BM25Retriever:
    """Load a bm25s index built by `build_bm25` (optionally memory-mapped) and search it."""

    name = "bm25"

    def __init__(self, index_dir: str | Path, *, mmap: bool = False, n_threads: int = 0) -> None:
        bm25s = _bm25s()
        self.dir = Path(index_dir)
        self.manifest: dict[str, Any] = read_manifest(self.dir, kind="bm25")
        with loading_index(self.dir):  # a damaged file: one line naming it
            self.analyzer = Analyzer(AnalyzerConfig(**self.manifest["tokenizer"]))
            self.model = bm25s.BM25.load(str(self.dir / BM25_SUBDIR), mmap=mmap, load_corpus=False)
            self.store = PassageStore(self.dir / self.manifest.get("passages", PASSAGES))
            self._n = int(self.model.scores["num_docs"])
        self.n_threads = n_threads

    def __len__(self) -> int:
        return self._n

    def tokenize(self, queries: Sequence[str]) -> list[list[str]]:
        """Analyzed query tokens with terms unknown to the index dropped."""
        vocab = self.model.vocab_dict
        return [[t for t in self.analyzer(q) if t in vocab] for q in queries]

    def search_ids(self, queries: Sequence[str], k: int) -> tuple[Any, Any]:
        """Raw (row ids, scores) arrays of shape (len(queries), min(k, N)); queries must match
        at least one indexed term (see `tokenize`)."""
        k = min(k, self._n)
        return self.model.retrieve(
            self.tokenize(queries),
            k=k,
            show_progress=False,
            return_as="tuple",
            n_threads=self.n_threads,
        )

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        results: list[list[Passage]] = [[] for _ in queries]
        tokens = self.tokenize(queries)
        live = [i for i, t in enumerate(tokens) if t]  # no known term → no BM25 match
        if not live or k <= 0:
            return results
        ids, scores = self.model.retrieve(
            [tokens[i] for i in live],
            k=min(k, self._n),
            show_progress=False,
            return_as="tuple",
            n_threads=self.n_threads,
        )
        for qi, row_ids, row_scores in zip(live, ids, scores, strict=True):
            keep = row_scores > 0
            results[qi] = self.store.get_many(row_ids[keep], row_scores[keep])
        return results
