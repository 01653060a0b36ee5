"""CLI: `masksearch index`, `masksearch serve`, `masksearch search` (heavy imports stay lazy)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masksearch.corpus import FORMAT_HELP
from masksearch.errors import ConfigError

SPEC_HELP = (
    "Retriever spec: bm25:<dir> | dense:<dir> | hybrid:<bm25_dir>,<dense_dir> | "
    "hybrid:<dir> (built with --kind both) | web | remote:<url>. "
    "Use 'default' as <dir> for the embedded default corpus."
)


def index(
    ctx: typer.Context,
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
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "auto",
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
    from masksearch.retrievers.build import IndexSettings, build_index
    from masksearch.settings import settings_from

    if corpus == "default":
        from masksearch.corpus.default import default_corpus

        corpus = str(default_corpus())
    counter = SkipCounter()
    settings = settings_from(IndexSettings, ctx.params)
    summary = build_index(corpus, out, settings, counter=counter, show_progress=not quiet)
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
        str,
        typer.Option(
            "--host", help="Bind address (loopback by default; any other needs --token-env)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (1-65535).")] = 8000,
    top_k: Annotated[
        int,
        typer.Option(
            "--top-k", min=1, help="Passages per query when a request sends no `topk` field."
        ),
    ] = 3,
    mmap: Annotated[bool, typer.Option("--mmap", help="Memory-map the index files.")] = False,
    token_env: Annotated[
        str | None,
        typer.Option(
            "--token-env",
            help="Name of an environment variable holding a bearer token; requests then need "
            "'Authorization: Bearer <token>'. Required for a non-loopback --host.",
        ),
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1, help="Larger request bodies get 413.")
    ] = 4 * 1024 * 1024,
    max_query_chars: Annotated[
        int, typer.Option("--max-query-chars", min=1, help="Longer queries get 422.")
    ] = 4096,
    max_queries: Annotated[
        int, typer.Option("--max-queries", min=1, help="More queries per request get 422.")
    ] = 1024,
    cache_size: Annotated[
        int,
        typer.Option("--cache-size", min=0, help="Cached (query, k) results (LRU; 0 = none)."),
    ] = 4096,
    read_timeout: Annotated[
        float,
        typer.Option(
            "--read-timeout",
            min=0.1,
            help="Seconds a client has to send its request headers (closed after), and the "
            "longest pause inside a body (408 after).",
        ),
    ] = 10.0,
    max_connections: Annotated[
        int,
        typer.Option("--max-connections", min=1, help="Open connections; more are closed."),
    ] = 256,
) -> None:
    """Serve an index over HTTP with Search-R1's /retrieve API (plus GET /health)."""
    import os

    from masksearch.retrievers.server import ServerLimits, check_bind, check_port
    from masksearch.retrievers.server import serve as run_server

    check_port(port)
    token = None
    if token_env is not None:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise ConfigError(f"--token-env {token_env}: that environment variable is not set")
    check_bind(host, token)
    retriever = _load(index_spec, mmap=mmap, cache_size=cache_size)
    limits = ServerLimits(
        max_body_bytes=max_body_bytes,
        max_queries=max_queries,
        max_query_chars=max_query_chars,
        header_timeout_s=read_timeout,
        body_timeout_s=read_timeout,
        max_connections=max_connections,
    )
    run_server(retriever, host=host, port=port, default_top_k=top_k, token=token, limits=limits)


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
