"""`masksearch run`: corpus → index → masked data → trajectories, all offline, idempotent.

Layout of `--workdir` (each step is skipped when its output is already there):

    corpus.jsonl          the passages used (FlashRAG jsonl; a subset of the default corpus)
    index/                BM25 index (with --dense: bm25/ + dense/ for hybrid search)
    masked.jsonl          RAMP examples (rule strategy); topped up to --n
    trajectories.sqlite   the trajectory store (one row per example id)
    trajectories.ckpt.sqlite  LangGraph checkpoints of unfinished examples (resume)
    trajectories.jsonl    accepted trajectories (export)
    summary.json          the run summary and store statistics
    stages.json           the inputs (fingerprint) each step's output was made from
    previous/<time>/      the store, checkpoints, export and summary of earlier generation
                          settings, moved aside when the settings changed

Each step's inputs are fingerprinted (corpus file size and time, `--max-passages`, `--dense`,
the masking settings, the models and generation settings, and the fingerprints of the steps it
reads from). A step whose fingerprint matches is reused; one whose inputs changed is rebuilt,
and the run says what changed. Nothing is reused on trust: an output without a recorded
fingerprint (or from an older version) is rebuilt too.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

from masksearch.context import Context
from masksearch.jsonl import write_jsonl
from masksearch.pipeline.runner import RunSettings, echo, run_generate
from masksearch.redact import redact

STAGES = "stages.json"
MASK_SETTINGS = {"strategy": "rule", "seed": 0, "config": "default"}  # what `run` masks with

Fingerprint = dict[str, Any]


class Stages:
    """`workdir/stages.json`: the fingerprint each step's output was made from."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / STAGES
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = {}
        self.data: dict[str, Fingerprint] = loaded if isinstance(loaded, dict) else {}

    def get(self, stage: str) -> Fingerprint | None:
        return self.data.get(stage)

    def set(self, stage: str, fingerprint: Fingerprint | None) -> None:
        from masksearch.fileio import atomic_write_text

        if fingerprint is None:
            self.data.pop(stage, None)
        else:
            self.data[stage] = fingerprint
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")


