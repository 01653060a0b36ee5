"""Retrievers behind one batch-first interface (`Retriever.search(queries, k)`).

`load_retriever(spec)` builds BM25 (bm25s), dense (FAISS), hybrid (RRF), web (ddgs) or remote
(Search-R1 HTTP API) retrievers; heavy libraries are imported only when a retriever is built.
"""

from masksearch.retrievers.base import Retriever, asearch
from masksearch.retrievers.factory import load_retriever

__all__ = ["Retriever", "asearch", "load_retriever"]
