"""`Context`: every run-time setting of the graph (LangGraph `context_schema`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from masksearch.errors import ConfigError

AgentMode = Literal["multi_agent", "single_agent"]
DEFAULT_MODEL = "local:default"
DEFAULT_RETRIEVER = "bm25:default"  # BM25 over the embedded default corpus (built on first use)


@dataclass(frozen=True)
class Context:
    """Run settings. Model specs are `provider:model` strings, resolved lazily by `resources`.

    - `planner_model`, `rewriter_model`, `observer_model`: the three multi-agent roles
      (the observer also produces the forced answer). In `single_agent` mode only
      `planner_model` is used: one model emits the tagged `<think>/<search>/<answer>` format.
    - `judge_model`: LLM judge for acceptance (None = the rule `scoring.answer_correct` only).
    - `retriever`: retriever spec (`bm25:<dir>`, `dense:<dir>`, `web`, `remote:<url>`; `bm25:default` = embedded corpus).
    - `top_k`: passages per query; `max_passages`: cap after merging all queries of a round
      (None = 2 * top_k). `max_turns`: search rounds. `num_rewrites`: queries per sub-query.
    - `recall_threshold`: minimum token recall for a QA trajectory to be accepted (RAMP
      trajectories need every masked span matched: `masksearch.scoring.ramp_correct`).
    """

    planner_model: str = DEFAULT_MODEL
    rewriter_model: str = DEFAULT_MODEL
    observer_model: str = DEFAULT_MODEL
    judge_model: str | None = None
    agent_mode: AgentMode = "multi_agent"
    retriever: str = DEFAULT_RETRIEVER
    top_k: int = 5
    max_passages: int | None = None
    max_turns: int = 5
    num_rewrites: int = 3
    recall_threshold: float = 0.5
    temperature: float = 0.0
    max_tokens: int = 512
    llm_timeout_s: float = 120.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        for name in ("planner_model", "rewriter_model", "observer_model"):
            _check_spec(name, getattr(self, name))
        if self.judge_model is not None:
            _check_spec("judge_model", self.judge_model)
        if self.agent_mode not in ("multi_agent", "single_agent"):
            raise ConfigError(
                f"agent_mode must be 'multi_agent' or 'single_agent', got {self.agent_mode!r}"
            )
        if not isinstance(self.retriever, str) or not self.retriever.strip():
            raise ConfigError("retriever must be a non-empty spec string (e.g. 'bm25:<index_dir>')")
        _check_int("top_k", self.top_k, 1, 100)
        if self.max_passages is not None:
            _check_int("max_passages", self.max_passages, 1, 1000)
        _check_int("max_turns", self.max_turns, 1, 50)
        _check_int("num_rewrites", self.num_rewrites, 1, 20)
        _check_int("max_tokens", self.max_tokens, 1, 1_000_000)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_float("recall_threshold", self.recall_threshold, 0.0, 1.0)
        _check_float("temperature", self.temperature, 0.0, 2.0)
        _check_float("llm_timeout_s", self.llm_timeout_s, 1e-3, 86_400.0)

    @property
    def passage_cap(self) -> int:
        return self.max_passages if self.max_passages is not None else 2 * self.top_k

    def model_for(self, role: str) -> str:
        """Model spec serving a role (`agent`/`answer` map to the planner/observer model)."""
        if self.agent_mode == "single_agent" or role == "agent":
            return self.planner_model
        return {
            "planner": self.planner_model,
            "rewriter": self.rewriter_model,
            "observer": self.observer_model,
            "answer": self.observer_model,
            "judge": self.judge_model or "",
        }[role]

    def models(self) -> dict[str, str]:
        """role -> spec, as written into records."""
        if self.agent_mode == "single_agent":
            roles = {"agent": self.planner_model}
        else:
            roles = {
                "planner": self.planner_model,
                "rewriter": self.rewriter_model,
                "observer": self.observer_model,
            }
        if self.judge_model:
            roles["judge"] = self.judge_model
        return roles

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Context:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown Context field(s): {', '.join(unknown)}")
        return cls(**d)

    def fingerprint(self) -> str:
        """Short hash of every setting that changes a trajectory (used in thread ids)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _check_spec(name: str, spec: Any) -> None:
    if not isinstance(spec, str) or ":" not in spec or not spec.split(":", 1)[1].strip():
        raise ConfigError(
            f"{name} must be a 'provider:model' spec (e.g. 'openai:gpt-4o-mini'), got {spec!r}"
        )


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def _check_float(name: str, value: Any, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
