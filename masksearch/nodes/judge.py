"""Judge node: rule scores (recall / EM / F1) and the optional strict LLM verdict → `accepted`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.runtime import Runtime

from masksearch import prompts
from masksearch.eval.metrics import exact_match, f1, mask_recall, token_recall
from masksearch.graph.state import GraphState
from masksearch.nodes.common import call_model, context_of, step, user
from masksearch.parsing import parse_verdict


def task_of(state: GraphState | dict[str, Any]) -> str:
    task = state.get("task")
    if task:
        return task
    return "ramp" if prompts.is_mask_question(state.get("question", "")) else "qa"


def score_answer(prediction: str, answers: Sequence[str], task: str) -> dict[str, float]:
    """recall: `mask_recall` over all spans (ramp) or token recall max over aliases (qa); em, f1."""
    answers = [a for a in answers if a.strip()]
    if not answers:
        return {}
    if task == "ramp":
        gold = prompts.SPAN_SEPARATOR.join(answers)
        return {
            "recall": mask_recall(prediction, answers),
            "em": exact_match(prediction, gold),
            "f1": f1(prediction, gold),
        }
    return {
        "recall": token_recall(prediction, answers),
        "em": exact_match(prediction, answers),
        "f1": f1(prediction, answers),
    }


async def judge(state: GraphState, runtime: Runtime) -> dict[str, Any]:
    ctx = context_of(runtime)
    answers = list(state.get("answers") or [])
    prediction = state.get("final_answer", "")
    scores = (
        score_answer(prediction, answers, task_of(state))
        if prediction
        else ({"recall": 0.0, "em": 0.0, "f1": 0.0} if answers else {})
    )
    accepted = (
        bool(answers)
        and state.get("status") == "answered"
        and scores.get("recall", 0.0) >= ctx.recall_threshold
    )
    update: dict[str, Any] = {}
    if ctx.judge_model and answers and prediction and accepted:
        gold = (
            prompts.SPAN_SEPARATOR.join(answers)
            if task_of(state) == "ramp"
            else " | ".join(answers)
        )
        prompt = prompts.JUDGE.substitute(
            question=state["question"], gold=gold, prediction=prediction
        )
        text, meta = await call_model(ctx, "judge", user(prompt))
        verdict = parse_verdict(text)
        scores["judge"] = 1.0 if verdict else 0.0
        accepted = verdict is True
        update["steps"] = [
            step(
                "judge",
                state.get("turn", 0),
                text,
                meta,
                parse_error="" if verdict is not None else "no clear verdict",
            )
        ]
    return {**update, "scores": scores, "accepted": accepted}
