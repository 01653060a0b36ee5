"""CLI: `masksearch index`, `masksearch serve`, `masksearch search` (heavy imports stay lazy)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masksearch.errors import ConfigError

SPEC_HELP = (
    "Retriever spec: bm25:<dir> | dense:<dir> | hybrid:<bm25_dir>,<dense_dir> | "
    "hybrid:<dir> (built with --kind both) | web | remote:<url>. "
    "Use 'default' as <dir> for the embedded default corpus."
)


def index(
    corpus: Annotated[
        str,
        typer.Option(
            "--corpus", help="Corpus file/dir, or 'default' for the embedded Wikipedia summaries."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output index directory.")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="bm25 | dense | both (both: OUT/bm25, OUT/dense sharing OUT/passages.jsonl).",
        ),
    ] = "bm25",
    fmt: Annotated[
        str, typer.Option("--format", help="auto | wikiextractor | flashrag | textdir.")
    ] = "auto",
    words: Annotated[int, typer.Option("--words", min=10, help="Target words per passage.")] = 100,
    embedding_model: Annotated[
        str,
        typer.Option(
            "--embedding-model",
            help="'default' (bundled all-MiniLM-L6-v2), a local dir or "
            "HF id (e5 gets query:/passage: prefixes), or openai:<model>.",
        ),
    ] = "default",
    faiss_type: Annotated[str, typer.Option("--faiss", help="flat | hnsw | ivf.")] = "flat",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Encoding batch size.")
    ] = 64,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad",
            help="Skip and count malformed records instead of stopping at the first one.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Build a BM25 and/or dense (FAISS) index from a corpus, streaming it."""
    from masksearch.jsonl import SkipCounter
    from masksearch.retrievers.build import build_index

    if corpus == "default":
        from masksearch.corpus.default import default_corpus

        corpus = str(default_corpus())
    counter = SkipCounter()
    summary = build_index(
        corpus,
        out,
        kind=kind,
        fmt=fmt,
        words=words,
        embedding_model=embedding_model,
        faiss_type=faiss_type,
        batch_size=batch_size,
        skip_bad=skip_bad,
        counter=counter,
        show_progress=not quiet,
    )
    typer.echo(f"indexed {summary['passages']} passages into {summary['out']} ({kind})")
    if counter.skipped:
        typer.secho(
            f"skipped {counter.skipped} bad records, e.g.:", fg=typer.colors.YELLOW, err=True
        )
        for example in counter.examples:
            typer.echo(f"  {example}", err=True)


def serve(
    index_spec: Annotated[
        str,
        typer.Option(
            "--index",
            help=SPEC_HELP + " A bare directory means bm25, or hybrid when it holds both.",
        ),
    ],
    host: Annotated[
        str, typer.Option("--host", help="Bind address (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    topk: Annotated[
        int, typer.Option("--topk", min=1, help="Default top-k when a request has none.")
    ] = 3,
    mmap: Annotated[bool, typer.Option("--mmap", help="Memory-map the index files.")] = False,
) -> None:
    """Serve an index over HTTP with Search-R1's /retrieve API (plus GET /health)."""
    from masksearch.retrievers.server import serve as run_server

    retriever = _load(index_spec, mmap=mmap)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            f"warning: listening on {host}; the server has no authentication",
            fg=typer.colors.YELLOW,
            err=True,
        )
    run_server(retriever, host=host, port=port, default_topk=topk)


def search(
    queries: Annotated[list[str], typer.Argument(help="One or more queries.")],
    index_spec: Annotated[str, typer.Option("--index", help=SPEC_HELP)] = "bm25:default",
    k: Annotated[int, typer.Option("-k", min=1, help="Passages per query.")] = 3,
) -> None:
    """Run queries against a retriever and print the ranked passages."""
    retriever = _load(index_spec)
    for q, hits in zip(queries, retriever.search(queries, k), strict=True):
        typer.secho(f"# {q}", bold=True)
        for rank, p in enumerate(hits, 1):
            score = f"{p.score:.3f}" if p.score is not None else "-"
            typer.echo(f"{rank}. [{score}] {p.title} ({p.id}): {p.text[:200]}")


def _load(spec: str, **kwargs):
    from masksearch.retrievers.factory import load_retriever
    from masksearch.retrievers.manifest import MANIFEST, read_manifest

    if ":" not in spec and spec != "web":
        d = Path(spec)
        if not (d / MANIFEST).is_file():
            raise ConfigError(f"{spec!r} is neither a retriever spec nor an index directory")
        kind = read_manifest(d)["kind"]
        spec = f"{'hybrid' if kind == 'both' else kind}:{spec}"
    return load_retriever(spec, **kwargs)


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.command("index")(index)
    app.command("serve")(serve)
    app.command("retrieve")(search)
