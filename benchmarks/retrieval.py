"""Wrapper overhead benchmark: our BM25/FAISS retrievers vs raw bm25s/FAISS on the same data.

    python benchmarks/retrieval.py [--corpus PATH] [--passages 10000] [--dense-passages 3000]
                                   [--queries 500] [--k 10] [--out DIR]

Corpus: the embedded default corpus (Wikipedia vital-article summaries) unless --corpus is given.
Queries: the first 8 words of randomly chosen passages (fixed seed), so each has a known source.
Prints QPS for raw library calls and for our wrappers, their ratio, and top-1 agreement.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np


def _timed(fn, repeat: int = 3):
    """Best of `repeat` wall-clock runs; returns (seconds, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def _row(name: str, n: int, raw_s: float, ours_s: float) -> dict:
    return {
        "name": name,
        "queries": n,
        "raw_qps": n / raw_s,
        "ours_qps": n / ours_s,
        "ratio": raw_s / ours_s,
    }


def bench_bm25(corpus: Path, out: Path, n_passages: int, queries: list[str], k: int) -> list[dict]:
    import bm25s
    import Stemmer

    from masksearch.corpus import iter_passages
    from masksearch.retrievers.bm25 import BM25Retriever, build_bm25
    from masksearch.retrievers.store import PassageStore, PassageWriter

    with PassageWriter(out) as w:
        for p in islice(iter_passages(corpus), n_passages):
            w.add(p)
    store = PassageStore(out / "passages.jsonl")
    texts = [p.contents for p in store]
    t0 = time.perf_counter()
    build_bm25(iter(store), out, show_progress=False)
    ours_build = time.perf_counter() - t0

    stemmer = Stemmer.Stemmer("english")
    t0 = time.perf_counter()
    raw = bm25s.BM25()
    raw.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    raw_build = time.perf_counter() - t0
    print(
        f"bm25 build over {len(texts)} passages: raw bm25s {raw_build:.2f}s, ours {ours_build:.2f}s "
        "(ours also streams from the passage store)"
    )

    ours = BM25Retriever(out)

    def raw_search():
        toks = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
        docs, scores = raw.retrieve(toks, corpus=texts, k=k, show_progress=False)
        return docs

    raw_s, raw_docs = _timed(raw_search, 5)
    ours_s, ours_hits = _timed(lambda: ours.search(queries, k), 5)
    agree = np.mean(
        [bool(h) and h[0].contents == d[0] for h, d in zip(ours_hits, raw_docs, strict=True)]
    )
    rows = [_row("bm25 batch (tokenize+retrieve+text)", len(queries), raw_s, ours_s)]
    few = queries[:100]
    raw1, _ = _timed(
        lambda: [
            raw.retrieve(
                bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False),
                corpus=texts,
                k=k,
                show_progress=False,
            )
            for q in few
        ]
    )
    ours1, _ = _timed(lambda: [ours.search([q], k) for q in few])
    rows.append(_row("bm25 one query at a time", len(few), raw1, ours1))
    print(f"bm25 top-1 agreement with raw bm25s: {agree:.3f}")
    return rows


