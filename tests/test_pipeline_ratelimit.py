"""Rate limits: the bucket arithmetic, and `generate` really pacing its model calls."""

from __future__ import annotations

import asyncio
import time

from masksearch.graph import Context
from masksearch.pipeline.generate import GenerateSettings, generate
from masksearch.pipeline.ratelimit import LocalLimiter, RateLimiter, RateLimits
from masksearch.pipeline.testing import TeamSetup, masked_row
from masksearch.types import MaskedExample


def test_requests_per_second_after_the_burst():
    lim = RateLimiter(RateLimits(requests_per_s=10, burst_s=1.0))
    waits = [lim.reserve(now=100.0) for _ in range(30)]
    assert waits[:10] == [0.0] * 10  # one second's worth goes at once
    assert abs(waits[10] - 0.1) < 1e-9 and abs(waits[29] - 2.0) < 1e-9  # then 10 per second
    assert lim.reserve(now=200.0) == 0.0  # idle time refills (up to the burst)


def test_tokens_per_minute_estimate_then_settle():
    lim = RateLimiter(RateLimits(tokens_per_min=6000, burst_s=1.0))  # 100 tokens/s
    assert lim.reserve(tokens=100, now=0.0) == 0.0
    assert abs(lim.reserve(tokens=300, now=0.0) - 3.0) < 1e-9  # 400 tokens = 4 s, 1 s banked
    lim.settle(-300, now=0.0)  # the second call used nothing: refund
    assert abs(lim.reserve(tokens=100, now=0.0) - 1.0) < 1e-9
    assert RateLimiter(RateLimits(requests_per_s=1)).reserve(tokens=10**9, now=0) == 0.0


def test_generate_paces_model_calls(tmp_path):
    res = TeamSetup()()  # fake:team, no latency
    ctx = Context(
        planner_model="fake:team",
        rewriter_model="fake:team",
        observer_model="fake:team",
        retriever="mem:team",
        max_turns=1,
    )
    examples = [MaskedExample.from_dict(masked_row(i)) for i in range(10)]
    t0 = time.perf_counter()
    limiter = LocalLimiter(RateLimits(requests_per_s=20, burst_s=0.5))
    s = asyncio.run(
        generate(
            examples,
            ctx,
            tmp_path / "t.sqlite",
            GenerateSettings(checkpointer_url="memory", concurrency=8, progress=False),
            limiter=limiter,
            resources=res,
        )
    )
    elapsed = time.perf_counter() - t0
    assert s.done == 10
    # 30 calls at 20/s after a 10-call burst: at least 1 s (unlimited, this takes ~0.1 s)
    assert elapsed >= 0.95, elapsed
    model = res.get_model("fake:team")
    assert not getattr(model, "callbacks", None)  # the limit does not outlive the run
