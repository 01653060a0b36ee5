"""Evaluation-only prompts (RAG-PE answer prompt, FreshQA-style relaxed judge).

Named `string.Template`s like `masksearch.prompts`; to be merged into it later.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import Template

RAG_PE_SYSTEM = (
    "You answer questions using the retrieved documents and your own knowledge. Think briefly "
    "inside <think> and </think>, then give only the final answer inside <answer> and </answer>: "
    "a short span (a name, date, number or phrase), not a sentence."
)

RAG_PE_USER = Template(
    "Retrieved documents:\n$docs\n\nQuestion: $question\n\n"
    "Format:\n<think>...</think>\n<answer>...</answer>"
)

# FreshEval "relaxed" rules (Vu et al., 2023), restated: the primary answer must be right;
# extra hallucinated or outdated detail is tolerated unless it contradicts the primary answer.
JUDGE_RELAXED = Template(
    "You grade a response to a question under relaxed evaluation. Credit the response only if its "
    "primary or final answer, standing alone, is accurate according to the correct answer(s), or "
    "the correct answer can obviously be inferred from it, and it is stated confidently. Extra "
    "information may be outdated or hallucinated as long as it does not contradict the primary "
    "answer or change how it is perceived. For a question with a false premise, the response must "
    "point out the false premise. Names of people and entities must be complete or commonly "
    "recognised (\"Jeff\" is not \"Jeff Bezos\"). Approximate numbers are not accepted unless the "
    "correct answers include them. Ill-formed or non-English responses are fine.\n\n"
    "Examples:\n\n"
    "question: Which language has the third largest population by number of native speakers?\n"
    "correct answer(s): English\n"
    "response: 1. Mandarin 2. Spanish 3. English\n"
    "comment: The correct answer can be inferred from the list.\n"
    "evaluation: correct\n\n"
    "question: How many books has Colleen Hoover published?\n"
    "correct answer(s): 25 books | 25\n"
    "response: She has published over 20 books and novellas.\n"
    "comment: An approximate number that is not among the correct answers.\n"
    "evaluation: incorrect\n\n"
    "question: Is Tesla's stock price above $$250 a share?\n"
    "correct answer(s): Yes\n"
    "response: Yes, it is. The stock price is currently at $$207.\n"
    "comment: The additional information contradicts the primary answer.\n"
    "evaluation: incorrect\n\n"
    "Now grade this one. Write one line starting with \"comment:\" and then, on the last line, "
    "exactly \"evaluation: correct\" or \"evaluation: incorrect\".\n\n"
    "question: $question\n"
    "correct answer(s): $golds\n"
    "response: $response\n"
)


def rag_pe_messages(question: str, docs_text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": RAG_PE_SYSTEM},
        {"role": "user", "content": RAG_PE_USER.substitute(docs=docs_text or "(no documents)",
                                                           question=question.strip())},
    ]


def judge_prompt(question: str, golds: Sequence[str], response: str) -> str:
    return JUDGE_RELAXED.substitute(question=question.strip(), golds=" | ".join(golds),
                                    response=" ".join((response or "").split()) or "(empty)")
