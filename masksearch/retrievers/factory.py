"""`load_retriever(spec)`: build any retriever from a short string spec.

Specs: `bm25:<dir>`, `dense:<dir>`, `hybrid:<bm25_dir>,<dense_dir>` (or `hybrid:<dir>` built with
`--kind both`), `web`, `remote:<url>`. The directory `default` means the embedded default corpus,
indexed once into the user cache (`~/.cache/masksearch/index/`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from masksearch.errors import ConfigError
from masksearch.retrievers.base import Retriever

log = logging.getLogger(__name__)

SPEC_HELP = (
    "bm25:<index_dir> | dense:<index_dir> | hybrid:<bm25_dir>,<dense_dir> | "
    "hybrid:<both_dir> | web | remote:<url>  (index_dir 'default' = embedded corpus)"
)


def default_index_dir(kind: str, cache: str | Path | None = None) -> Path:
    """Index of the embedded default corpus (`kind` bm25 or both), built on first use."""
    from masksearch.corpus.default import cache_dir, default_corpus
    from masksearch.retrievers.build import IndexSettings, build_index
    from masksearch.retrievers.manifest import MANIFEST

    corpus = default_corpus(cache)
    out = cache_dir(cache) / "index" / f"{corpus.stem}-{kind}"
    if not (out / MANIFEST).is_file():
        log.info("building the default %s index of %s into %s (first use only)", kind, corpus, out)
        build_index(
            corpus, out, IndexSettings(kind=kind), show_progress=True
        )  # atomic: built aside, then moved
    return out


def _index_dir(arg: str, kind: str, cache: str | Path | None) -> Path:
    from masksearch.retrievers.manifest import resolve_index_dir

    if arg == "default":
        return resolve_index_dir(
            default_index_dir("bm25" if kind == "bm25" else "both", cache), kind
        )
    return resolve_index_dir(arg, kind)


def load_retriever(
    spec: str,
    *,
    cache_size: int = 4096,
    mmap: bool = False,
    rrf_k: int = 60,
    weights: Sequence[float] | None = None,
    timeout: float = 60.0,
    cache_dir: str | Path | None = None,
) -> Retriever:
    """Build the retriever named by `spec` (see module doc); results are LRU-cached
    in-process unless `cache_size=0`."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    retriever: Retriever
    if kind == "bm25" and arg:
        from masksearch.retrievers.bm25 import BM25Retriever

        retriever = BM25Retriever(_index_dir(arg, "bm25", cache_dir), mmap=mmap)
    elif kind == "dense" and arg:
        from masksearch.retrievers.dense import DenseRetriever

        retriever = DenseRetriever(_index_dir(arg, "dense", cache_dir), mmap=mmap)
    elif kind == "hybrid" and arg:
        from masksearch.retrievers.bm25 import BM25Retriever
        from masksearch.retrievers.dense import DenseRetriever
        from masksearch.retrievers.hybrid import HybridRetriever

        parts = [a.strip() for a in arg.split(",")]
        if len(parts) == 1:
            parts = [parts[0], parts[0]]
        if len(parts) != 2:
            raise ConfigError(f"hybrid spec takes one or two directories, got {spec!r}")
        retriever = HybridRetriever(
            [
                BM25Retriever(_index_dir(parts[0], "bm25", cache_dir), mmap=mmap),
                DenseRetriever(_index_dir(parts[1], "dense", cache_dir), mmap=mmap),
            ],
            rrf_k=rrf_k,
            weights=weights,
        )
    elif kind == "web" and not arg:
        from masksearch.retrievers.web import WebRetriever

        retriever = WebRetriever()
    elif kind == "remote" and arg:
        from masksearch.retrievers.remote import RemoteRetriever

        if not arg.startswith(("http://", "https://")):
            raise ConfigError(f"remote spec needs an http(s) URL, got {arg!r}")
        retriever = RemoteRetriever(arg, timeout=timeout)
    else:
        raise ConfigError(f"unknown retriever spec {spec!r}; expected {SPEC_HELP}")
    if cache_size > 0:
        from masksearch.retrievers.cache import CachedRetriever

        return CachedRetriever(retriever, maxsize=cache_size)
    return retriever
