"""Memory of the `/retrieve` server under many distinct queries: bounded cache vs unbounded.

Builds a BM25 index of the tiny test corpus, serves it in-process (FastAPI TestClient, no
network), and sends `--requests` requests of 8 distinct random queries of ~3,000 characters
each. Prints the process RSS every `--every` requests, for the server's default cache (LRU:
4,096 entries and 64 MiB of text) and, in a second process, for a cache with no bound (what a
cache that keeps every distinct query does).

    python benchmarks/server_memory.py [--requests 3000] [--every 500]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
TINY = ROOT / "tests" / "data" / "tiny_corpus.jsonl"


def measure(bounded: bool, requests: int, every: int) -> list[tuple[int, float]]:
    import psutil
    from fastapi.testclient import TestClient

    from masksearch.retrievers.bm25 import BM25Retriever
    from masksearch.retrievers.build import build_index
    from masksearch.retrievers.cache import CachedRetriever
    from masksearch.retrievers.server import create_app

    out = Path(tempfile.mkdtemp()) / "index"
    build_index(TINY, out, show_progress=False)
    inner = BM25Retriever(out)
    cache = (
        CachedRetriever(inner)
        if bounded
        else CachedRetriever(inner, maxsize=10**12, max_bytes=10**15)
    )
    client = TestClient(create_app(cache))
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    proc = psutil.Process()
    points = [(0, proc.memory_info().rss / 2**20)]
    for i in range(1, requests + 1):
        queries = [
            " ".join("".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(500))[:3000]
            for _ in range(8)
        ]
        resp = client.post("/retrieve", json={"queries": queries, "topk": 3})
        assert resp.status_code == 200, resp.text[:200]
        if i % every == 0:
            points.append((i, proc.memory_info().rss / 2**20))
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--child", choices=["bounded", "unbounded"])
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child == "bounded", args.requests, args.every)))
        return
    results = {}
    for kind in ("bounded", "unbounded"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--requests", str(args.requests),
             "--every", str(args.every)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    print("| requests (8 queries each) | RSS MiB, default cache | RSS MiB, unbounded cache |")
    print("|---:|---:|---:|")
    for (n, a), (_, b) in zip(results["bounded"], results["unbounded"], strict=True):
        print(f"| {n} | {a:.0f} | {b:.0f} |")


if __name__ == "__main__":
    main()
