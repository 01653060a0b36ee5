"""`compute_score` for veRL / Search-R1 on our exported parquet (`masksearch export --format verl`).

Upstream veRL loads it by path:

    custom_reward_function.path=$(python -c "import masksearch.training.verl_reward as m; print(m.__file__)")
    custom_reward_function.name=compute_score

and calls `compute_score(data_source, solution_str, ground_truth, extra_info)` per response.
Scores: RAMP rows (`extra_info.task == "ramp"`) get the token-level recall of the masked spans
(`masksearch.scoring` — the MaskSearch reward); QA rows get exact match over the `target`
alternatives (Search-R1's `qa_em`). The answer is the tag format's final answer
(`masksearch.tagformat.final_answer`: the last complete `<answer>`, never one inside
`<information>`); none scores 0. When `solution_str` is prompt + response (Search-R1's own reward
manager decodes both), only the text after the exported question counts.

Needs only `masksearch.scoring` / `masksearch.tagformat` (stdlib-only modules): in a veRL
environment `pip install --no-deps masksearch` is enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from masksearch.scoring import exact_match, mask_recall
from masksearch.tagformat import final_answer

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


def _response_part(solution_str: str, extra_info: Mapping[str, Any] | None) -> str:
    question = str((extra_info or {}).get("question") or "")
    marker = f"{QUESTION_MARK}{question}" if question else ""
    if marker and marker in solution_str:
        return solution_str.rsplit(marker, 1)[1]
    return solution_str


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
    **_: Any,
) -> float:
    """veRL's custom reward signature (see the module docstring)."""
    answer = final_answer(_response_part(solution_str, extra_info))
    if not answer:
        return 0.0
    task = str((extra_info or {}).get("task") or "")
    spans: Sequence[str] = _as_list(ground_truth.get("spans"))
    if task == "ramp" and spans:
        return float(mask_recall(answer, list(spans)))
    return float(exact_match(answer, _as_list(ground_truth.get("target"))))
