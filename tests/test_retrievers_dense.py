"""Dense (FAISS + bundled all-MiniLM-L6-v2) and hybrid RRF retrieval on the tiny corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from masksearch.errors import ConfigError
from masksearch.retrievers import load_retriever
from masksearch.retrievers.build import IndexSettings, build_index
from masksearch.retrievers.dense import DenseRetriever
from masksearch.retrievers.embeddings import HFEncoder, default_model_path, load_encoder
from masksearch.retrievers.hybrid import HybridRetriever, rrf_fuse
from masksearch.types import Passage

TINY = Path(__file__).parent / "data" / "tiny_corpus.jsonl"
KNOWN = {
    "Who designed the Eiffel Tower": "Eiffel Tower",
    "Which city is the capital of Sudan?": "Khartoum",
    "the astronaut who first walked on the moon": "Neil Armstrong",
    "Dutch programmer known for creating Python": "Guido van Rossum",
    "longest river in Africa": "Nile",
}


@pytest.fixture(scope="module")
def encoder():
    return HFEncoder("default", batch_size=16)


@pytest.fixture(scope="module")
def both_dir(tmp_path_factory, encoder):
    out = tmp_path_factory.mktemp("both")
    summary = build_index(
        TINY, out, IndexSettings(kind="both", batch_size=16), encoder=encoder, show_progress=False
    )
    assert summary["passages"] == 24
    return out


def test_encoder_is_normalised_mean_pooling(encoder):
    vecs = encoder.encode(["Paris is in France.", "a", "Paris is in France."], is_query=True)
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vecs[0], vecs[2], atol=1e-5)  # padding in a batch does not leak
    single = encoder.encode(["Paris is in France."], is_query=True)[0]
    np.testing.assert_allclose(single, vecs[0], atol=1e-5)


@pytest.mark.parametrize("query,title", KNOWN.items())
def test_dense_known_answers(both_dir, encoder, query, title):
    r = DenseRetriever(both_dir / "dense", encoder=encoder)
    (hits,) = r.search([query], 3)
    assert hits[0].title == title
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_both_layout_shares_passages(both_dir):
    assert json.loads((both_dir / "manifest.json").read_text())["kind"] == "both"
    for sub in ("bm25", "dense"):
        m = json.loads((both_dir / sub / "manifest.json").read_text())
        assert m["passages"] == "../passages.jsonl" and m["count"] == 24
    dense = json.loads((both_dir / "dense" / "manifest.json").read_text())
    assert dense["embedding"]["model"] == "default" and dense["embedding"]["dim"] == 384
    assert dense["faiss"] == {"type": "flat", "metric": "inner_product"}
    assert not (both_dir / "bm25" / "passages.jsonl").exists()


def test_save_load_round_trip_mmap_and_encoder_from_manifest(both_dir, encoder):
    fresh = DenseRetriever(both_dir / "dense", mmap=True)  # rebuilds the encoder from the manifest
    assert fresh.search(list(KNOWN), 3) == DenseRetriever(
        both_dir / "dense", encoder=encoder
    ).search(list(KNOWN), 3)


@pytest.mark.parametrize("faiss_type", ["hnsw", "ivf"])
def test_ann_index_types(tmp_path, encoder, faiss_type):
    build_index(
        TINY,
        tmp_path,
        IndexSettings(kind="dense", faiss_type=faiss_type),
        encoder=encoder,
        show_progress=False,
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["faiss"]["type"] == faiss_type
    r = DenseRetriever(tmp_path, encoder=encoder)
    (hits,) = r.search(["Who designed the Eiffel Tower"], 2)
    assert hits[0].title == "Eiffel Tower"


def test_hybrid_rank_1_and_spec_forms(both_dir):
    one = load_retriever(f"hybrid:{both_dir}")
    two = load_retriever(f"hybrid:{both_dir / 'bm25'},{both_dir / 'dense'}")
    for query, title in KNOWN.items():
        (hits,) = one.search([query], 3)
        assert hits[0].title == title
    assert one.search(list(KNOWN), 3) == two.search(list(KNOWN), 3)


def test_rrf_fuse_scores_and_weights():
    a, b, c = (Passage(i, i, i) for i in "abc")
    fused = rrf_fuse([[a, b], [b, c]], k=3, rrf_k=60)
    assert [p.id for p in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    weighted = rrf_fuse([[a, b], [b, c]], k=2, rrf_k=1, weights=[3.0, 0.5])
    assert [p.id for p in weighted] == ["a", "b"]
    assert weighted[0].score == pytest.approx(3.0 / 2)


def test_hybrid_weights_must_match():
    with pytest.raises(ValueError, match="one weight per retriever"):
        HybridRetriever([object(), object()], weights=[1.0])


def test_e5_prefixes_detected_from_name(tmp_path):
    link = tmp_path / "my-e5-small"
    link.symlink_to(default_model_path(), target_is_directory=True)
    enc = HFEncoder(str(link))
    s = enc.settings()
    assert (s["query_prefix"], s["passage_prefix"]) == ("query: ", "passage: ")
    assert HFEncoder("default").settings()["query_prefix"] == ""
    q = enc.encode(["tower"], is_query=True)
    p = enc.encode(["tower"], is_query=False)
    assert not np.allclose(q, p)  # different prefixes → different vectors


def test_unreachable_models_fail_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="cannot load embedding model 'org/not-a-local-model'"):
        load_encoder("org/not-a-local-model")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        load_encoder("openai:text-embedding-3-small")
    with pytest.raises(ConfigError, match="unknown FAISS index type"):
        build_index(
            TINY,
            tmp_path / "idx",
            IndexSettings(kind="dense", faiss_type="lsh"),
            encoder=object(),
            show_progress=False,
        )
    assert not (tmp_path / "idx").exists()  # rejected before anything is written
