"""Sharded work on Ray: N actors, each running an async job over its share of the items.

Items are split by a stable hash of their id (`shard_of`), so a shard's content never depends on
timing or on which worker runs it: a restarted worker, a resumed run, or a run with another
worker count finds every stored id and every checkpoint thread. Each actor is one process with
its own event loop; models, retrievers and the checkpointer are loaded once per actor (by the
job, on its first call) and shared by the actor's bounded pool of in-flight items.

The driver (`run_sharded`) owns the actors, so they cannot outlive it: Ray kills a job's actors
when its driver exits, even on SIGKILL. SIGINT once asks every actor to start nothing new and
finish what is in flight; SIGINT again or SIGTERM cancels in-flight work (resumed on the next
run from its checkpoints) and kills the actors. A worker that dies (SIGKILL, OOM, lost node) is
replaced and its shard restarted, up to `max_restarts` times; work it finished is in the store
and is skipped.

Why actors and not Ray Data `map_batches`: a shard is a long-lived async loop with a bounded
number of examples in flight, per-actor resources and checkpoint resume; `map_batches` would
run batches to completion one at a time (throughput falls to the slowest example of each
batch) and re-executes whole batches on failure. Ray is an optional dependency
(`pip install 'masksearch[ray]'`); nothing imports it unless a sharded run is asked for.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from masksearch.errors import ConfigError, InputError, MaskSearchError, RunStopped
from masksearch.types import MaskedExample

log = logging.getLogger(__name__)
EXIT_INTERRUPTED = 130  # exit code of a run stopped by a signal (rerun the command to resume)
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


def shard_of(example_id: str, shards: int) -> int:
    """Stable shard index of an id (blake2b, independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b(example_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def take_shard(
    examples: Iterable[MaskedExample], shard: int, shards: int
) -> Iterator[MaskedExample]:
    return (ex for ex in examples if shard_of(ex.id, shards) == shard)


class ShardJob(Protocol[R_co]):
    """A picklable job: `await job(shard, shards, stop)` runs one shard; `stop` set = start
    nothing new. It runs inside a worker process (load resources there, not in `__init__`)."""

    def __call__(self, shard: int, shards: int, stop: asyncio.Event) -> Awaitable[R_co]: ...


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how a sharded run executes."""

    workers: int = 2  # actors (= shards)
    address: str | None = None  # None: start a local Ray; "auto" or "ray://host:10001": join one
    cpus_per_worker: float = 1.0  # Ray CPUs reserved per actor (actors spread over nodes)
    gpus_per_worker: float = 0.0  # Ray GPUs reserved per actor (a local model on a GPU)
    max_restarts: int = 3  # times a dead worker's shard is restarted on a fresh actor
    stop_grace_s: float = 10.0  # after a hard stop, how long cancelled jobs get to clean up


@dataclass
class ShardedResult(Generic[R]):
    """What `run_sharded` gathered: each finished shard's value, and how the run went."""

    values: dict[int, R] = field(default_factory=dict)
    interrupted: bool = False  # stopped by a signal, or a shard gave up after its restarts
    restarts: int = 0  # workers replaced after dying
    cpu_s: float = 0.0  # CPU seconds spent by the finished jobs (their processes)
    pids: list[int] = field(default_factory=list)  # worker processes (local ones, for tests)


class _ShardActor:
    """One worker process: runs one shard job at a time; `stop` asks it to wind down."""

    def __init__(self) -> None:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        self._stop: asyncio.Event | None = None

    def pid(self) -> int:
        return os.getpid()

    async def run(self, job: ShardJob[Any], shard: int, shards: int) -> tuple[str, Any, float]:
        """("ok", value, cpu_s) or ("error", (type name, message), cpu_s): user-facing errors
        come back as data so the driver re-raises them as the same kind."""
        self._stop = asyncio.Event()
        cpu0 = time.process_time()
        try:
            value = await job(shard, shards, self._stop)
        except MaskSearchError as e:
            return "error", (type(e).__name__, str(e)), time.process_time() - cpu0
        return "ok", value, time.process_time() - cpu0

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray / --processes need Ray: pip install 'masksearch[ray]'") from None
    return ray


def connect(settings: ClusterSettings) -> bool:
    """Join `settings.address`, or start a local Ray instance; True if this call started or
    joined it (the caller then calls `ray.shutdown()`), False if Ray was already up."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": True,
        "logging_level": logging.WARNING,
    }
    if settings.address is None:
        # Ray runs its workers at nice 15 by default (to keep its own daemons responsive); here
        # the workers do all of the run's work, so they run at the driver's priority
        os.environ.setdefault("RAY_worker_niceness", "0")
        kwargs["num_cpus"] = max(
            os.cpu_count() or 1, int(settings.workers * settings.cpus_per_worker + 0.999)
        )
    else:
        kwargs["address"] = settings.address
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ConfigError(f"cannot start or join Ray ({settings.address}): {e}") from None
    return True


def run_sharded(
    job: ShardJob[R],
    settings: ClusterSettings,
    *,
    on_poll: Callable[[], None] | None = None,
    echo: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> ShardedResult[R]:
    """Run `job` on `settings.workers` Ray actors (shard i on actor i); wait for all of them.

    Starts a local Ray instance unless one is running or `settings.address` names a cluster
    (and shuts down what it started). `on_poll` is called about twice a second (progress).
    A job's `MaskSearchError` is re-raised here (as `InputError` or `MaskSearchError`) after
    every shard has stopped.
    """
    ray = import_ray()
    from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

    started = connect(settings)
    actor_cls = ray.remote(_ShardActor).options(
        num_cpus=settings.cpus_per_worker,
        num_gpus=settings.gpus_per_worker,
        max_restarts=0,
        scheduling_strategy="SPREAD",
    )
    shards = settings.workers
    actors: dict[int, Any] = {}
    refs: dict[Any, int] = {}
    result: ShardedResult[R] = ShardedResult()
    errors: list[tuple[str, str]] = []
    attempts: dict[int, int] = {}
    state = {"presses": 0, "hard_at": 0.0}

    def launch(i: int) -> None:
        actor = actor_cls.remote()
        actors[i] = actor
        refs[actor.run.remote(job, i, shards)] = i

    def soft_stop() -> None:
        for actor in actors.values():
            actor.stop.remote()

    def hard_stop() -> None:
        if not state["hard_at"]:
            state["hard_at"] = time.monotonic()
            for ref in list(refs):
                ray.cancel(ref)  # CancelledError in the job: it closes its store cleanly

    def on_sigint(signum: int, frame: Any) -> None:
        state["presses"] += 1
        result.interrupted = True
        if state["presses"] == 1:
            echo(
                "\ninterrupt: workers finish the examples in flight (Ctrl-C again to stop now; "
                "they resume on the next run)"
            )
            soft_stop()
        else:
            echo("\ninterrupt: stopping the workers now")
            hard_stop()

    def on_sigterm(signum: int, frame: Any) -> None:
        result.interrupted = True
        echo("\nterminated: stopping the workers now")
        hard_stop()

    previous: dict[signal.Signals, Any] = {}
    try:
        for sig, handler in ((signal.SIGINT, on_sigint), (signal.SIGTERM, on_sigterm)):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        for i in range(shards):
            launch(i)
        result.pids = ray.get([a.pid.remote() for a in actors.values()])
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            if on_poll is not None:
                on_poll()
            if state["hard_at"] and time.monotonic() - state["hard_at"] > settings.stop_grace_s:
                break  # the finally kills whatever is left
            for ref in ready:
                i = refs.pop(ref)
                try:
                    kind, value, cpu_s = ray.get(ref)
                except TaskCancelledError:
                    result.interrupted = True
                    continue
                except RayActorError as e:
                    if result.interrupted or attempts.get(i, 0) >= settings.max_restarts:
                        log.warning("worker for shard %d died: %s", i, e)
                        result.interrupted = True
                        continue
                    attempts[i] = attempts.get(i, 0) + 1
                    result.restarts += 1
                    echo(f"worker for shard {i} died; restarting it (attempt {attempts[i]})")
                    launch(i)
                    continue
                except RayTaskError as e:
                    errors.append(("MaskSearchError", f"worker for shard {i} failed: {e}"))
                    continue
                result.cpu_s += cpu_s
                if kind == "error":
                    errors.append(value)
                else:
                    result.values[i] = value
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for actor in actors.values():
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already dead
                pass
        if started:
            ray.shutdown()
    if len(result.values) < shards:
        result.interrupted = True
    if errors:
        name, message = errors[0]
        kinds: dict[str, type[MaskSearchError]] = {
            "InputError": InputError,
            "RunStopped": RunStopped,
        }
        raise kinds.get(name, MaskSearchError)(message)  # (RunStopped keeps its exit code 3)
    return result


def throttled(
    fn: Callable[[], None], *, min_interval_s: float = 0.5, budget: float = 0.05
) -> Callable[[], None]:
    """`fn` called at most every `min_interval_s`, and rarely enough that it takes at most
    `budget` of the time (a progress poll that counts a store's rows: a `COUNT(*)` over millions
    of Postgres rows takes seconds, which a fixed 0.5 s poll would spend over and over)."""
    due = 0.0

    def call() -> None:
        nonlocal due
        now = time.monotonic()
        if now < due:
            return
        fn()
        took = time.monotonic() - now
        due = now + max(min_interval_s, took / budget)

    return call


def part_path(out: str | os.PathLike[str], shard: int) -> Path:
    """Where shard `shard` of a sharded run appends the rows bound for the JSONL file `out`."""
    out = Path(out)
    return out.with_name(f"{out.name}.part-{shard}")


def merge_parts(out: str | os.PathLike[str], key_of: Callable[[dict[str, Any]], Hashable]) -> int:
    """Append to `out` every row of its part files (`part_path`, any shard count) whose key is
    not in `out` yet, fsync it, then delete the parts; returns the rows appended.

    The driver calls it before its workers start (parts a killed run left) and after they stop.
    Exactly once: a row is in `out` or in a part, never lost; a crash between the append and
    the delete leaves rows that the next merge finds already in `out` and drops.
    """
    from glob import escape

    from masksearch.jsonl import JsonlAppender, SkipCounter, iter_jsonl

    out = Path(out)
    parts = sorted(out.parent.glob(escape(out.name) + ".part-*"))
    if not parts:
        return 0

    def rows(path: Path) -> Iterator[dict[str, Any]]:
        if path.exists():  # a torn last line (a worker killed mid-write) is skipped
            for _, row in iter_jsonl(path, skip_bad=True, counter=SkipCounter(), allow_empty=True):
                yield row

    seen = {key_of(row) for row in rows(out)}
    added = 0
    with JsonlAppender(out) as sink:
        for part in parts:
            for row in rows(part):
                key = key_of(row)
                if key not in seen:
                    seen.add(key)
                    sink.write(row)
                    added += 1
    fd = os.open(out, os.O_RDONLY)  # the rows are on disk before their parts go
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for part in parts:
        part.unlink(missing_ok=True)
    return added


__all__ = [
    "EXIT_INTERRUPTED",
    "ClusterSettings",
    "ShardJob",
    "ShardedResult",
    "connect",
    "import_ray",
    "merge_parts",
    "part_path",
    "run_sharded",
    "shard_of",
    "take_shard",
    "throttled",
]