def digest(fingerprint: Fingerprint) -> str:
    """A short stable hash of a fingerprint (chained into the next steps' fingerprints)."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def source_stamp(path: Path) -> dict[str, Any]:
    """Identity of a corpus file or folder without reading it: path, sizes and modification times."""
    p = Path(path).resolve()
    try:
        if p.is_dir():
            h = hashlib.sha256()
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    st = os.stat(os.path.join(root, name))
                    rel = os.path.relpath(os.path.join(root, name), p)
                    h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            return {"path": str(p), "tree": h.hexdigest()[:16]}
        st = p.stat()
        return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"path": str(p)}


def changes(old: Fingerprint | None, new: Fingerprint) -> str:
    """What differs between two fingerprints, for the message."""
    if old is None:
        return "no record of the inputs it was made from"
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "changed: " + ", ".join(
        f"{k} {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys
    )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def prepare_corpus(
    workdir: Path, corpus: Path | None, max_passages: int | None, stages: Stages | None = None
) -> Path:
    """Copy (up to `max_passages` of) the corpus into `workdir/corpus.jsonl`; reuse it only when
    it was made from the same corpus file (size and time) and `max_passages`."""
    stages = stages or Stages(workdir)
    out = workdir / "corpus.jsonl"
    if corpus is None:
        from masksearch.corpus.default import default_corpus

        corpus = default_corpus()
    fp = {"source": source_stamp(corpus), "max_passages": max_passages}
    if out.is_file() and out.stat().st_size > 0:
        if stages.get("corpus") == fp:
            echo(f"[1/4] corpus: reusing {out}")
            return out
        echo(f"[1/4] corpus: rebuilding {out} ({changes(stages.get('corpus'), fp)})")
    from masksearch.corpus import iter_passages

    rows = (
        {"id": p.id, "contents": p.contents} for p in islice(iter_passages(corpus), max_passages)
    )
    n = write_jsonl(out, rows)
    stages.set("corpus", fp)
    echo(f"[1/4] corpus: {n} passages from {corpus} -> {out}")
    return out


def prepare_index(
    workdir: Path, corpus: Path, dense: bool, progress: bool, stages: Stages | None = None
) -> str:
    """Build the index, or reuse it when it was built from the same corpus step and kind;
    return the retriever spec for it."""
    from masksearch.retrievers.build import IndexSettings, build_index

    stages = stages or Stages(workdir)
    out = workdir / ("index_hybrid" if dense else "index")
    spec = f"{'hybrid' if dense else 'bm25'}:{out}"
    fp = {"corpus": digest(stages.get("corpus") or {}), "dense": dense}
    if (out / "manifest.json").is_file():
        if stages.get("index") == fp:
            echo(f"[2/4] index: reusing {out}")
            return spec
        echo(f"[2/4] index: rebuilding {out} ({changes(stages.get('index'), fp)})")
    summary = build_index(
        corpus, out, IndexSettings(kind="both" if dense else "bm25"), show_progress=progress
    )
    stages.set("index", fp)
    echo(f"[2/4] index: {summary.get('passages', '?')} passages -> {out}")
    return spec


def prepare_masked(
    workdir: Path, corpus: Path, n: int, progress: bool, stages: Stages | None = None
) -> Path:
    """Mask passages (rule strategy) until `masked.jsonl` holds at least `n` examples; masked
    data made from another corpus step or other masking settings is replaced."""
    from masksearch.masking.runner import MaskSettings, mask_corpus
    from masksearch.pipeline.inputs import count_lines

    stages = stages or Stages(workdir)
    out = workdir / "masked.jsonl"
    fp = {"corpus": digest(stages.get("corpus") or {}), **MASK_SETTINGS}
    if out.exists() and stages.get("masked") != fp:
        echo(f"[3/4] mask: rebuilding {out} ({changes(stages.get('masked'), fp)})")
        out.unlink()
    # recorded before masking: an interrupted run appends to the same data on the next run
    if stages.get("masked") != fp:
        stages.set("masked", fp)
    have = (count_lines(out) or 0) if out.is_file() else 0
    if have >= n:
        echo(f"[3/4] mask: reusing {out} ({have} examples)")
        return out
    summary = mask_corpus(
        corpus, out, MaskSettings(strategy="rule", max_examples=n), progress=progress
    )
    total = count_lines(out) or 0
    echo(
        f"[3/4] mask: {getattr(summary, 'written', total - have)} new examples -> {out} ({total} in all)"
    )
    if total == 0:
        from masksearch.errors import InputError

        raise InputError(
            "masking produced no examples (corpus too small or unsuitable)", path=str(corpus)
        )
    return out


GENERATE_OUTPUTS = (
    "trajectories.sqlite",
    "trajectories.sqlite-wal",
    "trajectories.sqlite-shm",
    "trajectories.ckpt.sqlite",
    "trajectories.ckpt.sqlite-wal",
    "trajectories.ckpt.sqlite-shm",
    "trajectories.jsonl",
    "summary.json",
)


def run_offline(
    workdir: Path,
    *,
    context: Context,
    n: int = 8,
    concurrency: int = 2,
    corpus: Path | None = None,
    max_passages: int | None = 2000,
    dense: bool = False,
    progress: bool = True,
) -> int:
    """Run the four steps into `workdir`; return the exit code of the generation step.
    `context` holds the graph settings; its retriever is replaced by the index built here."""
    from masksearch.fileio import check_output_dir, same_file
    from masksearch.graph.checkpoint import default_checkpoint_url

    workdir = Path(workdir)
    check_output_dir(workdir, what="--workdir")
    written = (*GENERATE_OUTPUTS, "corpus.jsonl", "masked.jsonl", STAGES)
    if corpus is not None and any(same_file(corpus, workdir / name) for name in written):
        from masksearch.errors import InputError

        raise InputError(
            "--corpus is one of the files `run` writes in --workdir (copy it elsewhere first)",
            path=str(corpus),
        )
    workdir.mkdir(parents=True, exist_ok=True)
    stages = Stages(workdir)
    corpus_file = prepare_corpus(workdir, corpus, max_passages, stages)
    retriever = prepare_index(workdir, corpus_file, dense, progress, stages)
    masked = prepare_masked(workdir, corpus_file, n, progress, stages)
    context = replace(context, retriever=retriever)
    store = workdir / "trajectories.sqlite"
    export = workdir / "trajectories.jsonl"
    fp = {
        "masked": digest(stages.get("masked") or {}),
        "index": digest(stages.get("index") or {}),
        "context": {k: v for k, v in context.to_dict().items() if k != "retriever"},
    }
    # as stored: tuples become lists, a password in a model URL is redacted
    fp = json.loads(redact(json.dumps(fp, default=str)))
    if stages.get("generate") != fp:
        outputs = [workdir / name for name in GENERATE_OUTPUTS if (workdir / name).exists()]
        if outputs:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = workdir / "previous" / stamp
            n_same = 1
            while aside.exists():
                n_same += 1
                aside = workdir / "previous" / f"{stamp}-{n_same}"
            aside.mkdir(parents=True)
            for path in outputs:
                os.replace(path, aside / path.name)
            echo(
                f"[4/4] generate: settings differ from the stored trajectories' "
                f"({changes(stages.get('generate'), fp)}); moved them to {aside}"
            )
        stages.set("generate", fp)  # recorded before generating: a rerun resumes this store
    models = ", ".join(dict.fromkeys(context.models().values()))
    echo(f"[4/4] generate: {n} examples with {models} (concurrency {concurrency})")
    code = run_generate(
        masked,
        store,
        context,
        default_checkpoint_url(store),
        RunSettings(
            concurrency=concurrency,
            limit=n,
            retry_failed=True,
            export=export,
            summary_json=workdir / "summary.json",
            progress=progress,
        ),
    )
    echo("outputs:")
    listing: tuple[tuple[str, str | Path], ...] = (
        ("corpus", corpus_file),
        ("index", retriever.split(":", 1)[1]),
        ("masked data", masked),
        ("trajectory store", store),
        ("accepted trajectories", export),
        ("summary", workdir / "summary.json"),
    )
    for label, where in listing:
        echo(f"  {label:22s} {where}")
    return code
