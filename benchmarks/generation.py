"""Generation throughput benchmark: `masksearch.pipeline.generate` over a simulated-latency model.

Every model call sleeps `--latency` seconds (asyncio, like a remote API) and the scripted team
makes each example exactly 3 calls (planner, rewriter, observer) plus one in-memory search, so
the ideal throughput at concurrency c is  c / (3 * latency)  examples/s. The script reports the
measured throughput, its ratio to that ideal, and the SQLite checkpointer's overhead against the
in-memory one at the same concurrency. With a fixed latency every worker moves in lockstep (all
64 do their CPU work at the same moment: a worst case); `--jitter 0.5` spreads the calls over
±50 % like a real API with the same mean, so the same ideal applies.

    python benchmarks/generation.py                       # 200 ms calls, concurrency 1 / 8 / 64
    python benchmarks/generation.py --latency 0.05 --concurrency 8 64 --rounds 8 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

from masksearch.graph import Context, resources
from masksearch.graph.checkpoint import open_checkpointer
from masksearch.graph.testing import KeywordRetriever
from masksearch.pipeline.generate import generate
from masksearch.pipeline.parallel import generate_sharded
from masksearch.pipeline.store import TrajectoryStore
from masksearch.pipeline.testing import CALLS_PER_EXAMPLE, LatencyChatModel, team_respond
from masksearch.types import MaskedExample, Passage, Span


def make_examples(n: int, prefix: str) -> list[MaskedExample]:
    return [
        MaskedExample(
            id=f"{prefix}-{i}",
            question=f"Item {i} is about number [mask].",
            answers=[str(i)],
            spans=[Span(0, len(str(i)), str(i))],
        )
        for i in range(n)
    ]


def setup(latency: float, jitter: float = 0.0) -> Context:
    resources.clear()
    resources.register_model(
        "fake:bench",
        LatencyChatModel(
            respond=team_respond(lambda q: q.split()[1]), latency_s=latency, jitter=jitter
        ),
    )
    resources.register_retriever(
        "mem:bench",
        KeywordRetriever(
            [Passage(f"p{i}", f"Topic {i}", f"Item {i} is about number {i}.") for i in range(64)]
        ),
    )
    return Context(
        planner_model="fake:bench",
        rewriter_model="fake:bench",
        observer_model="fake:bench",
        retriever="mem:bench",
        top_k=3,
        max_turns=2,
    )


async def _create_checkpointer(url: str) -> None:
    async with open_checkpointer(url):
        pass


def measure(
    context: Context,
    concurrency: int,
    n: int,
    checkpointer: str,
    workdir: Path,
    tag: str,
    processes: int = 1,
) -> float:
    """Examples per second for one run into a fresh store (pool time, as `Summary.throughput`)."""
    url = "memory" if checkpointer == "memory" else f"sqlite:///{workdir / f'{tag}.ckpt.sqlite'}"
    store = workdir / f"{tag}.sqlite"
    if processes == 1:
        s = asyncio.run(
            generate(
                make_examples(n, tag), context, store, url, concurrency=concurrency, progress=False
            )
        )
    else:  # memory checkpointer: one per process, which is fine (nothing is resumed here)
        TrajectoryStore(store).close()
        if url != "memory":
            asyncio.run(_create_checkpointer(url))
        per = -(-concurrency // processes)
        s = generate_sharded(
            lambda: make_examples(n, tag),
            lambda ex, i, k: asyncio.run(
                generate(ex, context, store, url, concurrency=per, progress=False)
            ),
            processes=processes,
        )
    assert s.done == n and s.failed == 0, s.format()
    return s.throughput


def main(args: argparse.Namespace) -> dict:
    context = setup(args.latency, args.jitter)
    ideal_per_worker = 1.0 / (CALLS_PER_EXAMPLE * args.latency)
    results: dict = {
        "latency_s": args.latency,
        "jitter": args.jitter,
        "processes": args.processes,
        "calls_per_example": CALLS_PER_EXAMPLE,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        measure(context, 4, 8, "sqlite", work, "warmup")  # imports, first compile
        print(
            f"latency {args.latency * 1000:.0f} ms/call (jitter ±{args.jitter:.0%}), "
            f"{CALLS_PER_EXAMPLE} calls/example, {args.processes} process(es); "
            f"median of {args.repeats} runs each"
        )
        print(f"{'conc':>5} {'ckpt':>7} {'examples':>8} {'ex/s':>8} {'ideal':>8} {'of ideal':>9}")
        for c in args.concurrency:
            n = max(args.min_examples, c * args.rounds)
            ideal = c * ideal_per_worker
            row = {"concurrency": c, "examples": n, "ideal_per_s": round(ideal, 3)}
            for ckpt in args.checkpointers:
                procs = min(args.processes, c)
                runs = [
                    measure(context, c, n, ckpt, work, f"c{c}-{ckpt}-{r}", procs)
                    for r in range(args.repeats)
                ]
                tput = statistics.median(runs)
                row[ckpt] = {
                    "per_s": round(tput, 3),
                    "of_ideal": round(tput / ideal, 4),
                    "runs": [round(x, 3) for x in runs],
                }
                print(f"{c:>5} {ckpt:>7} {n:>8} {tput:>8.2f} {ideal:>8.2f} {tput / ideal:>9.1%}")
            if "memory" in row and "sqlite" in row:
                overhead = 1 - row["sqlite"]["per_s"] / row["memory"]["per_s"]
                row["sqlite_overhead"] = round(overhead, 4)
                print(f"{'':>5} sqlite checkpointer overhead vs memory: {overhead:+.1%}")
            results["runs"].append(row)
    resources.clear()
    return results


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--latency", type=float, default=0.2, help="seconds per model call (default 0.2)"
    )
    p.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="spread each call's latency uniformly by ±this fraction (same mean; seeded)",
    )
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument(
        "--rounds", type=int, default=6, help="examples per worker (n = concurrency * rounds)"
    )
    p.add_argument("--min-examples", type=int, default=12)
    p.add_argument("--repeats", type=int, default=1, help="runs per setting (median reported)")
    p.add_argument(
        "--checkpointers", nargs="+", default=["memory", "sqlite"], choices=["memory", "sqlite"]
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="split each run over this many processes (`masksearch generate --processes`)",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


if __name__ == "__main__":
    ns = parse(sys.argv[1:])
    out = main(ns)
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
