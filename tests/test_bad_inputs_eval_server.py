"""Bad-input matrix for `eval run`, `eval report`, `eval download` and the retrieval server
(`serve` and its HTTP API): every CLI case exits with code 2 and ONE `error:` line naming the
file (line, field) or option, no traceback, and an earlier run's results are still there, byte
for byte. HTTP cases answer a 4xx with a short message that never echoes the input back.

The data half of the matrix (index, mask, generate, export, run, train) is `test_bad_inputs.py`.
Read-only and full-disk outputs use small tmpfs mounts where this machine allows mounting.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Tmpfs

from masksearch.cli import run

DATA = Path(__file__).parent / "data"
EVAL = DATA / "eval"
TINY = DATA / "tiny_corpus.jsonl"
HOTPOT = EVAL / "hotpot_dev_distractor.json"
BAMBOO = EVAL / "bamboogle.csv"
MUSIQUE = EVAL / "musique_ans_v1.0_dev.jsonl"
REPLY = "<think>read</think>\n<answer>Dijon</answer>"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A BM25 index of the tiny corpus, a scripted model, and one finished eval run."""
    base = tmp_path_factory.mktemp("evalbad")
    assert run(["index", "--corpus", str(TINY), "--out", str(base / "index"), "--quiet"]) == 0
    (base / "model.json").write_text(json.dumps({"cycle": True, "routes": {}, "default": [REPLY]}))
    code = run([*eval_args(base, base / "ev"), "-d", f"bamboogle={BAMBOO}"])
    assert code == 0 and (base / "ev" / "results.jsonl").exists()
    return base


