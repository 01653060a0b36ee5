"""What one evaluation question costs on CPU, per method, with a local model.

Runs `masksearch eval run` once per method (`-c 1`: one question at a time) on the first `--limit`
questions of a dataset, over a BM25 index of `--corpus`, with `--model` for every role (default
the small SmolLM2-135M; `local:default` is the 1.5B teacher). Reported per method: questions,
wall seconds per question (the mean of the rows' `latency_s`), CPU seconds per question (the eval
process's user + system time divided by the questions; it includes loading the model once),
model calls and tokens per question, and the machine load (`uptime`) before and after: on a
shared machine the wall figures are upper bounds, the CPU figures much less affected.

    python benchmarks/eval_cost.py [--model local:smollm2-135m] [--limit 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("rag-pe", "agent-pe", "masksearch")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="local:smollm2-135m")
    ap.add_argument("--dataset", default=f"bamboogle={REPO / 'tests/data/eval/bamboogle.csv'}")
    ap.add_argument("--corpus", default=str(REPO / "tests/data/tiny_corpus.jsonl"))
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    args = ap.parse_args()

    from masksearch.retrievers.build import build_index

    work = Path(tempfile.mkdtemp(prefix="eval-cost-"))
    build_index(args.corpus, work / "idx", show_progress=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    print(f"model {args.model}, dataset {args.dataset.split('=')[0]}, limit {args.limit}")
    print(f"before: {uptime()}")
    rows = []
    for method in args.methods:
        out = work / method
        cpu0, t0 = children_cpu_s(), time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "masksearch.cli",
                "eval",
                "run",
                "-d",
                args.dataset,
                "-m",
                method,
                "--model",
                args.model,
                "--retriever",
                f"bm25:{work / 'idx'}",
                "--limit",
                str(args.limit),
                "-c",
                "1",
                "--no-progress",
                "--out",
                str(out),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        cpu, wall = children_cpu_s() - cpu0, time.perf_counter() - t0
        results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        n = len(results)
        usage = [r.get("usage") or {} for r in results]
        rows.append(
            {
                "method": method,
                "questions": n,
                "wall_s_per_q": round(sum(float(r["latency_s"]) for r in results) / n, 1),
                "cpu_s_per_q": round(cpu / n, 1),
                "process_wall_s": round(wall, 1),
                "failed": sum(r.get("status") == "failed" for r in results),
                "completion_tokens_per_q": round(
                    sum(int(u.get("completion_tokens", 0)) for u in usage) / n
                ),
                "prompt_tokens_per_q": round(
                    sum(int(u.get("prompt_tokens", 0)) for u in usage) / n
                ),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(f"after: {uptime()}")


if __name__ == "__main__":
    main()
