"""Rate limits for model calls: requests per second and tokens per minute, in one process or
shared by every worker of a Ray cluster.

`RateLimiter` is the arithmetic (GCRA, a leaky bucket in "virtual scheduling" form): each
reservation of `cost` units pushes a theoretical arrival time forward by `cost / rate`; a
caller waits until that time minus the allowed burst. `reserve` returns the wait, so the same
object works locally (`LocalLimiter`) and inside a Ray actor (`RayLimiter`: one actor per run,
owned by the driver; every worker's calls go through it, so N workers together stay under the
provider's limits).

Tokens are not known before a call: a reservation charges an estimate (prompt characters / 4 +
the `max_tokens` budget) and `settle` corrects it with the usage the provider reports (a
refund when the estimate was high). `RateLimitCallback` hooks this into every LangChain chat
model call: `on_chat_model_start` waits for the reservation, `on_llm_end` settles it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.callbacks import AsyncCallbackHandler


@dataclass(frozen=True)
class RateLimits:
    """Provider limits for a whole run (every worker together); None: no limit."""

    requests_per_s: float | None = None
    tokens_per_min: float | None = None
    burst_s: float = 1.0  # how many seconds' worth of capacity may go at once

    def __bool__(self) -> bool:
        return bool(self.requests_per_s or self.tokens_per_min)


class _Bucket:
    def __init__(self, rate_per_s: float, burst_s: float) -> None:
        self.rate = rate_per_s
        self.tau = burst_s  # seconds of banked capacity
        self.tat = 0.0  # theoretical arrival time of the next unit

    def reserve(self, cost: float, now: float) -> float:
        """Take `cost` units; seconds to wait before using them."""
        start = max(self.tat, now)
        self.tat = start + cost / self.rate
        return max(0.0, self.tat - self.tau - now)

    def settle(self, delta: float, now: float) -> None:
        self.tat = max(now - self.tau, self.tat + delta / self.rate)


class RateLimiter:
    """Both limits' buckets; `reserve` → seconds to wait (the larger of the two)."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._requests = (
            _Bucket(limits.requests_per_s, limits.burst_s) if limits.requests_per_s else None
        )
        self._tokens = (
            _Bucket(limits.tokens_per_min / 60.0, limits.burst_s) if limits.tokens_per_min else None
        )

    def reserve(self, tokens: float = 0.0, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        wait = 0.0
        if self._requests is not None:
            wait = max(wait, self._requests.reserve(1.0, now))
        if self._tokens is not None and tokens > 0:
            wait = max(wait, self._tokens.reserve(tokens, now))
        return wait

    def settle(self, token_delta: float, now: float | None = None) -> None:
        if self._tokens is not None and token_delta:
            self._tokens.settle(token_delta, time.monotonic() if now is None else now)


class Limiter(Protocol):
    async def acquire(self, tokens: float) -> None: ...
    def settle(self, token_delta: float) -> None: ...


class LocalLimiter:
    """Limits for the calls of this process."""

    def __init__(self, limits: RateLimits) -> None:
        self._limiter = RateLimiter(limits)

    async def acquire(self, tokens: float) -> None:
        wait = self._limiter.reserve(tokens)
        if wait > 0:
            await asyncio.sleep(wait)

    def settle(self, token_delta: float) -> None:
        self._limiter.settle(token_delta)


class _LimiterActor:
    """The shared `RateLimiter` of a Ray run (one per run, no CPU reserved)."""

    def __init__(self, limits: RateLimits) -> None:
        self._limiter = RateLimiter(limits)

    def reserve(self, tokens: float) -> float:
        return self._limiter.reserve(tokens)

    def settle(self, token_delta: float) -> None:
        self._limiter.settle(token_delta)


def start_shared_limiter(limits: RateLimits) -> Any:
    """Create the run's limiter actor (owned by the calling driver, so it ends with the run);
    returns its handle, which travels to the workers inside their job (`RayLimiter`)."""
    import ray

    actor: Any = ray.remote(_LimiterActor).options(num_cpus=0).remote(limits)
    ray.get(actor.settle.remote(0.0))  # it is up before any worker calls it
    return actor


class RayLimiter:
    """A worker's handle on the run's shared limiter actor (one round trip per model call)."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    async def acquire(self, tokens: float) -> None:
        wait = await self._actor.reserve.remote(tokens)
        if wait > 0:
            await asyncio.sleep(wait)

    def settle(self, token_delta: float) -> None:
        self._actor.settle.remote(token_delta)  # fire and forget


class RateLimitCallback(AsyncCallbackHandler):
    """Makes every chat-model call wait for its share of the limits, then settles tokens."""

    run_inline = True  # awaited before the model call, in the caller's task

    def __init__(self, limiter: Limiter, max_tokens: int = 512) -> None:
        self.limiter = limiter
        self.max_tokens = max_tokens
        self._estimates: dict[Any, float] = {}

    async def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[Any]], *, run_id: Any, **kwargs: Any
    ) -> None:
        chars = sum(len(str(getattr(m, "content", m))) for batch in messages for m in batch)
        estimate = chars / 4 + self.max_tokens
        self._estimates[run_id] = estimate
        await self.limiter.acquire(estimate)

    async def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
        estimate = self._estimates.pop(run_id, None)
        if estimate is None:
            return
        used = _usage_tokens(response)
        if used is not None:
            self.limiter.settle(used - estimate)

    async def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self._estimates.pop(run_id, None)  # a failed call keeps its reservation (it was sent)


def _usage_tokens(response: Any) -> int | None:
    total = 0
    found = False
    for generations in getattr(response, "generations", []) or []:
        for gen in generations:
            usage = getattr(getattr(gen, "message", None), "usage_metadata", None)
            if usage:
                total += int(usage.get("total_tokens") or 0)
                found = True
    return total if found else None


def attach(model: Any, handler: RateLimitCallback) -> None:
    """Route `model`'s calls through `handler` (a LangChain chat model's `callbacks`)."""
    callbacks = list(getattr(model, "callbacks", None) or [])
    if handler not in callbacks and hasattr(model, "callbacks"):
        model.callbacks = [*callbacks, handler]


__all__ = [
    "LocalLimiter",
    "RateLimitCallback",
    "RateLimiter",
    "RateLimits",
    "RayLimiter",
    "attach",
    "start_shared_limiter",
]
