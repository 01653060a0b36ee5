"""Which llama.cpp generations run in this process, and stopping them: the cancellation
contract of `masksearch.models.llamacpp` (`tests/test_llamacpp_cancel.py`).

Every call registers its cancel event for as long as it runs (`generation`); `cancel_all` sets
them all and `wait_idle` waits until every call has returned, which the process does before it
frees the contexts at exit (never under a running decode). `worker_stopped` is how an async call
waits for its worker thread to leave the engine without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cancel_all", "generation", "live_generations", "wait_idle", "worker_stopped"]

# generations running now (id -> their cancel event), from the call's start (model load, waiting
# for a sequence) to its end; guarded by _LIVE
_live: dict[int, threading.Event] = {}
_LIVE = threading.Condition()


@contextmanager
def generation(cancel: threading.Event | None) -> Iterator[threading.Event]:
    """Register one generation (with `cancel`, or a new event) for `cancel_all`/`wait_idle`."""
    event = cancel if cancel is not None else threading.Event()
    key = id(event)
    with _LIVE:
        _live[key] = event
    try:
        yield event
    finally:
        with _LIVE:
            _live.pop(key, None)
            _LIVE.notify_all()


def live_generations() -> int:
    """Generations running now in this process (any thread)."""
    with _LIVE:
        return len(_live)


def cancel_all() -> None:
    """Ask every running generation to stop (each leaves the batch at the next step)."""
    with _LIVE:
        for event in _live.values():
            event.set()


def wait_idle(timeout: float | None = None) -> bool:
    """Wait until no generation runs (True), or `timeout` seconds passed (False)."""
    with _LIVE:
        return _LIVE.wait_for(lambda: not _live, timeout)


async def worker_stopped(worker: threading.Thread, stopped: asyncio.Event) -> None:
    """Wait, without blocking the event loop, until `worker` has left the engine (the engine drops
    a cancelled call at its next step). A cancellation meanwhile does not cut the wait short (the
    caller would free or reuse the model under a running decode): it is raised after."""
    cancelled = False
    while worker.is_alive() and not stopped.is_set():
        try:
            await asyncio.shield(stopped.wait())
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
