"""Generation throughput benchmark: `masksearch.pipeline.generate` over a simulated-latency model.

Every model call sleeps `--latency` seconds (asyncio, like a remote API) and the scripted team
makes each example exactly 3 calls (planner, rewriter, observer) plus one in-memory search, so
the ideal throughput at concurrency c is  c / (3 * latency)  examples/s. The script reports the
measured throughput, its ratio to that ideal, and the SQLite checkpointer's overhead against the
in-memory one at the same concurrency. With a fixed latency every worker moves in lockstep (all
64 do their CPU work at the same moment: a worst case); `--jitter 0.5` spreads the calls over
±50 % like a real API with the same mean, so the same ideal applies.

`ceiling` is the best any pool of c workers can do with these latencies and no CPU cost at all
(simulated: n examples, each 3 draws of latency × U(1 − jitter, 1 + jitter), every worker taking
the next example when it finishes one; mean of 50 seeds), as a fraction of the ideal: the
examples still running when the input runs out leave workers idle at the end (with `--jitter
0.5 --rounds 10` the ceiling is ~94 % at c = 64; more rounds bring it closer to 100 %).
`of ceil.` is the measured throughput against it: what the pipeline's own CPU costs.

`steady` is the throughput while every slot is busy, as a fraction of the ideal: from the moment
the first c examples have finished (each slot has started over once) to the moment the input
runs out (`Summary.steady_throughput`; summed over Ray workers), with its own zero-CPU ceiling
(`st. ceil.`, ~99 %): the pipeline's rate without the tail of a finite batch. It is reported
beside the end-to-end figure, not instead of it.

`cpu/ex` is the CPU time of the process(es) running the examples (`time.process_time`; summed
over Ray workers) divided by the examples: the per-example cost that caps one core's throughput.
`--ray N` runs each setting on N Ray workers (local Ray, started once; `masksearch generate -p N`)
instead of in this process.

    python benchmarks/generation.py                       # 200 ms calls, concurrency 1 / 8 / 64
    python benchmarks/generation.py --latency 0.05 --concurrency 8 64 --rounds 8 --json out.json
    python benchmarks/generation.py --jitter 0.5 --concurrency 256 --ray 2 --checkpointers sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from masksearch.graph import Context
from masksearch.graph.checkpoint import open_checkpointer
from masksearch.pipeline.generate import Durability, GenerateSettings, generate
from masksearch.pipeline.runner import GenerateShard, run_async
from masksearch.pipeline.summary import merge
from masksearch.pipeline.testing import CALLS_PER_EXAMPLE, TeamSetup
from masksearch.resources import Resources
from masksearch.types import MaskedExample, Span
from masksearch.workers.cluster import ClusterSettings, run_sharded, shard_of


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


def ceiling(
    concurrency: int, n: int, latency: float, jitter: float, shards: list[int] | None = None
) -> tuple[float, float]:
    """Simulated zero-CPU throughput as a fraction of the ideal (see the module doc): (end to
    end, steady). `shards`: the examples of each Ray worker (the id hash splits them unevenly),
    each worker running `ceil(concurrency / workers)` at a time; the run ends with the slowest.
    Steady: the workers' summed rates over the window `Summary.steady_throughput` measures."""
    import bisect
    import heapq
    import random

    shards = shards or [n]
    per_worker = -(-concurrency // len(shards))
    ideal = concurrency / (CALLS_PER_EXAMPLE * latency)
    ratios, steady = [], []
    for seed in range(50):
        rng = random.Random(seed)
        end, rate = 0.0, 0.0
        for size in shards:
            free_at = [0.0] * per_worker  # when each slot is next free (a heap)
            ends, last_start = [], 0.0
            for _ in range(size):
                start = heapq.heappop(free_at)
                last_start = start
                took = sum(
                    latency * rng.uniform(1 - jitter, 1 + jitter) for _ in range(CALLS_PER_EXAMPLE)
                )
                heapq.heappush(free_at, start + took)
                ends.append(start + took)
            end = max(end, *free_at)
            ends.sort()
            if len(ends) >= per_worker and last_start > ends[per_worker - 1]:
                t1 = ends[per_worker - 1]
                done = bisect.bisect_right(ends, last_start) - per_worker
                rate += done / (last_start - t1)
        ratios.append(n / end / ideal)
        steady.append(rate / ideal)
    return statistics.fmean(ratios), statistics.fmean(steady)


def setup(latency: float, jitter: float = 0.0) -> tuple[Context, TeamSetup, Resources]:
    """The simulated team: its `Resources` for in-process runs (one for the whole benchmark), and
    the `TeamSetup` factory each Ray worker calls to make its own."""
    team = TeamSetup(latency_s=latency, jitter=jitter, passages=64)
    context = Context(
        planner_model="fake:team",
        rewriter_model="fake:team",
        observer_model="fake:team",
        retriever="mem:team",
        top_k=3,
        max_turns=2,
    )
    return context, team, team()


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
    ray_workers: int = 0,
    team: TeamSetup | None = None,
    durability: Durability = "exit",
    resources: Resources | None = None,
) -> tuple[float, float, float]:
    """(examples per second, CPU seconds per example, steady examples per second) for one run
    into a fresh store."""
    url = "memory" if checkpointer == "memory" else f"sqlite:///{workdir / f'{tag}.ckpt.sqlite'}"
    store = workdir / f"{tag}.sqlite"
    if not ray_workers:
        cpu0 = time.process_time()
        s = run_async(  # as `masksearch generate` runs it
            generate(
                make_examples(n, tag),
                context,
                store,
                GenerateSettings(
                    checkpointer_url=url,
                    concurrency=concurrency,
                    progress=False,
                    durability=durability,
                ),
                resources=resources,
            )
        )
        cpu = time.process_time() - cpu0
    else:
        data = workdir / f"{tag}.jsonl"
        data.write_text("".join(json.dumps(ex.to_dict()) + "\n" for ex in make_examples(n, tag)))
        if url != "memory":
            asyncio.run(_create_checkpointer(url))
        job = GenerateShard(
            input=data,
            store=str(store),
            context=context,
            checkpointer_url=url,
            concurrency=-(-concurrency // ray_workers),
            durability=durability,
            resources=team or Resources,
        )
        out = run_sharded(job, ClusterSettings(workers=ray_workers))
        s, cpu = merge(list(out.values.values())), out.cpu_s
    assert s.done == n and s.failed == 0, s.format()
    return s.throughput, cpu / n, s.steady_throughput


def main(args: argparse.Namespace) -> dict:
    context, team, res = setup(args.latency, args.jitter)
    ideal_per_worker = 1.0 / (CALLS_PER_EXAMPLE * args.latency)
    results: dict = {
        "latency_s": args.latency,
        "jitter": args.jitter,
        "ray_workers": args.ray,
        "durability": args.durability,
        "calls_per_example": CALLS_PER_EXAMPLE,
        "load_avg": os.getloadavg()[0],
        "runs": [],
    }
    if args.ray:  # start Ray once, outside the timed runs
        import ray

        os.environ.setdefault("RAY_worker_niceness", "0")  # as `generate --ray` does
        ray.init(include_dashboard=False, num_cpus=max(os.cpu_count() or 1, args.ray))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        measure(context, 4, 8, "sqlite", work, "warmup", args.ray, team, resources=res)
        where = f"{args.ray} Ray workers" if args.ray else "1 process"
        print(
            f"latency {args.latency * 1000:.0f} ms/call (jitter ±{args.jitter:.0%}), "
            f"{CALLS_PER_EXAMPLE} calls/example, {where}, durability {args.durability}; "
            f"median of {args.repeats} runs each; load average {os.getloadavg()[0]:.2f}"
        )
        print(
            f"{'conc':>5} {'ckpt':>7} {'examples':>8} {'ex/s':>8} {'ideal':>8} {'of ideal':>9} "
            f"{'ceiling':>8} {'of ceil.':>9} {'steady':>7} {'st. ceil.':>9} {'cpu/ex':>8}"
        )
        for c in args.concurrency:
            n = max(args.min_examples, c * args.rounds)
            ideal = c * ideal_per_worker
            workers = min(args.ray, c)
            sizes = None
            if workers:  # the ids each worker gets (the tags of the runs below differ only in
                # the checkpointer and the repeat: the split of the first run is representative)
                ids = [ex.id for ex in make_examples(n, f"c{c}-{args.checkpointers[0]}-0")]
                sizes = [sum(1 for i in ids if shard_of(i, workers) == w) for w in range(workers)]
            ceil, steady_ceil = ceiling(c, n, args.latency, args.jitter, sizes)
            row: dict = {
                "concurrency": c,
                "examples": n,
                "ideal_per_s": round(ideal, 3),
                "ceiling_of_ideal": round(ceil, 4),
                "steady_ceiling_of_ideal": round(steady_ceil, 4),
            }
            for ckpt in args.checkpointers:
                runs = [
                    measure(
                        context,
                        c,
                        n,
                        ckpt,
                        work,
                        f"c{c}-{ckpt}-{r}",
                        min(args.ray, c),
                        team,
                        args.durability,
                        resources=res,
                    )
                    for r in range(args.repeats)
                ]
                tput = statistics.median(t for t, _, _ in runs)
                cpu = statistics.median(c_ for _, c_, _ in runs)
                steady = statistics.median(st for _, _, st in runs)
                row[ckpt] = {
                    "per_s": round(tput, 3),
                    "of_ideal": round(tput / ideal, 4),
                    "of_ceiling": round(tput / ideal / ceil, 4),
                    "steady_per_s": round(steady, 3),
                    "steady_of_ideal": round(steady / ideal, 4),
                    "cpu_ms_per_example": round(cpu * 1000, 3),
                    "runs": [round(t, 3) for t, _, _ in runs],
                }
                print(
                    f"{c:>5} {ckpt:>7} {n:>8} {tput:>8.2f} {ideal:>8.2f} {tput / ideal:>9.1%} "
                    f"{ceil:>8.1%} {tput / ideal / ceil:>9.1%} {steady / ideal:>7.1%} "
                    f"{steady_ceil:>9.1%} {cpu * 1000:>6.2f}ms"
                )
            if "memory" in row and "sqlite" in row:
                overhead = 1 - row["sqlite"]["per_s"] / row["memory"]["per_s"]
                row["sqlite_overhead"] = round(overhead, 4)
                print(f"{'':>5} sqlite checkpointer overhead vs memory: {overhead:+.1%}")
            results["runs"].append(row)
    results["load_avg_end"] = os.getloadavg()[0]
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
        "--ray",
        type=int,
        default=0,
        metavar="N",
        help="run on N local Ray workers (`masksearch generate -p N`); 0: in this process",
    )
    p.add_argument(
        "--durability",
        default="exit",
        choices=["sync", "async", "exit"],
        help="LangGraph checkpoint durability (`masksearch generate --durability`)",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


if __name__ == "__main__":
    ns = parse(sys.argv[1:])
    out = main(ns)
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
