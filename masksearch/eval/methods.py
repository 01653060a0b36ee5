"""Evaluated methods: the MaskSearch agent, RAG-PE and Agent-PE.

- `masksearch`: our graph in single-agent mode — one (trained) model emits
  `<think>/<search>/<answer>` turns and gets `<information>` back (the student format).
- `agent-pe`: the prompted multi-agent graph (planner / rewriter / observer) with a base model.
- `rag-pe`: retrieve top-k passages for the question once, then one model call to answer.

A method never raises for a failed question: it returns `status="failed"` with the error.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from masksearch.context import Context
from masksearch.eval.items import EvalItem
from masksearch.records import Step
from masksearch.resources import Resources
from masksearch.tagformat import final_answer

METHODS = ("masksearch", "rag-pe", "agent-pe")
MAX_ERROR_CHARS = 500


@dataclass(slots=True)
class MethodOutput:
    prediction: str
    response: str = ""
    status: str = "answered"  # answered | max_turns | failed
    error: str | None = None
    turns: int = 0
    search_calls: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None
    calls: list[dict[str, Any]] | None = None  # multi-agent: the role calls that ran, in order


class Method(Protocol):
    name: str
    model: str
    context: Context
    resources: Resources  # serves the context's models and retriever

    async def answer(self, item: EvalItem) -> MethodOutput: ...


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:MAX_ERROR_CHARS]


ANSWERING = ("agent", "observer", "answer")  # graph roles whose output can hold the answer
_CALL_FIELDS = (
    "agent",
    "turn",
    "output",
    "queries",
    "parse_error",
    "rounds_dropped",
    "model",
    "latency_s",
    "prompt_tokens",
    "completion_tokens",
)


def _call(step: Step) -> dict[str, Any]:
    """One graph step as stored in a result row (retrieved passages by id and title only)."""
    call: dict[str, Any] = {k: step[k] for k in _CALL_FIELDS if k in step}  # type: ignore[literal-required]
    if step.get("passages"):
        call["passages"] = [
            {"id": p.get("id"), "title": p.get("title")}
            for p in step["passages"]
            if isinstance(p, dict)
        ]
    return call


class GraphMethod:
    """Runs an item through `masksearch.graph` (`run_example`) in the context's agent mode."""

    def __init__(
        self, name: str, context: Context, graph: Any = None, resources: Resources | None = None
    ) -> None:
        from masksearch.graph.builder import build_graph

        self.name, self.context = name, context
        self.model = context.planner_model
        self.resources = resources if resources is not None else Resources()
        self.graph = (
            graph if graph is not None else build_graph(checkpointer=None, resources=self.resources)
        )

    async def answer(self, item: EvalItem) -> MethodOutput:
        from masksearch.graph.runner import run_example

        try:
            record = await run_example(self.graph, item.to_example(), self.context)
        except Exception as e:  # noqa: BLE001 - run_example should not raise; keep the run going
            return MethodOutput("", status="failed", error=_error(e))
        steps = list(record.get("steps") or [])
        # the last raw model output (kept even when the turn limit ended the run unanswered)
        response = next(
            (str(s.get("output", "")) for s in reversed(steps) if s.get("agent") in ANSWERING),
            "",
        )
        prediction = record.get("final_answer") or final_answer(response) or ""
        usage = {k: int(v) for k, v in (record.get("usage") or {}).items()}
        multi = self.context.agent_mode == "multi_agent"
        return MethodOutput(
            prediction=prediction,
            response=response,
            status=record.get("status", "failed"),
            error=record.get("error"),
            turns=int((record.get("meta") or {}).get("turns", 0)),
            search_calls=usage.get("search_calls", 0),
            usage=usage,
            # single agent: its conversation; multi-agent: the planner/rewriter/search/observer
            # calls that ran (a student transcript would be a re-rendering, not what ran)
            messages=None if multi else [dict(m) for m in record.get("messages", [])],
            calls=[_call(s) for s in steps] if multi else None,
        )


class RagPE:
    """Retrieve top-k for the question, then prompt the model once (`masksearch.prompts`)."""

    name = "rag-pe"

    def __init__(
        self, context: Context, *, attempts: int = 3, resources: Resources | None = None
    ) -> None:
        self.context = context
        self.model = context.planner_model
        self.attempts = attempts
        self.resources = resources if resources is not None else Resources()

    async def answer(self, item: EvalItem) -> MethodOutput:
        from masksearch import grammars, prompts
        from masksearch.nodes.common import call_model
        from masksearch.prompts import rag_pe_messages
        from masksearch.retrievers.base import asearch

        ctx = self.context
        try:
            retriever = await self.resources.aretriever(ctx.retriever)
            passages = (await self._retry(lambda: asearch(retriever, [item.question], ctx.top_k)))[
                0
            ]
            messages = rag_pe_messages(item.question, prompts.format_docs(passages))
            # the format the prompt asks for (a thought, then the answer) is the forced answer's:
            # a model that decodes under grammars (llama.cpp) keeps to it, so a small base is
            # scored on its answer, not on whether it remembered the tags; others get the prompt
            answer_format = grammars.for_student(item.question, 0, forced=True)
            text, meta = await self._retry(
                lambda: call_model(
                    ctx, "agent", messages, resources=self.resources, output_format=answer_format
                )
            )
        except Exception as e:  # noqa: BLE001 - recorded as a failed question
            return MethodOutput("", status="failed", error=_error(e), search_calls=1)
        usage = {k: int(meta[k]) for k in ("prompt_tokens", "completion_tokens") if k in meta}
        usage["search_calls"] = 1
        return MethodOutput(
            final_answer(text) or "",
            response=text,
            turns=1,
            search_calls=1,
            usage=usage,
            messages=[*messages, {"role": "assistant", "content": text}],
        )

    async def _retry(self, call: Any) -> Any:
        """Retry transient failures (timeouts, 429, 5xx) with backoff; others raise at once."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

        from masksearch.nodes.common import is_transient

        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            reraise=True,
            wait=wait_exponential(multiplier=1, max=30),
            retry=retry_if_exception(is_transient),
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable")  # pragma: no cover


def build_method(
    name: str, context: Context, *, graph: Any = None, resources: Resources | None = None
) -> Method:
    """A method by name, sharing `context` (models, retriever, top_k, max_turns, sampling) and
    `resources` (the loaded models and retriever: pass one to share it between methods; default
    a fresh one per method)."""
    if name == "masksearch":
        return GraphMethod(name, replace(context, agent_mode="single_agent"), graph, resources)
    if name == "agent-pe":
        return GraphMethod(name, replace(context, agent_mode="multi_agent"), graph, resources)
    if name == "rag-pe":
        return RagPE(context, resources=resources)
    raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


async def timed(method: Method, item: EvalItem) -> tuple[MethodOutput, float]:
    start = time.perf_counter()
    try:
        out = await method.answer(item)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - a method bug must not stop the whole evaluation
        out = MethodOutput("", status="failed", error=_error(e))
    return out, round(time.perf_counter() - start, 4)
