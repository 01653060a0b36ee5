"""Build BM25 and/or dense indexes from a corpus in one streaming pass plus store re-reads.

Layout: `--kind bm25|dense` → `OUT/{manifest.json, passages.jsonl, ...}`;
`--kind both` → `OUT/passages.jsonl` shared by `OUT/bm25/` and `OUT/dense/` (plus a top-level
manifest of kind `both`), so `hybrid:OUT` works and the text is stored once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masksearch.corpus import iter_passages
from masksearch.jsonl import SkipCounter
from masksearch.retrievers.manifest import MANIFEST, update_manifest, write_manifest
from masksearch.retrievers.store import PASSAGES, PassageStore, PassageWriter
from masksearch.types import Passage

KINDS = ("bm25", "dense", "both")


def _progress(enabled: bool, desc: str, total: int | None = None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="psg", disable=not enabled, dynamic_ncols=True)


def _tracked(passages: Iterator[Passage], bar: Any) -> Iterator[Passage]:
    for p in passages:
        bar.update(1)
        yield p


def write_passages(
    corpus: str | os.PathLike[str],
    out_dir: Path,
    *,
    fmt: str = "auto",
    words: int = 100,
    skip_bad: bool = False,
    counter: SkipCounter | None = None,
    show_progress: bool = True,
) -> int:
    """Stream the corpus into `out_dir/passages.jsonl` (+ offsets); returns the passage count."""
    with _progress(show_progress, "passages") as bar, PassageWriter(out_dir) as writer:
        for p in iter_passages(corpus, fmt, words, skip_bad=skip_bad, counter=counter):
            writer.add(p)
            bar.update(1)
        return len(writer)


@dataclass(frozen=True)
class IndexSettings:
    """What `build_index` builds: the index kind(s), how the corpus is cut into passages, and the
    dense encoder and FAISS index (kind dense or both)."""

    kind: str = "bm25"  # bm25 | dense | both (see KINDS)
    fmt: str = "auto"  # corpus format (masksearch.corpus)
    words: int = 100  # target words per passage
    embedding_model: str = "default"  # dense: encoder spec (retrievers.embeddings)
    faiss_type: str = "flat"  # dense: flat | hnsw | ivf
    batch_size: int = 64  # dense: encoding batch size
    skip_bad: bool = False  # skip (and count) malformed corpus records instead of stopping


def build_index(
    corpus: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: IndexSettings | None = None,
    *,
    counter: SkipCounter | None = None,
    show_progress: bool = True,
    encoder: Any = None,
) -> dict[str, Any]:
    """Build the index kind(s) `settings` asks for (default: BM25) under `out`; returns a
    summary dict. `encoder`: a loaded dense encoder (else `settings.embedding_model` is loaded)."""
    settings = settings or IndexSettings()
    kind, faiss_type = settings.kind, settings.faiss_type
    from masksearch.errors import ConfigError

    if kind not in KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    from masksearch.retrievers.dense import FAISS_TYPES

    if kind != "bm25" and faiss_type not in FAISS_TYPES:
        raise ConfigError(
            f"unknown FAISS index type {faiss_type!r}; choose one of {', '.join(FAISS_TYPES)}"
        )
    from masksearch.fileio import check_output_dir

    final_dir = Path(out)
    check_output_dir(final_dir, what="--out")
    check_output_dir(final_dir.parent, what="--out's folder")
    recovered = recover_swap(final_dir)  # finish or undo a swap a killed build left half done
    if recovered:
        import logging

        logging.getLogger(__name__).info("index %s: %s (interrupted build)", final_dir, recovered)
    if final_dir.exists() and any(final_dir.iterdir()) and not (final_dir / MANIFEST).is_file():
        raise ConfigError(f"{final_dir} is not empty and holds no index; choose another --out")
    # Build next to the target and swap at the end: an existing index survives a failed build.
    out_dir = _sibling(final_dir, "building")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    counter = counter if counter is not None else SkipCounter()
    corpus_str = str(Path(corpus).resolve())
    if kind in ("dense", "both") and encoder is None:
        from masksearch.retrievers.embeddings import load_encoder

        encoder = load_encoder(
            settings.embedding_model, batch_size=settings.batch_size
        )  # fail early, before ingesting
    try:
        job = _Build(corpus, settings, counter, show_progress)
        summary = _build_into(out_dir, final_dir, job, encoder, corpus_str)
    except BaseException as e:
        shutil.rmtree(out_dir, ignore_errors=True)  # the previous index (if any) is untouched
        if isinstance(e, OSError):
            from masksearch.fileio import output_error

            raise output_error(e, final_dir, "cannot build the index") from None
        raise
    swap_in(out_dir, final_dir)
    return summary


def _sibling(final_dir: Path, tag: str) -> Path:
    return final_dir.with_name(f".{final_dir.name}.{tag}")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux `renameat2(RENAME_EXCHANGE)`); False if unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    import errno

    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False  # the kernel or file system cannot exchange: use the two-rename fallback
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def swap_in(new_dir: Path, final_dir: Path) -> None:
    """Put a finished build in place so that a kill at any moment leaves a usable index (the old
    one or the new one). The files are fsynced first. With an existing index the two folders
    are exchanged in one atomic step (Linux), then the old one is deleted; elsewhere the old
    index is first renamed aside to `.NAME.old` and a rerun finishes the swap (`recover_swap`)."""
    from masksearch.fileio import fsync_dir, fsync_tree

    fsync_tree(new_dir)
    if not final_dir.exists():
        os.rename(new_dir, final_dir)
    elif _exchange(new_dir, final_dir):
        fsync_dir(final_dir.parent)
        shutil.rmtree(new_dir)  # now the old index
    else:
        old = _sibling(final_dir, "old")
        if old.exists():
            shutil.rmtree(old)
        os.rename(final_dir, old)
        os.rename(new_dir, final_dir)
        fsync_dir(final_dir.parent)
        shutil.rmtree(old)
    fsync_dir(final_dir.parent)


def recover_swap(final_dir: Path) -> str | None:
    """Clean up after a build killed while swapping: a complete `.NAME.old` left without a
    `NAME` is put back; one left beside a complete `NAME` is deleted; a half-built
    `.NAME.building` is deleted. Returns what was done (None: nothing to do)."""
    old, building = _sibling(final_dir, "old"), _sibling(final_dir, "building")
    done = None
    if old.exists():
        if (final_dir / MANIFEST).is_file():
            shutil.rmtree(old)
            done = "removed the previous index left aside"
        elif (old / MANIFEST).is_file() and not final_dir.exists():
            os.rename(old, final_dir)
            done = "restored the previous index"
    if building.exists():
        shutil.rmtree(building)
        done = done or "removed an unfinished build"
    return done


@dataclass(frozen=True)
class _Build:
    """What `build_index` was asked to build (its options, passed on whole)."""

    corpus: str | os.PathLike[str]
    settings: IndexSettings
    counter: SkipCounter
    show_progress: bool


def _build_into(
    out_dir: Path, final_dir: Path, job: _Build, encoder: Any, corpus_str: str
) -> dict[str, Any]:
    settings = job.settings
    count = write_passages(
        job.corpus,
        out_dir,
        fmt=settings.fmt,
        words=settings.words,
        skip_bad=settings.skip_bad,
        counter=job.counter,
        show_progress=job.show_progress,
    )
    store = PassageStore(out_dir / PASSAGES)
    summary: dict[str, Any] = {
        "passages": count,
        "skipped": job.counter.skipped,
        "out": str(final_dir),
    }
    try:
        if settings.kind in ("bm25", "both"):
            from masksearch.retrievers.bm25 import build_bm25

            target = out_dir / "bm25" if settings.kind == "both" else out_dir
            rel = "../" + PASSAGES if settings.kind == "both" else PASSAGES
            with _progress(job.show_progress, "bm25 tokenize", count) as bar:
                build_bm25(
                    _tracked(iter(store), bar),
                    target,
                    corpus=corpus_str,
                    passages_file=rel,
                    show_progress=job.show_progress,
                )
            update_manifest(target, format=settings.fmt, words_per_passage=settings.words)
            summary["bm25"] = str(final_dir / "bm25" if settings.kind == "both" else final_dir)
        if settings.kind in ("dense", "both"):
            from masksearch.retrievers.dense import build_dense

            target = out_dir / "dense" if settings.kind == "both" else out_dir
            rel = "../" + PASSAGES if settings.kind == "both" else PASSAGES
            with _progress(job.show_progress, "dense encode", count) as bar:
                build_dense(
                    iter(store),
                    target,
                    encoder,
                    corpus=corpus_str,
                    passages_file=rel,
                    faiss_type=settings.faiss_type,
                    batch_size=settings.batch_size,
                    progress=bar,
                )
            update_manifest(target, format=settings.fmt, words_per_passage=settings.words)
            summary["dense"] = str(final_dir / "dense" if settings.kind == "both" else final_dir)
    finally:
        store.close()
    if settings.kind == "both":
        write_manifest(
            out_dir,
            kind="both",
            corpus=corpus_str,
            count=count,
            passages=PASSAGES,
            parts={"bm25": "bm25", "dense": "dense"},
            format=settings.fmt,
            words_per_passage=settings.words,
        )
    return summary