def bench_dense(corpus: Path, out: Path, n_passages: int, queries: list[str], k: int) -> list[dict]:
    import faiss

    from masksearch.corpus import iter_passages
    from masksearch.retrievers.dense import DenseRetriever, build_dense
    from masksearch.retrievers.embeddings import HFEncoder
    from masksearch.retrievers.store import PassageStore, PassageWriter

    encoder = HFEncoder("default", batch_size=64)
    if (out / "manifest.json").is_file():  # --workdir reuse: the encoding is the slow part
        store = PassageStore(out / "passages.jsonl")
        print(f"dense: reusing the index in {out} ({len(store)} passages)")
    else:
        with PassageWriter(out) as w:
            for p in islice(iter_passages(corpus), n_passages):
                w.add(p)
        store = PassageStore(out / "passages.jsonl")
        t0 = time.perf_counter()
        build_dense(iter(store), out, encoder, batch_size=64)
        build_s = time.perf_counter() - t0
        print(
            f"dense build over {len(store)} passages: {build_s:.1f}s "
            f"({len(store) / build_s:.1f} passages/s, all-MiniLM-L6-v2 on CPU)"
        )

    ours = DenseRetriever(out, encoder=encoder)
    raw = faiss.read_index(str(out / "index.faiss"))
    texts = [p.contents for p in store]
    qvecs = encoder.encode(queries, is_query=True)

    def raw_search_vectors():
        _, ids = raw.search(qvecs, k)
        return [[texts[i] for i in row] for row in ids]

    def ours_search_vectors():
        scores, ids = ours.search_vectors(qvecs, k)
        return [
            ours.store.get_many(row, s) for row, s in zip(ids, scores, strict=True)
        ]  # as search()

    from masksearch.types import Passage

    in_ram = list(store)  # the same passages as objects in RAM: what the store replaces

    def raw_search_passages():
        scores, ids = raw.search(qvecs, k)
        return [
            [
                Passage(in_ram[i].id, in_ram[i].title, in_ram[i].text, s)
                for i, s in zip(r, sr, strict=True)
            ]
            for r, sr in zip(ids.tolist(), scores.tolist(), strict=True)
        ]

    raw_s, raw_docs = _timed(raw_search_vectors, 15)
    ours_s, ours_hits = _timed(ours_search_vectors, 15)
    raw_p, _ = _timed(raw_search_passages, 15)
    agree = np.mean([h[0].contents == d[0] for h, d in zip(ours_hits, raw_docs, strict=True)])
    raw_v, _ = _timed(lambda: raw.search(qvecs, k), 25)
    ours_v, _ = _timed(lambda: ours.search_vectors(qvecs, k), 25)
    rows = [
        _row("faiss flat search, ids only", len(queries), raw_v, ours_v),
        _row(
            "faiss flat search + passages (raw: text list in RAM; ours: mmap store)",
            len(queries),
            raw_s,
            ours_s,
        ),
        _row(
            "faiss flat search + Passage objects (raw: Passage list in RAM; ours: mmap store)",
            len(queries),
            raw_p,
            ours_s,
        ),
    ]
    raw_e2e, _ = _timed(lambda: raw.search(encoder.encode(queries, is_query=True), k))
    ours_e2e, _ = _timed(lambda: ours.search(queries, k))
    rows.append(_row("dense end-to-end (encode+search)", len(queries), raw_e2e, ours_e2e))
    print(f"dense top-1 agreement with raw FAISS: {agree:.3f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--passages", type=int, default=10_000)
    ap.add_argument("--dense-passages", type=int, default=3_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--skip-dense", action="store_true")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="Keep the indexes here and reuse the dense one on reruns (default: a temp dir).",
    )
    ap.add_argument("--json", type=Path, default=None, help="Also write the rows as JSON here.")
    args = ap.parse_args()

    from masksearch.corpus import iter_passages
    from masksearch.corpus.default import default_corpus

    corpus = args.corpus or default_corpus()
    sample = list(
        islice(iter_passages(corpus), args.dense_passages if not args.skip_dense else args.passages)
    )
    rng = random.Random(0)
    queries = [
        " ".join(p.text.split()[:8]) for p in rng.sample(sample, min(args.queries, len(sample)))
    ]
    print(f"corpus: {corpus}; {len(queries)} queries, k={args.k}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        if (work / "bm25").exists():
            shutil.rmtree(work / "bm25")
        rows += bench_bm25(corpus, work / "bm25", args.passages, queries, args.k)
        if not args.skip_dense:
            rows += bench_dense(corpus, work / "dense", args.dense_passages, queries, args.k)
    print(
        "\n| benchmark | queries | raw QPS | ours QPS | ratio (ours/raw) |\n|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['name']} | {r['queries']} | {r['raw_qps']:.0f} | {r['ours_qps']:.0f} | {r['ratio']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
