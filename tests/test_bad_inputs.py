"""Bad-input matrix for the data commands (index, mask, generate, export, run, train): every case
exits with code 2 and ONE `error:` line naming the file (and line/field where there is one), no
traceback, and whatever an earlier run already stored is still there, byte for byte.

Commands run in-process through `masksearch.cli.run` (the console script's own error handling);
a few run as real subprocesses at the end. Read-only and full-disk outputs use small tmpfs
mounts when this machine allows mounting (root in a container), else those cases are skipped
(`test_reliability.py` simulates ENOSPC/EROFS with a patched `os` call that always runs).
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
from masksearch.pipeline.testing import masked_row, team_script

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_corpus.jsonl"


# -- inputs -----------------------------------------------------------------------------------
def lines(path: Path, rows: list, *, bom: bool = False) -> Path:
    data = b"".join(
        (r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode())
        + b"\n"
        for r in rows
    )
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def truncated_gz(path: Path, src: Path) -> Path:
    blob = gzip.compress(src.read_bytes() * 3)
    path.write_bytes(blob[: len(blob) // 2])
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A built index and a store with records (made once; cases copy what they write over)."""
    base = tmp_path_factory.mktemp("shared")
    assert run(["index", "--corpus", str(TINY), "--out", str(base / "index"), "--quiet"]) == 0
    masked = lines(base / "masked.jsonl", [masked_row(i) for i in range(3)])
    script = team_script(base / "team.json", "3")
    code = run(
        [
            "generate",
            "--input",
            str(masked),
            "--store",
            str(base / "store.sqlite"),
            "--planner-model",
            f"fake:{script}",
            "--retriever",
            f"bm25:{base / 'index'}",
            "--max-turns",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    return base


@dataclass
class Env:
    tmp: Path
    shared: Path
    fs: Tmpfs

    def gen(self, input: Path, *extra: str, store: Path | None = None) -> list[str]:
        return [
            "generate",
            "--input",
            str(input),
            "--store",
            str(store or self.store()),
            "--planner-model",
            f"fake:{self.shared / 'team.json'}",
            "--retriever",
            f"bm25:{self.shared / 'index'}",
            "--max-turns",
            "1",
            "--no-progress",
            *extra,
        ]

    def store(self) -> Path:
        dst = self.tmp / "store.sqlite"
        if not dst.exists():
            shutil.copy(self.shared / "store.sqlite", dst)
        return dst

    def masked(self, rows: list | None = None, **kw) -> Path:
        return lines(self.tmp / "in.jsonl", rows or [masked_row(i) for i in range(3)], **kw)

    def index(self) -> Path:
        dst = self.tmp / "index"
        if not dst.exists():
            shutil.copytree(self.shared / "index", dst)
        return dst

    def mask_out(self) -> Path:
        out = self.tmp / "masked_out.jsonl"
        if not out.exists():
            lines(out, [masked_row(100, source_id="old")])
        return out

    def not_dir(self) -> Path:
        f = self.tmp / "plainfile"
        f.write_text("x")
        return f

    @property
    def mounts(self) -> list[Path]:
        return self.fs.mounts

    def tmpfs(self, opts: str) -> Path:
        return self.fs.mount(opts)

    def readonly(self) -> Path:
        return self.tmpfs("ro,size=1m")

    def full(self, size: str = "64k", copy: Path | None = None) -> Path:
        """A folder on a small file system with an old output (and `copy`) in it, filled up."""
        d = self.tmpfs(f"size={size}")
        (d / "out.jsonl").write_text('{"old": 1}\n')
        if copy is not None:
            shutil.copy(copy, d / copy.name)
        Tmpfs.fill(d)
        return d


@pytest.fixture
def env(tmp_path, shared, tmpfs):
    return Env(tmp_path, shared, tmpfs)


def mask(out: Path, corpus: Path = TINY, *extra: str) -> list[str]:
    return ["mask", "--corpus", str(corpus), "--out", str(out), "--no-progress", "--min-words", "5"]


def export(records: Path | str, out: Path, fmt: str = "trl", *extra: str) -> list[str]:
    return ["export", "--records", str(records), "--format", fmt, "--out", str(out), *extra]


def index(corpus: Path | str, out: Path, *extra: str) -> list[str]:
    return ["index", "--corpus", str(corpus), "--out", str(out), "--quiet", *extra]


# each case: (id, build(env) -> (argv, [fragments the error line must hold]))
GZ = "truncated or corrupt gzip"
CASES = [
    # ---- index
    (
        "index-missing",
        lambda e: (index(e.tmp / "nope.jsonl", e.tmp / "i"), ["nope.jsonl", "not found"]),
    ),
    ("index-empty", lambda e: (index(lines(e.tmp / "c.jsonl", []), e.tmp / "i"), ["c.jsonl"])),
    (
        "index-garbage",
        lambda e: (
            index(lines(e.tmp / "c.jsonl", [b"\x00\xff\xfe garbage"]), e.tmp / "i"),
            ["c.jsonl"],
        ),
    ),
    (
        "index-truncated-gz",
        lambda e: (
            index(truncated_gz(e.tmp / "c.jsonl.gz", TINY), e.tmp / "i"),
            ["c.jsonl.gz", GZ],
        ),
    ),
    (
        "index-bad-json-line",
        lambda e: (
            index(
                lines(e.tmp / "c.jsonl", [{"id": "1", "contents": "T\nx"}, "{oops"]), e.tmp / "i"
            ),
            ["c.jsonl:2", "invalid JSON"],
        ),
    ),
    (
        "index-lone-surrogate",
        lambda e: (
            index(
                lines(e.tmp / "c.jsonl", ['{"id": "1", "contents": "T\\nbad \\ud800 text"}']),
                e.tmp / "i",
            ),
            ["c.jsonl:1", "contents", "surrogate"],
        ),
    ),
    (
        "index-wrong-format",
        lambda e: (index(lines(e.tmp / "c.jsonl", [{"a": 1}]), e.tmp / "i"), ["c.jsonl"]),
    ),
    (
        "index-nul-in-id",
        lambda e: (
            index(
                lines(e.tmp / "c.jsonl", ['{"id": "a\\u0000b", "contents": "T\\nx"}']), e.tmp / "i"
            ),
            ["c.jsonl:1", "'id'", "U+0000"],
        ),
    ),
    ("index-out-is-file", lambda e: (index(TINY, e.not_dir()), ["plainfile", "not a directory"])),
    (
        "index-out-under-file",
        lambda e: (index(TINY, e.not_dir() / "i"), ["plainfile", "not a directory"]),
    ),
    ("index-out-readonly", lambda e: (index(TINY, e.readonly() / "i"), ["read-only"])),
    ("index-disk-full", lambda e: (index(TINY, e.full() / "i"), ["no space left"])),
    ("index-unknown-kind", lambda e: (index(TINY, e.tmp / "i", "--kind", "bogus"), ["bogus"])),
    ("index-unknown-format", lambda e: (index(TINY, e.tmp / "i", "--format", "bogus"), ["bogus"])),
    (
        "index-out-holds-other-files",
        lambda e: (
            ((e.tmp / "i").mkdir() or (e.tmp / "i" / "keep.txt").write_text("mine") and None)
            or (index(TINY, e.tmp / "i"), ["holds no index"])
        ),
    ),
    # ---- mask
    (
        "mask-missing-corpus",
        lambda e: (mask(e.mask_out(), e.tmp / "nope.jsonl"), ["nope.jsonl", "not found"]),
    ),
    (
        "mask-empty-corpus",
        lambda e: (mask(e.mask_out(), lines(e.tmp / "c.jsonl", [])), ["c.jsonl"]),
    ),
    (
        "mask-truncated-gz",
        lambda e: (mask(e.mask_out(), truncated_gz(e.tmp / "c.jsonl.gz", TINY)), [GZ]),
    ),
    (
        "mask-bad-json-line",
        lambda e: (
            mask(e.mask_out(), lines(e.tmp / "c.jsonl", ["{oops"])),
            ["c.jsonl:1"],
        ),
    ),
    (
        "mask-binary-corpus",
        lambda e: (
            mask(e.mask_out(), lines(e.tmp / "c.jsonl", [os.urandom(64).replace(b"\n", b"")])),
            ["c.jsonl"],
        ),
    ),
    (
        "mask-rtl-in-id",
        lambda e: (
            mask(
                e.mask_out(), lines(e.tmp / "c.jsonl", ['{"id": "a\\u202eb", "contents": "T\\nx"}'])
            ),
            ["c.jsonl:1", "'id'", "U+202E"],
        ),
    ),
    ("mask-out-dev-full", lambda e: (mask(Path("/dev/full")), ["/dev/full", "regular file"])),
    ("mask-out-is-dir", lambda e: (mask(e.tmp), ["a directory"])),
    (
        "mask-out-under-file",
        lambda e: (mask(e.not_dir() / "o.jsonl"), ["plainfile", "not a directory"]),
    ),
    ("mask-out-readonly", lambda e: (mask(e.readonly() / "o.jsonl"), ["read-only"])),
    ("mask-disk-full", lambda e: (mask(e.full() / "out.jsonl"), ["out.jsonl", "no space left"])),
    (
        "mask-max-examples-0",
        lambda e: ([*mask(e.mask_out()), "--max-examples", "0"], ["--max-examples"]),
    ),
    (
        "mask-max-examples-neg",
        lambda e: ([*mask(e.mask_out()), "--max-examples", "-1"], ["--max-examples"]),
    ),
    ("mask-limit-neg", lambda e: ([*mask(e.mask_out()), "--limit", "-1"], ["--limit"])),
    ("mask-limit-0", lambda e: ([*mask(e.mask_out()), "--limit", "0"], ["--limit"])),
    ("mask-unknown-strategy", lambda e: ([*mask(e.mask_out()), "--strategy", "bogus"], ["bogus"])),
    ("mask-bad-k-dist", lambda e: ([*mask(e.mask_out()), "--k-dist", "x:y"], ["k"])),
    ("mask-unknown-on-few", lambda e: ([*mask(e.mask_out()), "--on-few", "bogus"], ["bogus"])),
    ("mask-calibrate-neg", lambda e: ([*mask(e.mask_out()), "--calibrate", "-5"], ["--calibrate"])),
    (
        "mask-summary-dev-full",
        lambda e: (
            [*mask(e.mask_out()), "--summary-json", "/dev/full"],
            ["/dev/full", "regular file"],
        ),
    ),
    # ---- generate
    ("gen-missing-input", lambda e: (e.gen(e.tmp / "nope.jsonl"), ["nope.jsonl", "not found"])),
    ("gen-empty-input", lambda e: (e.gen(lines(e.tmp / "in.jsonl", [])), ["in.jsonl", "empty"])),
    ("gen-input-is-dir", lambda e: (e.gen(e.tmp), ["directory"])),
    (
        "gen-binary-input",
        lambda e: (e.gen(lines(e.tmp / "in.jsonl", [b"\x89PNG\x00\xff\xfe\x01"])), ["in.jsonl:1"]),
    ),
    (
        "gen-truncated-gz",
        lambda e: (
            e.gen(
                truncated_gz(
                    e.tmp / "in.jsonl.gz",
                    lines(e.tmp / "src.jsonl", [masked_row(i) for i in range(300)]),
                )
            ),
            ["in.jsonl.gz", GZ],
        ),
    ),
    (
        "gen-bad-json",
        lambda e: (e.gen(e.masked([masked_row(0), "{oops"])), ["in.jsonl:2", "invalid JSON"]),
    ),
    (
        "gen-lone-surrogate",
        lambda e: (
            e.gen(
                e.masked(
                    [masked_row(0), json.dumps(masked_row(1)).replace("Item 1", "Item \\ud800")]
                )
            ),
            ["in.jsonl:2", "question", "surrogate"],
        ),
    ),
    (
        "gen-nul-in-id",
        lambda e: (e.gen(e.masked([masked_row(0, id="a\x00b")])), ["in.jsonl:1", "'id'", "U+0000"]),
    ),
    (
        "gen-rtl-in-id",
        lambda e: (
            e.gen(e.masked([masked_row(0, id="a\u202eb")])),
            ["in.jsonl:1", "'id'", "U+202E"],
        ),
    ),
    (
        "gen-span-beyond-text",
        lambda e: (
            e.gen(
                e.masked([masked_row(0, text="", spans=[{"start": 40, "end": 41, "text": "0"}])])
            ),
            ["in.jsonl:1", "spans[0]", "beyond"],
        ),
    ),
    (
        "gen-one-mask-three-spans",
        lambda e: (
            e.gen(
                e.masked(
                    [
                        masked_row(
                            0,
                            text="0 1 2",
                            masked_text="",
                            question="Fill [mask].",
                            answers=["0", "1", "2"],
                            spans=[
                                {"start": 2 * j, "end": 2 * j + 1, "text": str(j)} for j in range(3)
                            ],
                            k=3,
                        )
                    ]
                )
            ),
            ["in.jsonl:1", "question", "3 spans"],
        ),
    ),
    (
        "gen-huge-field",
        lambda e: (
            e.gen(e.masked([masked_row(0, title="t" * 300_000)])),
            ["in.jsonl:1", "title", "too long"],
        ),
    ),
    (
        "gen-wrong-format",
        lambda e: (
            e.gen(e.masked([{"text": "a passage, not an example"}])),
            ["in.jsonl:1", "question"],
        ),
    ),
    ("gen-limit-neg", lambda e: (e.gen(e.masked(), "--limit", "-1"), ["--limit"])),
    ("gen-limit-0", lambda e: (e.gen(e.masked(), "--limit", "0"), ["--limit"])),
    (
        "gen-export-dev-full",
        lambda e: (e.gen(e.masked(), "--export", "/dev/full"), ["/dev/full", "--export"]),
    ),
    (
        "gen-export-under-file",
        lambda e: (
            e.gen(e.masked(), "--export", str(e.not_dir() / "x.jsonl")),
            ["not a directory"],
        ),
    ),
    (
        "gen-export-readonly",
        lambda e: (e.gen(e.masked(), "--export", str(e.readonly() / "x.jsonl")), ["read-only"]),
    ),
    (
        "gen-summary-dev-full",
        lambda e: (e.gen(e.masked(), "--summary-json", "/dev/full"), ["/dev/full"]),
    ),
    ("gen-store-is-dir", lambda e: (e.gen(e.masked(), store=e.tmp), ["--store", "directory"])),
    (
        "gen-store-under-file",
        lambda e: (e.gen(e.masked(), store=e.not_dir() / "s.sqlite"), ["not a directory"]),
    ),
    (
        "gen-store-not-sqlite",
        lambda e: (e.gen(e.masked(), store=lines(e.tmp / "s.sqlite", ["hello"])), ["s.sqlite"]),
    ),
    (
        "gen-checkpoint-under-file",
        lambda e: (
            e.gen(e.masked(), "--checkpoint", f"sqlite:///{e.not_dir() / 'c.sqlite'}"),
            ["not a directory"],
        ),
    ),
    (
        "gen-checkpoint-readonly",
        lambda e: (
            e.gen(e.masked(), "--checkpoint", f"sqlite:///{e.readonly() / 'c.sqlite'}"),
            ["--checkpoint", "read-only"],
        ),
    ),
    (
        "gen-disk-full",
        lambda e: (
            e.gen(
                e.masked([masked_row(i) for i in range(40)]),
                store=e.full("1m", e.store()) / "store.sqlite",
            ),
            ["store.sqlite", "trajectory store"],
        ),
    ),
    ("gen-concurrency-0", lambda e: (e.gen(e.masked(), "--concurrency", "0"), ["--concurrency"])),
    # ---- export
    (
        "export-missing",
        lambda e: (export(e.tmp / "nope.jsonl", e.tmp / "o.jsonl"), ["nope.jsonl", "not found"]),
    ),
    (
        "export-empty",
        lambda e: (export(lines(e.tmp / "r.jsonl", []), e.tmp / "o.jsonl"), ["r.jsonl"]),
    ),
    (
        "export-garbage",
        lambda e: (export(lines(e.tmp / "r.jsonl", ["{oops"]), e.tmp / "o.jsonl"), ["r.jsonl:1"]),
    ),
    (
        "export-wrong-format-records",
        lambda e: (export(e.masked(), e.tmp / "o.jsonl"), ["in.jsonl:1"]),
    ),
    ("export-unknown-format", lambda e: (export(e.store(), e.tmp / "o.jsonl", "bogus"), ["bogus"])),
    (
        "export-out-dev-full",
        lambda e: (export(e.store(), Path("/dev/full")), ["/dev/full", "regular file"]),
    ),
    ("export-out-is-dir", lambda e: (export(e.store(), e.tmp), ["a directory"])),
    (
        "export-out-under-file",
        lambda e: (export(e.store(), e.not_dir() / "o.jsonl"), ["not a directory"]),
    ),
    ("export-out-readonly", lambda e: (export(e.store(), e.readonly() / "o.jsonl"), ["read-only"])),
    (
        "export-disk-full",
        lambda e: (
            export(e.store(), e.full() / "out.jsonl", "trl", "--all"),
            ["out.jsonl", "no space left"],
        ),
    ),
    (
        "export-not-a-store",
        lambda e: (
            export(lines(e.tmp / "r.sqlite", ["not sqlite"]), e.tmp / "o.jsonl"),
            ["r.sqlite"],
        ),
    ),
    (
        "export-truncated-gz",
        lambda e: (
            export(
                truncated_gz(e.tmp / "r.jsonl.gz", e.shared / "masked.jsonl"), e.tmp / "o.jsonl"
            ),
            ["r.jsonl.gz"],
        ),
    ),
    # ---- run
    (
        "run-workdir-is-file",
        lambda e: (["run", "--workdir", str(e.not_dir()), "--no-progress"], ["plainfile"]),
    ),
    (
        "run-workdir-under-file",
        lambda e: (["run", "--workdir", str(e.not_dir() / "w"), "--no-progress"], ["plainfile"]),
    ),
    (
        "run-corpus-missing",
        lambda e: (
            [
                "run",
                "--workdir",
                str(e.tmp / "w"),
                "--corpus",
                str(e.tmp / "nope.jsonl"),
                "--no-progress",
            ],
            ["nope.jsonl"],
        ),
    ),
    (
        "run-corpus-empty",
        lambda e: (
            [
                "run",
                "--workdir",
                str(e.tmp / "w"),
                "--corpus",
                str(lines(e.tmp / "c.jsonl", [])),
                "--no-progress",
            ],
            ["c.jsonl"],
        ),
    ),
    ("run-n-0", lambda e: (["run", "--workdir", str(e.tmp / "w"), "--n", "0"], ["--n"])),
    # ---- train
    (
        "train-sft-missing-config",
        lambda e: (["train", "sft", "--config", str(e.tmp / "nope.yaml")], ["nope.yaml"]),
    ),
    (
        "train-sft-config-not-yaml",
        lambda e: (
            ["train", "sft", "--config", str(lines(e.tmp / "c.yaml", [b"\x00\x01: [unclosed"]))],
            ["c.yaml"],
        ),
    ),
    (
        "train-sft-missing-records",
        lambda e: (
            ["train", "sft", "--records", str(e.tmp / "nope.jsonl"), "--model", "x"],
            ["nope.jsonl"],
        ),
    ),
]


# ---- an output that is an input, or an existing file of another kind (refused before anything
# is read or written; the inputs are checked byte for byte by the test)
INPUTS = ("in.jsonl", "c.jsonl", "corpus.jsonl", "w/corpus.jsonl", "foreign.jsonl", "lg.sqlite")


def corpus_copy(e: Env, name: str = "c.jsonl") -> Path:
    dst = e.tmp / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        shutil.copy(TINY, dst)
    return dst


def link(e: Env, target: Path, name: str, *, hard: bool = False) -> Path:
    dst = e.tmp / name
    if hard:
        os.link(target, dst)
    else:
        dst.symlink_to(target)
    return dst


def foreign(e: Env) -> Path:
    """65 KB of binary data under a JSONL name (e.g. a mistyped output path)."""
    path = e.tmp / "foreign.jsonl"
    path.write_bytes(bytes(range(256)) * 256)
    return path


def langgraph_db(e: Env) -> Path:
    """A LangGraph-style checkpoint database (its tables, no `trajectories`)."""
    import sqlite3

    path = e.tmp / "lg.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE checkpoints (thread_id TEXT, checkpoint BLOB);"
        "CREATE TABLE writes (thread_id TEXT, value BLOB);"
        "INSERT INTO checkpoints VALUES ('t', x'00');"
    )
    db.commit()
    db.close()
    return path


SAME = "same file as"
CASES += [
    ("gen-export-is-input", lambda e: (e.gen(e.masked(), "--export", str(e.masked())), [SAME])),
    (
        "gen-export-hardlink-to-input",
        lambda e: (
            e.gen(e.masked(), "--export", str(link(e, e.masked(), "hl.jsonl", hard=True))),
            ["--export", SAME, "--input"],
        ),
    ),
    (
        "gen-export-symlink-to-input",
        lambda e: (
            e.gen(e.masked(), "--export", str(link(e, e.masked(), "sl.jsonl"))),
            ["--export", SAME, "--input"],
        ),
    ),
    ("gen-store-is-input", lambda e: (e.gen(e.masked(), store=e.masked()), ["--store", SAME])),
    (
        "gen-summary-is-input",
        lambda e: (e.gen(e.masked(), "--summary-json", str(e.masked())), ["--summary-json", SAME]),
    ),
    (
        "gen-checkpoint-is-store",
        lambda e: (
            e.gen(e.masked(), "--checkpoint", f"sqlite:///{e.store()}"),
            ["--checkpoint", SAME, "--store"],
        ),
    ),
    (
        "gen-export-binary-file",
        lambda e: (
            e.gen(e.masked(), "--export", str(foreign(e))),
            ["foreign.jsonl", "--export", "not JSONL"],
        ),
    ),
    (
        "gen-store-is-langgraph-db",
        lambda e: (
            e.gen(e.masked(), store=langgraph_db(e)),
            ["lg.sqlite", "not a trajectory store", "checkpoints"],
        ),
    ),
    (
        "gen-checkpoint-is-trajectory-store",
        lambda e: (
            e.gen(e.masked(), "--checkpoint", f"sqlite:///{e.shared / 'store.sqlite'}"),
            ["--checkpoint", "not a LangGraph checkpoint database", "trajectories"],
        ),
    ),
    (
        "gen-checkpoint-host-part",
        lambda e: (e.gen(e.masked(), "--checkpoint", "sqlite://c.sqlite"), ["host part"]),
    ),
    (
        "gen-checkpoint-ambiguous-slashes",
        lambda e: (
            e.gen(e.masked(), "--checkpoint", f"sqlite://{e.tmp}/nowhere/c.sqlite"),
            ["ambiguous", "sqlite:////"],
        ),
    ),
    ("gen-input-dev-zero", lambda e: (e.gen(Path("/dev/zero")), ["/dev/zero", "not a regular"])),
    (
        "gen-input-fifo",
        lambda e: (
            e.gen(os.mkfifo(e.tmp / "fifo") or e.tmp / "fifo"),
            ["fifo", "a FIFO"],
        ),
    ),
    ("mask-out-is-corpus", lambda e: (mask(corpus_copy(e), corpus_copy(e)), ["--out", SAME])),
    (
        "mask-out-symlink-to-corpus",
        lambda e: (
            mask(link(e, corpus_copy(e), "sl.jsonl"), corpus_copy(e)),
            ["--out", SAME, "--corpus"],
        ),
    ),
    (
        "mask-out-binary-file",
        lambda e: (mask(foreign(e)), ["foreign.jsonl", "not JSONL", "binary"]),
    ),
    (
        "mask-summary-is-corpus",
        lambda e: (
            [*mask(e.mask_out(), corpus_copy(e)), "--summary-json", str(corpus_copy(e))],
            ["--summary-json", SAME],
        ),
    ),
    ("mask-corpus-dev-zero", lambda e: (mask(e.mask_out(), Path("/dev/zero")), ["/dev/zero"])),
    (
        "export-out-is-records",
        lambda e: (export(e.masked(), e.masked()), ["--out", SAME, "--records"]),
    ),
    (
        "export-out-binary-file",
        lambda e: (export(e.store(), foreign(e)), ["foreign.jsonl", "not JSONL"]),
    ),
    (
        "export-sharegpt-out-binary-file",
        lambda e: (export(e.store(), foreign(e), "sharegpt"), ["foreign.jsonl", "not JSON"]),
    ),
    (
        "run-corpus-is-workdir-output",
        lambda e: (
            [
                "run",
                "--workdir",
                str(e.tmp / "w"),
                "--corpus",
                str(corpus_copy(e, "w/corpus.jsonl")),
                "--no-progress",
            ],
            ["corpus.jsonl", "--corpus", "writes"],
        ),
    ),
]


# ---- damaged index files (retrieve, generate, serve) and training values of the wrong type or
# range: one line naming the file (and the key), when the index or the config is read
DAMAGED = "damaged index file"


def damaged_index(e: Env, pick: str, how: str = "half") -> tuple[Path, Path]:
    """A copy of the shared index with one file (the first matching `pick`) cut in half or
    emptied; returns (index folder, damaged file)."""
    d = e.tmp / "dmg"
    if not d.exists():
        shutil.copytree(e.shared / "index", d)
    victim = sorted(d.glob(pick))[0]
    data = victim.read_bytes()
    victim.write_bytes(b"" if how == "empty" else data[: len(data) // 2])
    return d, victim


def retrieve(index_dir: Path) -> list[str]:
    return ["retrieve", "Eiffel tower", "--index", f"bm25:{index_dir}"]


def with_retriever(argv: list[str], index_dir: Path) -> list[str]:
    i = argv.index("--retriever")
    return [*argv[:i], "--retriever", f"bm25:{index_dir}", *argv[i + 2 :]]


def damaged(build_argv, pick: str, how: str = "half"):
    def case(e: Env):
        d, victim = damaged_index(e, pick, how)
        return build_argv(e, d), [victim.name, DAMAGED]

    return case


def yaml_config(e: Env, text: str, kind: str = "sft") -> Path:
    path = e.tmp / "c.yaml"
    data = "records: r.jsonl" if kind == "sft" else "questions: q.jsonl"
    path.write_text(f"model: tiny\n{data}\n" + text)
    return path


CASES += [
    (
        "retrieve-truncated-bm25s-json",
        damaged(lambda e, d: retrieve(d), "bm25s/vocab*.json"),
    ),
    ("retrieve-truncated-bm25s-npy", damaged(lambda e, d: retrieve(d), "bm25s/data*.npy")),
    ("retrieve-truncated-offsets", damaged(lambda e, d: retrieve(d), "passages.offsets.npy")),
    ("retrieve-empty-passages", damaged(lambda e, d: retrieve(d), "passages.jsonl", "empty")),
    ("retrieve-truncated-passages", damaged(lambda e, d: retrieve(d), "passages.jsonl")),
    (
        "gen-truncated-bm25s-json",
        damaged(lambda e, d: with_retriever(e.gen(e.masked()), d), "bm25s/vocab*.json"),
    ),
    (
        "gen-empty-passages",
        damaged(lambda e, d: with_retriever(e.gen(e.masked()), d), "passages.jsonl", "empty"),
    ),
    (
        "serve-truncated-bm25s-npy",
        damaged(lambda e, d: ["serve", "--index", f"bm25:{d}", "--port", "1"], "bm25s/*.npy"),
    ),
    (
        "serve-empty-passages",
        damaged(
            lambda e, d: ["serve", "--index", f"bm25:{d}", "--port", "1"], "passages.jsonl", "empty"
        ),
    ),
    (
        "train-sft-learning-rate-word",
        lambda e: (
            ["train", "sft", "--config", str(yaml_config(e, "learning_rate: fast\n"))],
            ["c.yaml", "'learning_rate'", "a number", "fast"],
        ),
    ),
    (
        "train-sft-learning-rate-word-via-set",
        lambda e: (
            [
                "train",
                "sft",
                "--config",
                str(yaml_config(e, "")),
                "--set",
                "learning_rate=fast",
            ],
            ["c.yaml", "--set", "'learning_rate'", "fast"],
        ),
    ),
    (
        "train-sft-batch-size-0",
        lambda e: (
            ["train", "sft", "--config", str(yaml_config(e, "per_device_train_batch_size: 0\n"))],
            ["c.yaml", "'per_device_train_batch_size'", "at least 1"],
        ),
    ),
    (
        "train-sft-epochs-list",
        lambda e: (
            ["train", "sft", "--config", str(yaml_config(e, "num_train_epochs: [1, 2]\n"))],
            ["c.yaml", "'num_train_epochs'"],
        ),
    ),
    (
        "train-sft-lora-r-string",
        lambda e: (
            ["train", "sft", "--config", str(yaml_config(e, "lora:\n  r: sixteen\n"))],
            ["c.yaml", "'r'", "an integer"],
        ),
    ),
    (
        "train-rl-max-turns-0",
        lambda e: (
            ["train", "rl", "--config", str(yaml_config(e, "max_turns: 0\n", "rl"))],
            ["c.yaml", "'max_turns'", "at least 1"],
        ),
    ),
    (
        "train-rl-scheduler-unknown",
        lambda e: (
            ["train", "rl", "--config", str(yaml_config(e, "lr_scheduler_type: fastest\n", "rl"))],
            ["c.yaml", "'lr_scheduler_type'", "fastest"],
        ),
    ),
    (
        "train-sft-output-dir-is-a-file",
        lambda e: (
            ["train", "sft", "--config", str(yaml_config(e, "")), "--output-dir", str(e.not_dir())],
            ["plainfile", "output_dir", "not a directory"],
        ),
    ),
    (
        "train-config-fifo",
        lambda e: (
            ["train", "sft", "--config", str(os.mkfifo(e.tmp / "c.yaml") or e.tmp / "c.yaml")],
            ["c.yaml", "FIFO"],
        ),
    ),
]


def _snapshot(paths: list[Path]) -> dict[Path, object]:
    return {p: _content(p) for p in paths if p.is_file()}


def _content(path: Path) -> object:
    """What must survive: a store's records (it may gain new ones), a file's bytes (an
    appended JSONL output may gain whole lines)."""
    if path.suffix == ".sqlite":
        import sqlite3

        db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)  # (also on a full disk)
        try:
            return dict(db.execute("SELECT id, record FROM trajectories"))
        finally:
            db.close()
    return path.read_bytes()


def _kept(path: Path, before: object) -> bool:
    now = _content(path)
    if isinstance(before, dict):
        return all(now.get(k) == v for k, v in before.items())
    return now == before or (
        path.suffix == ".jsonl" and now.startswith(before) and now.endswith(b"\n")
    )


@pytest.mark.parametrize("name,build", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_located_line(env, capsys, name, build):
    argv, fragments = build(env)
    kept = _snapshot(
        [
            env.tmp / "store.sqlite",
            env.tmp / "masked_out.jsonl",
            env.tmp / "index" / "manifest.json",
        ]
        + [m / name for m in env.mounts for name in ("out.jsonl", "store.sqlite")]
    )
    inputs = {p: p.read_bytes() for p in (env.tmp / n for n in INPUTS) if p.is_file()}
    code = run([str(a) for a in argv])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2, text
    for path, data in inputs.items():  # every input byte-identical (not even appended to)
        assert path.read_bytes() == data, path
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
    for path, before in kept.items():  # nothing already stored is lost
        assert _kept(path, before), path


def test_generate_truncated_gz_keeps_what_it_stored_and_writes_summary_and_export(env, capsys):
    src = lines(env.tmp / "src.jsonl", [masked_row(i) for i in range(400)])
    gz = truncated_gz(env.tmp / "in.jsonl.gz", src)
    store = env.tmp / "fresh.sqlite"
    argv = env.gen(
        gz,
        "--export",
        str(env.tmp / "x.jsonl"),
        "--export-all",
        "--summary-json",
        str(env.tmp / "s.json"),
        store=store,
    )
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert GZ in err
    summary = json.loads((env.tmp / "s.json").read_text())
    stored = summary["store"]["count"]
    assert stored > 0 and summary["run"]["done"] == stored
    assert sum(1 for _ in (env.tmp / "x.jsonl").open()) == stored


def test_bom_and_crlf_inputs_are_accepted(env, capsys):
    corpus = env.tmp / "c.jsonl"
    corpus.write_bytes(b"\xef\xbb\xbf" + TINY.read_bytes().replace(b"\n", b"\r\n"))
    assert run(index(corpus, env.tmp / "i")) == 0
    masked = env.masked([masked_row(i) for i in range(2)], bom=True)
    assert run(env.gen(masked, store=env.tmp / "s.sqlite")) == 0, capsys.readouterr().err


SUBPROCESS_CASES = [
    ("mask", lambda e: mask(Path("/dev/full")), "/dev/full"),
    ("index", lambda e: index(truncated_gz(e.tmp / "c.jsonl.gz", TINY), e.tmp / "i"), GZ),
    ("generate", lambda e: e.gen(e.masked(), "--limit", "-1"), "--limit"),
]


@pytest.mark.parametrize(
    "name,build,fragment", SUBPROCESS_CASES, ids=[c[0] for c in SUBPROCESS_CASES]
)
def test_console_script_prints_one_line(env, name, build, fragment):
    done = subprocess.run(
        [sys.executable, "-m", "masksearch.cli", *map(str, build(env))],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "Aborted" not in done.stderr
