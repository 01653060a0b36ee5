"""Dense retrieval with FAISS (inner product over L2-normalised embeddings = cosine).

Index types: `flat` (exact, default), `hnsw` (graph ANN, no training) and `ivf` (inverted lists;
trained on the first vectors of the stream). Passages are encoded in batches while streaming.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from masksearch.errors import ConfigError, InputError
from masksearch.retrievers.embeddings import Encoder, encoder_from_settings
from masksearch.retrievers.manifest import (
    REBUILD,
    loading_index,
    read_manifest,
    write_manifest,
)
from masksearch.retrievers.store import PASSAGES, PassageStore
from masksearch.types import Passage

FAISS_FILE = "index.faiss"
FAISS_TYPES = ("flat", "hnsw", "ivf")


def _batched(items: Iterable[Passage], n: int) -> Iterator[list[Passage]]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def new_faiss_index(
    kind: str, dim: int, *, hnsw_m: int = 32, ef_construction: int = 200, nlist: int = 1024
) -> Any:
    """An empty inner-product FAISS index of the given kind (IVF still needs `train`)."""
    import faiss

    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        return index
    if kind == "ivf":
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    raise ConfigError(f"unknown FAISS index type {kind!r}; choose one of {', '.join(FAISS_TYPES)}")


def build_dense(
    passages: Iterable[Passage],
    out_dir: str | Path,
    encoder: Encoder,
    *,
    corpus: str = "",
    passages_file: str = PASSAGES,
    faiss_type: str = "flat",
    batch_size: int = 64,
    nlist: int = 1024,
    ivf_train_size: int = 65536,
    hnsw_m: int = 32,
    progress: Any = None,
) -> int:
    """Encode `passages` (store row order) in batches and write a FAISS index; returns count.

    For `ivf`, the first `ivf_train_size` vectors train the quantiser (nlist is reduced to at
    most 1/39 of those vectors, FAISS's minimum) before everything is added.
    """
    import faiss

    if faiss_type not in FAISS_TYPES:
        raise ConfigError(
            f"unknown FAISS index type {faiss_type!r}; choose one of {', '.join(FAISS_TYPES)}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = None if faiss_type == "ivf" else new_faiss_index(faiss_type, encoder.dim, hnsw_m=hnsw_m)
    pending: list[np.ndarray] = []  # IVF training buffer
    count = 0
    for batch in _batched(passages, batch_size):
        vecs = encoder.encode([p.contents for p in batch], is_query=False)
        count += len(batch)
        if progress is not None:
            progress.update(len(batch))
        if index is None:
            pending.append(vecs)
            if sum(len(v) for v in pending) >= ivf_train_size:
                index = _trained_ivf(np.concatenate(pending), encoder.dim, nlist)
                pending = []
            continue
        index.add(vecs)
    if count == 0:
        raise ValueError("no passages to index")
    if index is None:
        index = _trained_ivf(np.concatenate(pending), encoder.dim, nlist)
    faiss.write_index(index, str(out / FAISS_FILE))
    settings: dict[str, Any] = {"type": faiss_type, "metric": "inner_product"}
    if faiss_type == "ivf":
        settings.update(nlist=int(index.nlist), nprobe=min(16, int(index.nlist)))
    if faiss_type == "hnsw":
        settings.update(m=hnsw_m, ef_search=64)
    write_manifest(
        out,
        kind="dense",
        corpus=corpus,
        count=count,
        passages=passages_file,
        embedding=encoder.settings(),
        faiss=settings,
    )
    return count


def _trained_ivf(vecs: np.ndarray, dim: int, nlist: int) -> Any:
    nlist = max(1, min(nlist, len(vecs) // 39))
    index = new_faiss_index("ivf", dim, nlist=nlist)
    index.train(vecs)
    index.add(vecs)
    return index


class DenseRetriever:
    """Search a FAISS index built by `build_dense`, encoding queries with the same model."""

    name = "dense"

    def __init__(
        self,
        index_dir: str | Path,
        *,
        encoder: Encoder | None = None,
        mmap: bool = False,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> None:
        import faiss

        self.dir = Path(index_dir)
        self.manifest: dict[str, Any] = read_manifest(self.dir, kind="dense")
        self.encoder = encoder or encoder_from_settings(self.manifest["embedding"])
        if self.encoder.dim != self.manifest["embedding"]["dim"]:
            raise ConfigError(
                f"encoder dim {self.encoder.dim} != index dim {self.manifest['embedding']['dim']}"
            )
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            self.index = faiss.read_index(str(self.dir / FAISS_FILE), flags)
        except RuntimeError as e:  # faiss names no file: a truncated or foreign index file
            raise InputError(
                f"damaged index file ({str(e).strip().splitlines()[-1][:160]}); {REBUILD}",
                path=str(self.dir / FAISS_FILE),
            ) from None
        fs = self.manifest.get("faiss", {})
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = nprobe or fs.get("nprobe", 16)
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = ef_search or fs.get("ef_search", 64)
        with loading_index(self.dir):
            self.store = PassageStore(self.dir / self.manifest.get("passages", PASSAGES))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search_vectors(self, vecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS search: (scores, row ids)."""
        return self.index.search(np.ascontiguousarray(vecs, dtype=np.float32), k)

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        if not queries or k <= 0:
            return [[] for _ in queries]
        scores, ids = self.search_vectors(
            self.encoder.encode(list(queries), is_query=True), min(k, len(self))
        )
        return [
            self.store.get_many(row_i[row_i >= 0], row_s[row_i >= 0])
            for row_i, row_s in zip(ids, scores, strict=True)
        ]
