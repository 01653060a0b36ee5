"""`Context`: every run-time setting of the graph (LangGraph `context_schema`).

Defined below the nodes and the graph (nodes read it through `Runtime[Context]`). Field
descriptions and the model-picker metadata (`{"__template_metadata__": {"kind": "llm"}}`) follow
LangGraph's react-agent template, so Studio renders a documented settings form.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Any, Literal

from masksearch.errors import ConfigError
from masksearch.models import ChatSettings
from masksearch.student import Decoding

AgentMode = Literal["multi_agent", "single_agent"]
DEFAULT_MODEL = "local:default"
DEFAULT_RETRIEVER = "bm25:default"  # BM25 over the embedded default corpus (built on first use)
LLM = {"__template_metadata__": {"kind": "llm"}}  # Studio's model picker
MODEL_SPECS = (
    "openai:<model>, dashscope:<model>, openai-compatible:<model>@<url>, "
    "llama-server:<model>@<url>, local:default|<path>, "
    "fake:<script.json> (fake:example = the shipped demo script, no key, no wait)"
)
# settings that never change a trajectory's content (left out of the thread fingerprint): a
# re-run with a longer time limit resumes the same threads
NOT_FINGERPRINTED = frozenset({"review_queries", "llm_timeout_s", "save"})
API_TIMEOUT_S = 120.0  # the default time limit of one call to a hosted or served model
LOCAL_PROVIDERS = ("local:",)  # in-process models: no default time limit


def _describe(default: Any, description: str) -> Any:
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True, kw_only=True)
class Context:
    """Run settings of the MaskSearch graph. Model specs are `provider:model` strings, resolved
    lazily by `masksearch.resources.Resources`. Invalid values raise `ConfigError`."""

    planner_model: Annotated[str, LLM] = _describe(
        DEFAULT_MODEL,
        "Planner model (multi_agent), or THE model in single_agent mode. " + MODEL_SPECS,
    )
    rewriter_model: Annotated[str, LLM] = _describe(
        DEFAULT_MODEL, "Query-rewriter model (multi_agent). " + MODEL_SPECS
    )
    observer_model: Annotated[str, LLM] = _describe(
        DEFAULT_MODEL,
        "Observer model (multi_agent): reads the results, answers or searches again; also gives "
        "the forced answer. " + MODEL_SPECS,
    )
    judge_model: Annotated[str | None, LLM] = _describe(
        None,
        "Optional LLM judge, asked after the acceptance rule passed (empty = the rule "
        "masksearch.scoring.answer_correct only). " + MODEL_SPECS,
    )
    agent_mode: AgentMode = _describe(
        "multi_agent",
        "multi_agent: planner → rewriter → search → observer team (teacher); single_agent: one "
        "model emits <think>/<search>/<answer> turns (student).",
    )
    retriever: str = _describe(
        DEFAULT_RETRIEVER,
        "Retriever spec: bm25:<index_dir>, dense:<index_dir>, hybrid:<a>+<b>, web, remote:<url>; "
        "bm25:default = the embedded corpus.",
    )
    top_k: int = _describe(5, "Passages retrieved per query.")
    max_passages: int | None = _describe(
        None, "Passages kept per round after merging all its queries (empty = 2 × top_k)."
    )
    max_turns: int = _describe(5, "Search rounds before a forced answer.")
    num_rewrites: int = _describe(3, "Search queries the rewriter writes per sub-query.")
    recall_threshold: float = _describe(
        0.5,
        "Minimum token recall for a QA trajectory to be accepted (RAMP trajectories need every "
        "masked span matched: masksearch.scoring.ramp_correct).",
    )
    temperature: float = _describe(0.0, "Sampling temperature of every model call.")
    top_p: float = _describe(1.0, "Nucleus sampling top-p of every model call (1 = off).")
    repetition_penalty: float = _describe(
        1.0,
        "Repetition penalty of every model call (1 = none; a penalty discourages copying a span "
        "just read). Local models and OpenAI-compatible servers (vLLM) apply it.",
    )
    max_tokens: int = _describe(512, "Generation limit (tokens) of every model call.")
    llm_timeout_s: float | None = _describe(
        None,
        "Time limit (seconds) of one model call; empty = by model: 120 s for hosted or served "
        "models, none for local (in-process) models, whose calls on a loaded CPU can take "
        "minutes and would only be retried from the start.",
    )
    seed: int | None = _describe(0, "Sampling seed (empty = none).")
    review_queries: bool = _describe(
        False,
        "Human in the loop: pause before every search (interrupt) so the queries can be "
        "approved or edited; resume with Command(resume=<list of queries>), an empty list "
        "keeps them.",
    )
    save: str | None = _describe(
        None,
        "Trajectory store (a SQLite file, or postgresql://…) that each finished question of a "
        "Studio or chat run is saved into (a re-run of the same question on its thread, e.g. "
        "after a hand edit or a fork, replaces its record), for `masksearch export` and "
        "training. Empty = not saved. Batch `generate` has its own --store.",
    )

    def __post_init__(self) -> None:
        if self.judge_model == "":  # an emptied form field means "no judge"
            object.__setattr__(self, "judge_model", None)
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
        _check_float("top_p", self.top_p, 1e-6, 1.0)
        _check_float("repetition_penalty", self.repetition_penalty, 1e-3, 10.0)
        if self.llm_timeout_s is not None:
            _check_float("llm_timeout_s", self.llm_timeout_s, 1e-3, 86_400.0)
        if self.save == "":  # an emptied form field means "do not save"
            object.__setattr__(self, "save", None)
        if self.save is not None and not isinstance(self.save, str):
            raise ConfigError(f"save must be a trajectory store path or URL, got {self.save!r}")
        if not isinstance(self.review_queries, bool):
            raise ConfigError(f"review_queries must be true or false, got {self.review_queries!r}")

    @property
    def passage_cap(self) -> int:
        return self.max_passages if self.max_passages is not None else 2 * self.top_k

    def decoding(self) -> Decoding:
        """The student turn's decoding (`masksearch.student.Decoding`), as eval reports it."""
        return Decoding(
            temperature=self.temperature,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
        )

    def model_settings(self) -> ChatSettings:
        """The settings every model of this run is built with (`Resources.amodel(spec, **…)`):
        `decoding()`'s sampling values, the token limit, timeout and seed; `timeout` is the HTTP
        client's (local models ignore it, see `timeout_for`)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "max_tokens": self.max_tokens,
            "timeout": self.llm_timeout_s if self.llm_timeout_s is not None else API_TIMEOUT_S,
            "seed": self.seed,
        }

    def timeout_for(self, spec: str) -> float | None:
        """Time limit of one call to the model `spec`: `llm_timeout_s` when set, else
        `API_TIMEOUT_S` for a hosted or served model and none (None) for a local one."""
        if self.llm_timeout_s is not None:
            return self.llm_timeout_s
        return None if spec.startswith(LOCAL_PROVIDERS) else API_TIMEOUT_S

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
        """Validate a plain mapping (an API client's run context) into a Context."""
        if not isinstance(d, dict):
            raise ConfigError(f"context must be an object of settings, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(str(name).replace("-", "_"), known, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(
                f"unknown Context field(s): {', '.join(hints)}; known: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def fingerprint(self) -> str:
        """Short hash of every setting that changes a trajectory (used in thread ids)."""
        settings = {k: v for k, v in self.to_dict().items() if k not in NOT_FINGERPRINTED}
        blob = json.dumps(settings, sort_keys=True, default=str)
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
