"""Rule rewards with TRL's `reward_funcs` signature: `f(prompts, completions, **columns) -> list[float]`.

Columns read from the dataset: `answers` (gold spans for RAMP, aliases for QA), `task` ("ramp" |
"qa") and `k`. When the rollout passes `trajectory` (the completion as messages, tool turns
included) it is used instead of the decoded completion text. The answer is
`answer_of`: `masksearch.tagformat.final_answer` (last complete `<answer>` the model wrote; none
scores 0), and a copy of an answer the student prompt shows is no answer
(`masksearch.scoring.is_prompt_example`). Every metric, the notion of "correct" and the judge
verdict come from `masksearch.scoring`; nothing is re-implemented here.

`hybrid_score` is THE project reward of one response (answer score × length factor, plus a
format term); the TRL `hybrid` reward and veRL's `masksearch.training.verl_reward.compute_score`
both call it, so a run on either trainer optimises the same thing. Its default answer score is
`span`: for RAMP the strict span rule with partial credit (`scoring.span_score`: spans filled in
order, extra parts cost credit), for QA token recall.

`make_overlong_penalty` is DAPO's soft overlong penalty counted over the model's own tokens only
(the rollout's `env_mask` 1 tokens): retrieved `<information>` text and template glue never count.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from masksearch.prompts import SPAN_SEPARATOR
from masksearch.scoring import (
    answer_correct,
    exact_match,
    f1,
    gold_text,
    is_prompt_example,
    mask_recall,
    normalize_answer,
    span_score,
    token_recall,
)
from masksearch.tagformat import check_format, final_answer

RewardFn = Callable[..., list[float]]
log = logging.getLogger(__name__)


def _is_ramp(task: Any, k: Any) -> bool:
    return task == "ramp" or (task in (None, "") and bool(k))


def _rows(
    completions: Sequence[Any], kwargs: dict[str, Any]
) -> Iterator[tuple[Any, list[str], bool]]:
    """Yield (completion, answers, is_ramp) per sample."""
    trajectories = kwargs.get("trajectory")
    answers = kwargs.get("answers")
    if answers is None:
        raise ValueError("reward functions need an `answers` column in the dataset")
    tasks = kwargs.get("task") or [None] * len(completions)
    ks = kwargs.get("k") or [0] * len(completions)
    for i, comp in enumerate(completions):
        if trajectories is not None and trajectories[i] is not None:
            comp = trajectories[i]
        gold = answers[i]
        gold = [gold] if isinstance(gold, str) else [str(g) for g in gold]
        yield comp, gold, _is_ramp(tasks[i], ks[i])


# -- single-sample scores (pure) ------------------------------------------------------------


def answer_of(completion: Any) -> str | None:
    """The answer a response gives: its final `<answer>`, None when it has none or only copies a
    prompt example (`scoring.is_prompt_example`)."""
    answer = final_answer(completion)
    return None if answer is None or is_prompt_example(answer) else answer


def answer_recall(answer: str | None, gold: Sequence[str], ramp: bool) -> float:
    """RAMP: token recall of all masked spans jointly; QA: token recall, max over aliases."""
    if not answer:
        return 0.0
    return mask_recall(answer, gold) if ramp else token_recall(answer, gold)


def answer_span(answer: str | None, gold: Sequence[str], ramp: bool) -> float:
    """RAMP: the strict span rule with partial credit (`scoring.span_score`: order matters, extra
    parts cost credit); QA: token recall, max over aliases."""
    if not answer:
        return 0.0
    return span_score(answer, gold) if ramp else token_recall(answer, gold)


def answer_em(answer: str | None, gold: Sequence[str], ramp: bool) -> float:
    if not answer:
        return 0.0
    return exact_match(answer, SPAN_SEPARATOR.join(gold)) if ramp else exact_match(answer, gold)


def answer_f1(answer: str | None, gold: Sequence[str], ramp: bool) -> float:
    if not answer:
        return 0.0
    return f1(answer, SPAN_SEPARATOR.join(gold)) if ramp else f1(answer, gold)


def answer_is_correct(answer: str | None, gold: Sequence[str], ramp: bool) -> float:
    """1.0 when `scoring.answer_correct` accepts the answer (RAMP: every span matched in order,
    not padded — the graph's acceptance rule), else 0.0."""
    return float(answer_correct(answer, gold, "ramp" if ramp else "qa"))


def length_factor(
    answer: str | None, gold: Sequence[str], ramp: bool, *, max_ratio: float = 2.0, slack: int = 2
) -> float:
    """1.0 up to `max_ratio`×gold length (+`slack` tokens), then budget/length: long answers that
    enumerate candidates to game recall lose reward in proportion."""
    if not answer:
        return 1.0
    n = len(normalize_answer(answer).split())
    lengths = [len(normalize_answer(g).split()) for g in gold]
    gold_len = sum(lengths) if ramp else max(lengths, default=0)
    budget = max_ratio * max(gold_len, 1) + slack
    return 1.0 if n <= budget else budget / n


SCORERS: dict[str, Callable[[str | None, Sequence[str], bool], float]] = {
    "span": answer_span,
    "recall": answer_recall,
    "em": answer_em,
    "f1": answer_f1,
    "correct": answer_is_correct,
}


# -- TRL reward functions ---------------------------------------------------------------------


def _answer_reward(
    name: str, score: Callable[[str | None, Sequence[str], bool], float], doc: str
) -> RewardFn:
    """A TRL reward function named `name`: `score` of each sample's final answer."""

    def reward(
        prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any
    ) -> list[float]:
        return [score(answer_of(c), g, r) for c, g, r in _rows(completions, kwargs)]

    reward.__name__ = reward.__qualname__ = name  # TRL logs each reward under its name
    reward.__doc__ = doc
    return reward


recall_reward = _answer_reward(
    "recall_reward",
    answer_recall,
    "Token-level recall of the masked spans (RAMP) or of the gold answer (QA).",
)
em_reward = _answer_reward(
    "em_reward",
    answer_em,
    "Exact match (SQuAD normalisation; RAMP compares the ` ; `-joined span list).",
)
f1_reward = _answer_reward(
    "f1_reward", answer_f1, "Token F1 with the HotpotQA yes/no rule, max over aliases."
)
correct_reward = _answer_reward(
    "correct_reward",
    answer_is_correct,
    "1.0 for a correct answer by the acceptance rule (`masksearch.scoring.answer_correct`).",
)


def format_reward(
    prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any
) -> list[float]:
    """1.0 for a valid think→(search→information→think)*→answer trajectory, else 0.0."""
    out = []
    for comp in kwargs.get("trajectory") or completions:
        out.append(1.0 if check_format(comp)[0] else 0.0)
    return out


def length_penalty_reward(
    prompts: Sequence[Any] | None = None,
    completions: Sequence[Any] = (),
    *,
    max_ratio: float = 2.0,
    slack: int = 2,
    **kwargs: Any,
) -> list[float]:
    """0 for answers within budget, down to -1 for answers far longer than the gold spans."""
    return [
        length_factor(answer_of(c), g, r, max_ratio=max_ratio, slack=slack) - 1.0
        for c, g, r in _rows(completions, kwargs)
    ]


def make_judge_reward(
    chat_model: Any, *, timeout_s: float | None = 60.0, batch_size: int = 16
) -> RewardFn:
    """Model-judge reward: 1.0 when the judge says "correct" (prompt `masksearch.prompts.JUDGE`).

    All completions of a call are judged in batches of `batch_size` (`chat_model.batch`, run
    concurrently); a batch that fails or takes longer than `timeout_s` scores 0 and is logged —
    the training step always goes on. Verdicts are cached by (question, answer, gold), so dynamic
    sampling's scoring and the trainer's do not judge the same answer twice."""
    from masksearch.prompts import JUDGE
    from masksearch.scoring import parse_verdict

    cache: dict[tuple[str, str, str], float] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge")

    def _judge_batch(prompts: list[str]) -> list[float]:
        if hasattr(chat_model, "batch"):  # LangChain chat models: concurrent calls
            replies = chat_model.batch(
                prompts, config={"max_concurrency": batch_size}, return_exceptions=True
            )
        else:
            replies = []
            for p in prompts:
                try:
                    replies.append(chat_model.invoke(p))
                except Exception as e:
                    replies.append(e)
        out = []
        for reply in replies:
            if isinstance(reply, BaseException):
                log.warning("judge call failed (scored 0): %s", type(reply).__name__)
                out.append(0.0)
            else:
                out.append(1.0 if parse_verdict(getattr(reply, "content", str(reply))) else 0.0)
        return out

    def judge_reward(
        prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any
    ) -> list[float]:
        questions = kwargs.get("question") or [None] * len(completions)
        out = [0.0] * len(completions)
        todo: list[tuple[int, tuple[str, str, str], str]] = []
        for i, (comp, gold, ramp) in enumerate(_rows(completions, kwargs)):
            answer = answer_of(comp)
            if not answer:
                continue
            gold_str = gold_text(gold, "ramp" if ramp else "qa")
            key = (questions[i] or "", answer, gold_str)
            if key in cache:
                out[i] = cache[key]
                continue
            prompt = JUDGE.substitute(question=key[0], prediction=answer, gold=gold_str)
            todo.append((i, key, prompt))
        for start in range(0, len(todo), max(1, batch_size)):
            chunk = todo[start : start + max(1, batch_size)]
            future = pool.submit(_judge_batch, [p for _, _, p in chunk])
            try:
                scores = future.result(timeout=timeout_s)
            except concurrent.futures.TimeoutError:
                log.warning(
                    "judge batch of %d timed out after %ss: scored 0", len(chunk), timeout_s
                )
                continue
            except Exception as e:  # a judge outage must not end the training step
                log.warning("judge batch failed (%s): scored 0", type(e).__name__)
                continue
            for (i, key, _), score in zip(chunk, scores, strict=True):
                out[i] = cache[key] = score
        return out

    return judge_reward


DEFAULT_ANSWER_METRIC = "span"


def hybrid_score(
    completion: Any,
    gold: Sequence[str],
    ramp: bool,
    *,
    answer_metric: str = DEFAULT_ANSWER_METRIC,
    format_weight: float = 0.2,
    length_penalty: bool = True,
    max_ratio: float = 2.0,
    slack: int = 2,
    score: float | None = None,
) -> float:
    """THE reward of one response: `(1 - w) * score * length_factor + w * format`. `score` is the
    answer score by `answer_metric` unless given (a judge's verdict); `format` is 1 for a valid
    think→(search→information→think)*→answer trajectory (`tagformat.check_format`)."""
    answer = answer_of(completion)
    if score is None:
        score = SCORERS[answer_metric](answer, gold, ramp)
    lf = (
        length_factor(answer, gold, ramp, max_ratio=max_ratio, slack=slack)
        if length_penalty
        else 1.0
    )
    fmt = 1.0 if check_format(completion)[0] else 0.0
    return (1.0 - format_weight) * score * lf + format_weight * fmt


def check_hybrid_settings(answer_metric: str, format_weight: float, *, judge: bool = False) -> None:
    if not 0.0 <= format_weight <= 1.0:
        raise ValueError("format_weight must be in [0, 1]")
    if answer_metric == "judge" and not judge:
        raise ValueError("answer_metric='judge' needs a judge reward (make_judge_reward)")
    if answer_metric not in SCORERS and answer_metric != "judge":
        raise ValueError(
            f"unknown answer_metric {answer_metric!r}; choose {sorted(SCORERS)} or judge"
        )


def make_hybrid_reward(
    *,
    answer_metric: str = DEFAULT_ANSWER_METRIC,
    format_weight: float = 0.2,
    length_penalty: bool = True,
    max_ratio: float = 2.0,
    slack: int = 2,
    judge: RewardFn | None = None,
) -> RewardFn:
    """`hybrid_score` as a TRL reward, the answer score from `answer_metric` (span | recall | em |
    f1 | correct | judge). With w = 0.2 this gives Search-R1 v0.3's table: correct+valid 1,
    correct+invalid 0.8, wrong+valid 0.2, wrong+invalid 0."""
    check_hybrid_settings(answer_metric, format_weight, judge=judge is not None)
    settings = dict(
        answer_metric=answer_metric if answer_metric != "judge" else DEFAULT_ANSWER_METRIC,
        format_weight=format_weight,
        length_penalty=length_penalty,
        max_ratio=max_ratio,
        slack=slack,
    )

    def hybrid_reward(
        prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any
    ) -> list[float]:
        rows = list(_rows(completions, kwargs))
        scores: list[float | None] = [None] * len(rows)
        if judge is not None and answer_metric == "judge":
            scores = list(judge(prompts=prompts, completions=completions, **kwargs))
        return [
            hybrid_score(comp, gold, ramp, score=score, **settings)  # type: ignore[arg-type]
            for (comp, gold, ramp), score in zip(rows, scores, strict=True)
        ]

    return hybrid_reward


def make_overlong_penalty(max_tokens: int, buffer: int, penalty: float = 1.0) -> RewardFn:
    """DAPO's soft overlong penalty over the MODEL's tokens: 0 up to `max_tokens - buffer`, then
    linear down to `-penalty` at `max_tokens`, `-penalty` beyond. The count is the rollout's
    `model_tokens` column (or the `env_mask` 1 tokens): retrieved `<information>` text and the
    template glue around it never count, so searching more is not punished as if the model had
    written the passages. Without either column every completion token counts (no tool turns)."""
    if buffer <= 0 or buffer > max_tokens:
        raise ValueError("overlong buffer must be in [1, max_tokens]")
    start = max_tokens - buffer

    def overlong_penalty(
        prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any
    ) -> list[float]:
        counts = kwargs.get("model_tokens")
        if counts is None and kwargs.get("env_mask") is not None:
            counts = [sum(int(x) for x in m) for m in kwargs["env_mask"]]
        if counts is None:
            counts = [len(ids) for ids in kwargs.get("completion_ids") or []]
        return [0.0 if n <= start else -penalty * min(1.0, (n - start) / buffer) for n in counts]

    return overlong_penalty


REWARDS: dict[str, RewardFn] = {
    "recall": recall_reward,
    "em": em_reward,
    "f1": f1_reward,
    "correct": correct_reward,
    "format": format_reward,
    "length_penalty": length_penalty_reward,
}


def build_reward_funcs(
    names: Sequence[str],
    *,
    hybrid: dict[str, Any] | None = None,
    judge_model: Any = None,
    judge_timeout_s: float | None = 60.0,
    judge_batch_size: int = 16,
) -> list[RewardFn]:
    """Reward functions by name (`recall`, `em`, `f1`, `correct`, `format`, `length_penalty`, `judge`, `hybrid`)."""
    judge = (
        make_judge_reward(judge_model, timeout_s=judge_timeout_s, batch_size=judge_batch_size)
        if judge_model is not None
        else None
    )
    funcs: list[RewardFn] = []
    for name in names:
        if name == "hybrid":
            funcs.append(make_hybrid_reward(judge=judge, **(hybrid or {})))
        elif name == "judge":
            if judge is None:
                raise ValueError("the judge reward needs `judge_model` (a chat model spec)")
            funcs.append(judge)
        elif name in REWARDS:
            funcs.append(REWARDS[name])
        else:
            raise ValueError(
                f"unknown reward {name!r}; choose {sorted([*REWARDS, 'hybrid', 'judge'])}"
            )
    return funcs
