"""Judge node: rule scores and the acceptance rule (`masksearch.scoring`), then the optional
strict LLM verdict → `accepted`."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from masksearch import prompts
from masksearch.context import Context
from masksearch.nodes.common import call_model, context_of, step, user
from masksearch.resources import Resources
from masksearch.scoring import answer_correct, gold_text, parse_verdict, score_answer, task_of
from masksearch.state import GraphState


async def judge(
    state: GraphState, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    ctx = context_of(runtime)
    answers = list(state.get("answers") or [])
    prediction = state.get("final_answer", "")
    task = task_of(state)
    scores = score_answer(prediction, answers, task)
    accepted = (
        bool(answers)
        and state.get("status") == "answered"
        and answer_correct(prediction, answers, task, recall_threshold=ctx.recall_threshold)
    )
    update: dict[str, Any] = {}
    if ctx.judge_model and answers and prediction and accepted:
        prompt = prompts.JUDGE.substitute(
            question=state["question"], gold=gold_text(answers, task), prediction=prediction
        )
        text, meta = await call_model(
            ctx, "judge", user(prompt), resources=resources, output_format="verdict"
        )
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
