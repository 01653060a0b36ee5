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
