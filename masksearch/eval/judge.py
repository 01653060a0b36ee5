"""Optional LLM judge (FreshQA-style relaxed accuracy) with a strict verdict parser."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from masksearch.prompts import judge_prompt
from masksearch.scoring import parse_verdict


@dataclass(slots=True)
class JudgeResult:
    verdict: bool | None
    raw: str
    error: str = ""

    @property
    def score(self) -> float | None:
        return None if self.verdict is None else float(self.verdict)


class LLMJudge:
    """Grades a prediction with a chat model (anything with `ainvoke(messages)`).

    Transient API errors are retried by the model's own `with_retry` (LangChain runnables);
    an unparseable reply gives `verdict=None` (reported, not counted as correct).
    """

    def __init__(self, model: Any, *, retries: int = 3) -> None:
        with_retry = getattr(model, "with_retry", None)
        self.model = (
            with_retry(stop_after_attempt=retries)
            if callable(with_retry) and retries > 1
            else model
        )
        self.name = str(
            getattr(model, "model_name", "") or getattr(model, "model", "") or type(model).__name__
        )

    async def grade(self, question: str, golds: Sequence[str], response: str) -> JudgeResult:
        from langchain_core.messages import HumanMessage

        try:
            msg = await self.model.ainvoke([HumanMessage(judge_prompt(question, golds, response))])
        except Exception as e:  # noqa: BLE001 - a failed judge call must not lose the answer
            return JudgeResult(None, "", f"{type(e).__name__}: {e}")
        text = msg.content if isinstance(getattr(msg, "content", None), str) else str(msg)
        verdict = parse_verdict(text)
        return JudgeResult(verdict, text, "" if verdict is not None else "no clear verdict line")


def load_judge(spec: str) -> LLMJudge:
    """Judge from a model spec via `masksearch.models.load_chat_model` (imported lazily)."""
    from masksearch.models import load_chat_model

    return LLMJudge(load_chat_model(spec, temperature=0.0, max_tokens=256))