def eval_args(shared: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "run",
        "-m",
        "rag-pe",
        "--model",
        f"fake:{shared / 'model.json'}",
        "--retriever",
        f"bm25:{shared / 'index'}",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


@dataclass
class Env:
    tmp: Path
    shared: Path
    fs: Tmpfs

    def out(self) -> Path:
        """A copy of the finished run (whose files must survive every failed command)."""
        dst = self.tmp / "ev"
        if not dst.exists():
            shutil.copytree(self.shared / "ev", dst)
        return dst

    def ev(self, *datasets: str, extra: tuple[str, ...] = (), out: Path | None = None) -> list[str]:
        args = eval_args(self.shared, out or self.out(), *extra)
        for d in datasets:
            args += ["-d", d]
        return args

    def file(self, name: str, data: bytes | str) -> Path:
        p = self.tmp / name
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    def not_dir(self) -> Path:
        return self.file("plainfile", "x")

    @property
    def mounts(self) -> list[Path]:
        return self.fs.mounts

    def tmpfs(self, opts: str) -> Path:
        return self.fs.mount(opts)

    def full(self) -> Path:
        """A 64 KiB file system holding a finished run, then filled up."""
        d = self.tmpfs("size=64k")
        for f in ("results.jsonl", "run.json"):
            shutil.copy(self.shared / "ev" / f, d / f)
        Tmpfs.fill(d)
        return d


@pytest.fixture
def env(tmp_path, shared, tmpfs):
    return Env(tmp_path, shared, tmpfs)


def hotpot_rows(**over) -> list[dict]:
    rows = json.loads(HOTPOT.read_text())
    rows[1].update(over)
    return rows


def hp(e: Env, **over) -> str:
    """`hotpotqa=PATH` of the HotpotQA fixture with row [1] changed."""
    return f"hotpotqa={e.file('h.json', json.dumps(hotpot_rows(**over)))}"


LATIN1 = "Question,Answer\nCafé?,René\n".encode("latin-1")


def gz_truncated(e: Env) -> Path:
    blob = gzip.compress(MUSIQUE.read_bytes() * 20)
    return e.file("m.jsonl.gz", blob[: len(blob) // 2])


B = f"bamboogle={BAMBOO}"
# each case: (id, build(env) -> (argv, [fragments the error line must hold]))
CASES = [
    # ---- eval run: dataset files
    (
        "run-missing-file",
        lambda e: (e.ev(f"hotpotqa={e.tmp}/nope.json"), ["nope.json", "not found"]),
    ),
    ("run-empty-file", lambda e: (e.ev(f"hotpotqa={e.file('h.json', '')}"), ["h.json", "empty"])),
    (
        "run-empty-list",
        lambda e: (e.ev(f"hotpotqa={e.file('h.json', '[]')}"), ["h.json", "no questions"]),
    ),
    (
        "run-garbage-json",
        lambda e: (e.ev(f"hotpotqa={e.file('h.json', '[{oops')}"), ["h.json:1", "invalid JSON"]),
    ),
    (
        "run-truncated-json",
        lambda e: (
            e.ev(f"hotpotqa={e.file('h.json', HOTPOT.read_text()[:300])}"),
            ["h.json", "invalid JSON"],
        ),
    ),
    ("run-truncated-gz", lambda e: (e.ev(f"musique={gz_truncated(e)}"), ["m.jsonl.gz"])),
    (
        "run-binary-file",
        lambda e: (
            e.ev(f"hotpotqa={e.file('x.json', b'PK' + bytes(range(256)))}"),
            ["x.json", "binary file"],
        ),
    ),
    (
        "run-latin1-csv",
        lambda e: (
            e.ev(f"bamboogle={e.file('b.csv', LATIN1)}"),
            ["b.csv", "not UTF-8"],
        ),
    ),
    ("run-directory-as-file", lambda e: (e.ev(f"hotpotqa={e.tmp}"), [str(e.tmp), "directory"])),
    (
        "run-json-object",
        lambda e: (e.ev(f"hotpotqa={e.file('h.json', '{}')}"), ["h.json", "JSON list"]),
    ),
    (
        "run-wrong-format",
        lambda e: (
            e.ev(f"bamboogle={HOTPOT}"),
            ["hotpot_dev_distractor.json", "looks like HotpotQA"],
        ),
    ),
    (
        "run-wrong-format-2wiki",
        lambda e: (e.ev(f"hotpotqa={EVAL}/2wiki/dev.json"), ["dev.json", "looks like 2Wiki"]),
    ),
    (
        "run-missing-answer",
        lambda e: (
            e.ev(
                f"hotpotqa={e.file('h.json', json.dumps([{k: v for k, v in r.items() if k != 'answer'} for r in hotpot_rows()]))}"
            ),
            ["h.json", "[0].answer"],
        ),
    ),
    (
        "run-answer-not-string",
        lambda e: (
            e.ev(hp(e, answer={"x": 1})),
            ["h.json", "[1].answer", "string"],
        ),
    ),
    (
        "run-lone-surrogate",
        lambda e: (
            e.ev(hp(e, question="bad \ud800 text")),
            ["h.json", "[1].question", "surrogate"],
        ),
    ),
    (
        "run-nul-in-id",
        lambda e: (
            e.ev(hp(e, _id="a\u0000b")),
            ["h.json", "[1]._id", "U+0000"],
        ),
    ),
    (
        "run-rtl-override-in-id",
        lambda e: (
            e.ev(hp(e, _id="a\u202eb")),
            ["[1]._id", "U+202E"],
        ),
    ),
    (
        "run-huge-question",
        lambda e: (
            e.ev(hp(e, question="w " * 200_000)),
            ["[1].question", "too long"],
        ),
    ),
    (
        "run-duplicate-ids",
        lambda e: (
            e.ev(hp(e, _id="5a8b57f25542995d1e6f1371")),
            ["h.json", "duplicate question id"],
        ),
    ),
    (
        "run-jsonl-bad-line",
        lambda e: (
            e.ev(
                f"musique={e.file('m.jsonl', MUSIQUE.read_text().splitlines()[0] + chr(10) + '{oops' + chr(10))}"
            ),
            ["m.jsonl:2", "invalid JSON"],
        ),
    ),
    (
        "run-csv-no-header",
        lambda e: (
            e.ev(f"bamboogle={e.file('b.csv', 'a,b' + chr(10) + '1,2' + chr(10))}"),
            ["b.csv", "no header row"],
        ),
    ),
    ("run-unknown-name", lambda e: (e.ev(f"nq={HOTPOT}"), ["unknown dataset 'nq'"])),
    ("run-spec-without-path", lambda e: (e.ev("hotpotqa"), ["--dataset", "NAME=PATH"])),
    ("run-duplicate-dataset", lambda e: (e.ev(B, B), ["--dataset", "once"])),
    ("run-split-not-freshqa", lambda e: (e.ev(f"hotpotqa:test={HOTPOT}"), ["SPLIT", "freshqa"])),
    # ---- eval run: options
    ("run-no-dataset", lambda e: (e.ev(), ["--dataset"])),
    ("run-limit-zero", lambda e: (e.ev(B, extra=("--limit", "0")), ["--limit", "at least 1"])),
    ("run-limit-negative", lambda e: (e.ev(B, extra=("--limit", "-1")), ["--limit", "at least 1"])),
    ("run-unknown-method", lambda e: (e.ev(B, extra=("-m", "bogus")), ["bogus"])),
    (
        "run-bad-method-model",
        lambda e: (
            e.ev(B, extra=("--method-model", "nope=x:y")),
            ["--method-model", "METHOD=SPEC"],
        ),
    ),
    ("run-bad-model-spec", lambda e: (e.ev(B, extra=("--model", "nocolon")), ["provider:model"])),
    (
        "run-dataset-is-its-results-file",
        lambda e: (
            e.ev(f"bamboogle={e.out() / 'results.jsonl'}"),
            ["results.jsonl", "--dataset", "writes"],
        ),
    ),
    (
        "run-dataset-dev-zero",
        lambda e: (e.ev("bamboogle=/dev/zero", out=e.tmp / "fresh"), ["/dev/zero", "regular"]),
    ),
    (
        "run-bad-model-spec-with-password",
        lambda e: (
            e.ev(B, extra=("--model", "openai-compatible:m@http://u:PASSWORD9@h/v1")),
            ["bad model spec", "[REDACTED]"],
        ),
    ),
    (
        "run-unknown-retriever",
        lambda e: (
            e.ev(B, extra=("--retriever", "nope:x"), out=e.tmp / "fresh"),
            ["unknown retriever spec"],
        ),
    ),
    (
        "run-temperature-out-of-range",
        lambda e: (e.ev(B, extra=("--temperature", "5")), ["temperature", "[0.0, 2.0]"]),
    ),
    ("run-top-k-zero", lambda e: (e.ev(B, extra=("--top-k", "0")), ["top_k", "got 0"])),
    ("run-stage-without-base", lambda e: (e.ev(B, extra=("--post-train", "RL")), ["--base-model"])),
    (
        "run-aliases-not-2wiki",
        lambda e: (
            e.ev(B, extra=("--aliases", f"bamboogle={BAMBOO}")),
            ["--aliases", "only applies to 2Wiki"],
        ),
    ),
    (
        "run-aliases-missing",
        lambda e: (
            e.ev(f"2wiki={EVAL}/2wiki/dev.json", extra=("--aliases", f"{e.tmp}/none.json")),
            ["none.json", "not found"],
        ),
    ),
    (
        "run-aliases-garbage",
        lambda e: (
            e.ev(
                f"2wiki={EVAL}/2wiki/dev.json", extra=("--aliases", str(e.file("al.json", "{nope")))
            ),
            ["al.json:1", "invalid JSON"],
        ),
    ),
    (
        "run-aliases-unknown-dataset",
        lambda e: (
            e.ev(B, extra=("--aliases", f"2wiki={EVAL}/2wiki/id_aliases.json")),
            ["--aliases", "2wikimultihopqa"],
        ),
    ),
    # ---- eval run: the results directory
    (
        "run-changed-config",
        lambda e: (
            e.ev(B, extra=("--top-k", "2")),
            ["already has results", "top_k 5 → 2", "--label"],
        ),
    ),
    (
        "run-changed-seed",
        lambda e: (e.ev(B, extra=("--seed", "3")), ["already has results", "seed 0 → 3"]),
    ),
    (
        "run-dataset-file-changed",
        lambda e: (
            e.ev(f"bamboogle={e.file('b.csv', 'Question,Answer' + chr(10) + 'q?,a' + chr(10))}"),
            ["dataset bamboogle was run from another file"],
        ),
    ),
    (
        "run-corrupt-results",
        lambda e: (e.ev(B, out=_corrupt_results(e)), ["results.jsonl:1", "invalid JSON"]),
    ),
    (
        "run-corrupt-manifest",
        lambda e: (e.ev(B, out=_corrupt_manifest(e)), ["run.json", "unreadable run manifest"]),
    ),
    (
        "run-out-is-file",
        lambda e: (e.ev(B, out=e.not_dir()), ["plainfile", "--out", "is not a directory"]),
    ),
    (
        "run-out-under-file",
        lambda e: (e.ev(B, out=e.not_dir() / "ev"), ["plainfile", "not a directory"]),
    ),
    (
        "run-out-dev-full",
        lambda e: (e.ev(B, out=Path("/dev/full")), ["/dev/full", "is not a directory"]),
    ),
    ("run-out-readonly", lambda e: (e.ev(B, out=e.tmpfs("ro,size=1m") / "ev"), ["read-only"])),
    ("run-disk-full", lambda e: (e.ev(f"hotpotqa={HOTPOT}", B, out=e.full()), ["no space left"])),
    # ---- eval report
    (
        "report-missing-dir",
        lambda e: (["eval", "report", str(e.tmp / "none")], ["results.jsonl", "no results"]),
    ),
    ("report-empty-dir", lambda e: (["eval", "report", str(e.tmp)], ["no results"])),
    (
        "report-bogus-metric",
        lambda e: (
            ["eval", "report", str(e.out()), "--chart-metric", "bogus"],
            ["--chart-metric", "bogus", "recall"],
        ),
    ),
    (
        "report-corrupt-results",
        lambda e: (
            ["eval", "report", str(_corrupt_results(e))],
            ["results.jsonl:1", "invalid JSON"],
        ),
    ),
    (
        "report-row-missing-field",
        lambda e: (
            ["eval", "report", str(_results_rows(e, [{"method": "x", "id": "1"}]))],
            ["results.jsonl:1", "dataset"],
        ),
    ),
    ("report-disk-full", lambda e: (["eval", "report", str(e.full())], ["no space left"])),
    # ---- eval download (no network needed: refused before anything is fetched)
    (
        "download-unknown-name",
        lambda e: (
            ["eval", "download", "nq", "--out", str(e.tmp)],
            ["no official download for 'nq'"],
        ),
    ),
    (
        "download-unknown-source",
        lambda e: (
            ["eval", "download", "hotpotqa", "--out", str(e.tmp), "--source", "ftp"],
            ["unknown source 'ftp'"],
        ),
    ),
    (
        "download-test-split",
        lambda e: (
            ["eval", "download", "fanoutqa", "--out", str(e.tmp), "--split", "test"],
            ["dev only"],
        ),
    ),
    (
        "download-not-in-flashrag",
        lambda e: (
            ["eval", "download", "fanoutqa", "--out", str(e.tmp), "--source", "flashrag"],
            ["not in FlashRAG"],
        ),
    ),
    (
        "download-out-is-file",
        lambda e: (
            ["eval", "download", "hotpotqa", "--out", str(e.not_dir())],
            ["plainfile", "not a directory"],
        ),
    ),
    # ---- serve (refused before the index is loaded or a port is bound)
    (
        "serve-port-too-big",
        lambda e: (
            ["serve", "--index", str(e.shared / "index"), "--port", "70000"],
            ["--port", "1..65535", "70000"],
        ),
    ),
    (
        "serve-port-zero",
        lambda e: (
            ["serve", "--index", str(e.shared / "index"), "--port", "0"],
            ["--port", "1..65535"],
        ),
    ),
    (
        "serve-open-bind",
        lambda e: (
            ["serve", "--index", str(e.shared / "index"), "--host", "0.0.0.0"],
            ["refusing to listen on 0.0.0.0", "--token-env"],
        ),
    ),
    (
        "serve-token-env-unset",
        lambda e: (
            ["serve", "--index", str(e.shared / "index"), "--token-env", "MASKSEARCH_NO_SUCH_VAR"],
            ["MASKSEARCH_NO_SUCH_VAR", "not set"],
        ),
    ),
    ("serve-missing-index", lambda e: (["serve", "--index", str(e.tmp / "none")], ["none"])),
    ("serve-unknown-spec", lambda e: (["serve", "--index", "nope:x"], ["unknown retriever spec"])),
]


def _corrupt_results(e: Env) -> Path:
    out = e.tmp / "corrupt"
    out.mkdir()
    (out / "results.jsonl").write_text('{"label": "x", "method": "rag-pe", oops\n{"a": 1}\n')
    return out


def _corrupt_manifest(e: Env) -> Path:
    out = e.tmp / "corrupt_manifest"
    shutil.copytree(e.shared / "ev", out)
    (out / "run.json").write_text("{not json")
    return out


def _results_rows(e: Env, rows: list[dict]) -> Path:
    out = e.tmp / "rows"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _snapshot(env: Env) -> dict[Path, bytes]:
    paths = [p for d in [env.tmp / "ev", *env.mounts] if d.is_dir() for p in d.iterdir()]
    paths += [env.tmp / "corrupt" / "results.jsonl", env.tmp / "corrupt_manifest" / "run.json"]
    return {p: p.read_bytes() for p in paths if p.is_file() and p.name != "filler"}


@pytest.mark.parametrize("name,build", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_located_line(env, capsys, name, build):
    argv, fragments = build(env)
    before = _snapshot(env)
    code = run([str(a) for a in argv])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2, text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    if errors:
        assert len(errors) == 1, text
        line = errors[0]
    else:  # click's own validation (a typer `min=`): its usage error names the option
        assert "Invalid value" in text or "Missing option" in text, text
        line = " ".join(text.split())
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    for path, data in before.items():  # nothing already written is lost or changed
        assert path.read_bytes() == data, path


def test_bom_csv_and_json_are_accepted(env, capsys):
    csv_bom = env.file("bamboogle.csv", b"\xef\xbb\xbf" + BAMBOO.read_bytes())
    json_bom = env.file("hotpot.json", b"\xef\xbb\xbf" + HOTPOT.read_bytes())
    out = env.tmp / "bom"
    assert run(env.ev(f"bamboogle={csv_bom}", f"hotpotqa={json_bom}", out=out)) == 0, (
        capsys.readouterr()
    )
    assert len((out / "results.jsonl").read_text().splitlines()) == 5


# ---- the HTTP API: 4xx with a short message, never the input echoed back
HTTP_CASES = [
    (
        "garbage-json",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        422,
    ),
    ("no-body", {}, 422),
    ("queries-not-list", {"json": {"queries": "river"}}, 422),
    ("queries-of-objects", {"json": {"queries": [{"q": "ECHO-ME"}] * 2000}}, 422),
    ("topk-string", {"json": {"queries": ["x"], "topk": "ECHO-ME"}}, 422),
    ("topk-huge", {"json": {"queries": ["x"], "topk": 10**9}}, 422),
    ("too-many-queries", {"json": {"queries": ["ECHO-ME"] * 5000}}, 422),
    ("query-too-long", {"json": {"queries": ["ECHO-ME " * 1000]}}, 422),
    ("body-too-big", {"json": {"queries": ["ECHO-ME " * 700_000]}}, 413),
    ("content-length-lies", {"content": b"{}", "headers": {"content-length": "999999999"}}, 413),
    ("wrong-method", {"method": "GET"}, 405),
]


@pytest.fixture(scope="module")
def client(shared):
    from fastapi.testclient import TestClient

    from masksearch.retrievers import load_retriever
    from masksearch.retrievers.server import create_app

    return TestClient(create_app(load_retriever(f"bm25:{shared / 'index'}")))


@pytest.mark.parametrize("name,kw,status", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_http_bad_input_is_a_short_4xx(client, name, kw, status):
    kw = dict(kw)
    method = kw.pop("method", "POST")
    resp = client.request(method, "/retrieve", **kw)
    assert resp.status_code == status, resp.text[:500]
    assert "ECHO-ME" not in resp.text and len(resp.text) < 1000
    assert "Traceback" not in resp.text


def test_http_unicode_queries_are_answered(client):
    for q in ["Eiffel \u202e tower", "\u0000", "é" * 4000, "\U0001f600 river", "\ud800 lone"]:
        resp = client.post(
            "/retrieve",
            content=json.dumps({"queries": [q], "topk": 2}).encode(),
            headers={"content-type": "application/json"},
        )
        assert resp.status_code in (200, 422), (q, resp.text[:300])


def test_console_script_prints_one_line(env):
    """The real entry point (not in-process): one `error:` line, exit 2."""
    done = subprocess.run(
        [sys.executable, "-m", "masksearch.cli", *env.ev(f"bamboogle={HOTPOT}")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "looks like HotpotQA" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
