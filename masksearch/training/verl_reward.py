"""`compute_score` for veRL / Search-R1 on our exported parquet (`masksearch export --format verl`).

Upstream veRL loads it by path:

    custom_reward_function.path=$(python -c "import masksearch.training.verl_reward as m; print(m.__file__)")
    custom_reward_function.name=compute_score

and calls `compute_score(data_source, solution_str, ground_truth, extra_info)` per response.
The score is THE project reward, `masksearch.training.rewards.hybrid_score` — the one TRL's
`hybrid` reward computes — so a run on veRL and one on TRL optimise the same thing:
`(1 - w) * answer score * length factor + w * format`, with the `span` answer score by default
(RAMP rows, `extra_info.task == "ramp"`: the strict span rule with partial credit — spans filled
in order, extra parts cost credit, so a reversed or padded span list scores below the exact one;
QA rows: token recall over the `target` aliases), the length factor of long answers and the
format term of a valid think→(search→information→think)*→answer trajectory. Settings
(`answer_metric`, `format_weight`, `length_penalty`, `max_ratio`, `slack`) come as keyword
arguments, e.g. veRL's `custom_reward_function.reward_kwargs`.

The answer is the tag format's final answer (`masksearch.tagformat.final_answer`: the last
complete `<answer>`, never one inside `<information>`); none scores 0 on the answer term. When
`solution_str` is prompt + response (Search-R1's own reward manager decodes both), only the text
after the exported question counts; chat-template markers (`<|im_start|>assistant`, `<|eot_id|>`,
…) are removed before the format check.

Needs only `masksearch.scoring` / `masksearch.tagformat` / `masksearch.training.rewards`
(stdlib-only modules): in a veRL environment `pip install --no-deps masksearch` is enough.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from masksearch.training.rewards import check_hybrid_settings, hybrid_score

# The QA names Search-R1's `_select_rm_score_fn` routes to `qa_em.compute_score_em`.
SEARCH_R1_SOURCES = (
    "nq",
    "triviaqa",
    "popqa",
    "hotpotqa",
    "2wikimultihopqa",
    "musique",
    "bamboogle",
)
QUESTION_MARK = "Question: "  # the exported prompt ends with "Question: <question>\n"

# chat-template glue a decoded response may hold: a role header with its special tokens, or a
# lone special token (`<|im_end|>`, `<|eot_id|>`, `</s>`)
_ROLE_HEADER = re.compile(
    r"<\|im_start\|>\s*\w+|<\|start_header_id\|>\s*\w+\s*<\|end_header_id\|>", re.IGNORECASE
)
_SPECIAL = re.compile(r"<\|[^<>|]{1,40}\|>|</?s>")


def _response_part(solution_str: str, extra_info: Mapping[str, Any] | None) -> str:
    question = str((extra_info or {}).get("question") or "")
    marker = f"{QUESTION_MARK}{question}" if question else ""
    if marker and marker in solution_str:
        return solution_str.rsplit(marker, 1)[1]
    return solution_str


def strip_template(text: str) -> str:
    """The response without chat-template markers (role headers, special tokens)."""
    return _SPECIAL.sub("\n", _ROLE_HEADER.sub("\n", text))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Mapping[str, Any],
    extra_info: Mapping[str, Any] | None = None,
    *,
    answer_metric: str = "span",
    format_weight: float = 0.2,
    length_penalty: bool = True,
    max_ratio: float = 2.0,
    slack: int = 2,
    **_: Any,
) -> float:
    """veRL's custom reward signature (see the module docstring)."""
    check_hybrid_settings(answer_metric, format_weight)
    response = strip_template(_response_part(solution_str, extra_info))
    task = str((extra_info or {}).get("task") or "")
    spans = _as_list(ground_truth.get("spans"))
    ramp = task == "ramp" and bool(spans)
    gold = spans if ramp else _as_list(ground_truth.get("target"))
    return float(
        hybrid_score(
            response,
            gold,
            ramp,
            answer_metric=answer_metric,
            format_weight=format_weight,
            length_penalty=length_penalty,
            max_ratio=max_ratio,
            slack=slack,
        )
    )
