"""Self-evolving teacher loop (MaskSearch Fig. 1, "Self-Evolve Scaling").

Round i: SFT a teacher on the kept trajectory pool → the teacher runs the same LangGraph graph
(single-agent mode, tagged format) on a fresh RAMP batch → the judge filters → accepted records
join the pool. Each round is appended to `rounds.jsonl` (round, pool size, new accepted, accept
rate, train loss, paths); a rerun skips rounds already recorded and continues from the pool file.

Layout of `out_dir`: `pool.jsonl` (current pool), `rounds.jsonl`, `round_<i>/teacher/`,
`round_<i>/trajectories.sqlite`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from masksearch.errors import InputError
from masksearch.jsonl import JsonlAppender, iter_jsonl, write_jsonl
from masksearch.records import TrajectoryRecord
from masksearch.resources import Resources
from masksearch.types import MaskedExample

log = logging.getLogger(__name__)

# train(pool records, teacher output dir, round) -> {"train_loss": float, ...}
TrainFn = Callable[[list[TrajectoryRecord], Path, int], dict[str, Any]]
# generate(batch, teacher model spec, store path, round) -> None (records land in the store)
GenerateFn = Callable[[list[MaskedExample], str, Path, int], Coroutine[Any, Any, Any]]


@dataclass
class EvolveSettings:
    out_dir: str
    rounds: int = 3
    batch_size: int = 1000  # fresh RAMP questions per round
    serve_url: str | None = None  # OpenAI-compatible server that serves each round's teacher
    served_model: str = "teacher"  # model name on that server
    context: dict[str, Any] = field(
        default_factory=dict
    )  # graph Context fields (judge, retriever…)
    concurrency: int = 8


def teacher_spec(teacher_dir: Path, settings: EvolveSettings) -> str:
    """Model spec the graph loads the teacher from: in-process `local:<dir>` or a server URL."""
    if settings.serve_url:
        return f"openai-compatible:{settings.served_model}@{settings.serve_url}"
    return f"local:{teacher_dir}"


def fresh_batches(
    examples: Iterable[MaskedExample], used: set[str], batch_size: int, rounds: int
) -> list[list[MaskedExample]]:
    """Split unused examples into `rounds` disjoint batches (each question is seen once)."""
    batches: list[list[MaskedExample]] = [[] for _ in range(rounds)]
    i = 0
    for ex in examples:
        if ex.id in used:
            continue
        while i < rounds and len(batches[i]) >= batch_size:
            i += 1
        if i >= rounds:
            break
        batches[i].append(ex)
        used.add(ex.id)
    return batches


def _done_rounds(path: Path) -> dict[int, dict[str, Any]]:
    if not path.exists() or path.stat().st_size == 0:
        return {}
    return {int(obj["round"]): obj for _, obj in iter_jsonl(path, allow_empty=True)}


def _ids_in_stores(rows: Iterable[dict[str, Any]]) -> set[str]:
    from masksearch.store.trajectories import TrajectoryStore

    out: set[str] = set()
    for row in rows:
        if row.get("store") and Path(row["store"]).exists():
            with TrajectoryStore(row["store"]) as st:
                out |= st.ids()
    return out


def _accepted_from_store(store_path: Path) -> tuple[list[TrajectoryRecord], int]:
    from masksearch.training.data import iter_training_records

    if not store_path.exists():
        return [], 0
    all_records = list(iter_training_records(store_path, accepted_only=False))
    return [r for r in all_records if r["accepted"]], len(all_records)


def evolve(
    seed_records: Sequence[TrajectoryRecord],
    examples: Iterable[MaskedExample],
    settings: EvolveSettings,
    *,
    train_fn: TrainFn,
    generate_fn: GenerateFn,
) -> list[dict[str, Any]]:
    """Run the loop; returns the per-round stats (also in `rounds.jsonl`)."""
    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pool_path, rounds_path = out / "pool.jsonl", out / "rounds.jsonl"
    done = _done_rounds(rounds_path)
    if pool_path.exists() and done:
        # the pool this function wrote on an earlier run (records of the seed and the stores)
        pool = [cast(TrajectoryRecord, obj) for _, obj in iter_jsonl(pool_path, allow_empty=True)]
    else:
        pool = [r for r in seed_records if r["accepted"]]
        write_jsonl(pool_path, pool)
    if not pool:
        raise InputError("the seed pool has no accepted trajectories to train a teacher on")
    ids = {r["id"] for r in pool}
    used = set(ids) | _ids_in_stores(done.values())  # questions earlier rounds already tried
    todo = [i for i in range(1, settings.rounds + 1) if i not in done]
    if done:
        log.info("rounds %s already done; continuing with %s", sorted(done), todo)
    batches = fresh_batches(examples, used, settings.batch_size, len(todo))
    stats: list[dict[str, Any]] = [done[i] for i in sorted(done)]
    with JsonlAppender(rounds_path) as log_rounds:
        for i, batch in zip(todo, batches, strict=True):
            if not batch:
                log.warning("round %d: no fresh questions left; stopping", i)
                break
            rdir = out / f"round_{i}"
            teacher_dir, store = rdir / "teacher", rdir / "trajectories.sqlite"
            log.info("round %d: training the teacher on %d trajectories", i, len(pool))
            train_stats = train_fn(list(pool), teacher_dir, i)
            spec = teacher_spec(teacher_dir, settings)
            log.info("round %d: teacher %s generates on %d fresh questions", i, spec, len(batch))
            _run(generate_fn(batch, spec, store, i))
            accepted, generated = _accepted_from_store(store)
            new = [r for r in accepted if r["id"] not in ids]
            for r in new:
                r.setdefault("meta", {})["round"] = i
            ids.update(r["id"] for r in new)
            pool.extend(new)
            write_jsonl(pool_path, pool)
            row = {
                "round": i,
                "pool_size": len(pool),
                "new_accepted": len(new),
                "generated": generated,
                "accept_rate": len(accepted) / generated if generated else 0.0,
                "train_loss": train_stats.get("train_loss"),
                "teacher": str(teacher_dir),
                "teacher_spec": spec,
                "store": str(store),
                "pool": str(pool_path),
            }
            log_rounds.write(row)
            stats.append(row)
            log.info("round %d: %s", i, row)
    return stats


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion, also from code that is itself inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# -- default steps: SFT with our trainer, generation with the pipeline --------------------------


def sft_train_fn(base_settings: Any) -> TrainFn:
    """Train each round's teacher from `base_settings` (an `SFTSettings`) on the pool."""
    from masksearch.training.config import replace_settings
    from masksearch.training.sft import train_sft

    def train(pool: list[TrajectoryRecord], teacher_dir: Path, round_: int) -> dict[str, Any]:
        settings = replace_settings(
            base_settings, output_dir=str(teacher_dir), seed=base_settings.args.seed + round_
        )
        return train_sft(settings, records=pool)

    return train


def graph_generate_fn(settings: EvolveSettings, resources: Resources | None = None) -> GenerateFn:
    """Generate with the pipeline's async `generate` (store, resume, concurrency) and our graph.
    `resources` serves the retriever and models of every round (default a fresh one)."""
    from masksearch.context import Context
    from masksearch.pipeline.generate import GenerateSettings, generate

    res = resources if resources is not None else Resources()

    async def run(batch: list[MaskedExample], spec: str, store: Path, round_: int) -> Any:
        fields = {"agent_mode": "single_agent", **settings.context, "planner_model": spec}
        context = Context.from_dict(fields)
        os.makedirs(store.parent, exist_ok=True)
        return await generate(
            batch,
            context,
            store,
            GenerateSettings(
                concurrency=settings.concurrency, checkpointer_url="memory", progress=True
            ),
            resources=res,
        )

    return run
