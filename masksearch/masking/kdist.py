"""The distribution of k (masks per example), and calibrating it to what a corpus allows."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from masksearch.errors import ConfigError

OnFew = Literal["resample", "smaller", "skip"]


@dataclass(frozen=True)
class KDist:
    """Target distribution of the number of masks per example (k = 1..4 by default)."""

    weights: dict[int, float] = field(default_factory=lambda: {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0})

    @classmethod
    def parse(cls, spec: str | None) -> KDist:
        """`"1:0.25,2:0.25,3:0.25,4:0.25"` (weights are normalised); empty → balanced 1..4."""
        if not spec or not spec.strip():
            return cls()
        weights: dict[int, float] = {}
        for part in spec.split(","):
            k_str, sep, w_str = part.strip().partition(":")
            try:
                k, w = int(k_str), float(w_str) if sep else 1.0
            except ValueError:
                raise ConfigError(
                    f"bad --k-dist entry {part!r}: expected K:WEIGHT, e.g. 2:0.25"
                ) from None
            if k < 1 or w < 0 or k in weights:
                raise ConfigError(
                    f"bad --k-dist entry {part!r}: k must be >= 1, weight >= 0, k unique"
                )
            weights[k] = w
        if sum(weights.values()) <= 0:
            raise ConfigError("--k-dist weights sum to zero")
        return cls(weights)

    def probabilities(self) -> dict[int, float]:
        total = sum(self.weights.values())
        return {k: w / total for k, w in sorted(self.weights.items())}

    def sample(self, rng: random.Random, max_k: int | None = None) -> int | None:
        """Draw k; with `max_k`, from the distribution restricted to k <= max_k (None if empty)."""
        items = [
            (k, w)
            for k, w in sorted(self.weights.items())
            if w > 0 and (max_k is None or k <= max_k)
        ]
        if not items:
            return None
        return rng.choices([k for k, _ in items], weights=[w for _, w in items])[0]

    def spec(self) -> str:
        return ",".join(f"{k}:{p:.4g}" for k, p in self.probabilities().items())


def achieved_distribution(
    weights: Mapping[int, float], feasible: Mapping[int, int], on_few: OnFew = "resample"
) -> dict[int, float]:
    """Expected output share of each k when sampling with `weights` over passages whose
    feasible-span counts are histogrammed in `feasible` (count → passages), under `on_few`."""
    ks = sorted(k for k, w in weights.items() if w > 0)
    total_w = sum(weights[k] for k in ks)
    mass = dict.fromkeys(weights, 0.0)
    for f, n in feasible.items():
        if f <= 0 or n <= 0 or not ks:
            continue
        allowed = [k for k in ks if k <= f]
        for k in ks:
            p = weights[k] / total_w
            if k <= f:
                mass[k] += n * p
            elif on_few == "smaller":
                mass[min(f, ks[-1])] = mass.get(min(f, ks[-1]), 0.0) + n * p
            elif on_few == "resample" and allowed:
                sub = sum(weights[j] for j in allowed)
                for j in allowed:
                    mass[j] += n * p * weights[j] / sub
    total = sum(mass.values())
    return {k: (v / total if total else 0.0) for k, v in sorted(mass.items())}


def calibrate(
    target: KDist, feasible: Mapping[int, int], on_few: OnFew = "resample", iterations: int = 200
) -> KDist:
    """Sampling weights whose achieved distribution on `feasible` is as close to `target` as the
    corpus allows (multiplicative fixed-point updates). Unreachable k keep growing weight only up to
    a cap, so the result stays a valid distribution."""
    goal = target.probabilities()
    w = dict(goal)
    for _ in range(iterations):
        got = achieved_distribution(w, feasible, on_few)
        w = {k: (w[k] * goal[k] / got[k] if got.get(k, 0) > 0 and w[k] > 0 else w[k]) for k in w}
        top = max(w.values()) or 1.0
        w = {k: min(v / top, 1.0) if v > 0 else 0.0 for k, v in w.items()}
        w = {k: max(v, 1e-6) if goal[k] > 0 else 0.0 for k, v in w.items()}
    total = sum(w.values())
    return KDist({k: v / total for k, v in w.items()})
