"""Every prompt as a named template (`string.Template`, `$field` placeholders).

The graph, the SFT/RL exporters and eval all render through here, so the student sees at
training time exactly what it sees at inference time. Templates work for both tasks:
RAMP mask filling (the question holds `[mask]` tokens; the answer lists the spans in order,
separated by " ; ") and multi-hop QA (a short answer span).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from string import Template
from typing import Any

MASK_TOKEN = "[mask]"
SPAN_SEPARATOR = " ; "

# What a teacher role reads for a question without [mask] (a small model copies the RAMP example
# "Paris ; 1889" into a plain answer otherwise).
QA_ANSWER_RULES = "Answer with a short span (a name, date, number or phrase), not a sentence."
# ... and for a masked passage: the RAMP notes (`RAMP_PLANNER`, `RAMP_OBSERVER`) that follow say
# the rest, so the rule stays one line (every prompt line is read again for every example)
RAMP_ANSWER_RULES = 'Answer with the masked spans only, in order, separated by " ; ".'

# The student (single-agent) prompt, one per task: a plain question never sees the RAMP instruction
# and neither prompt holds an example answer a model could copy (a trained SmolLM2 answered
# "Paris ; 1889", the old prompt's RAMP example, to an unrelated question). Each holds exactly ONE
# complete `<answer>…</answer>`: "<answer> and </answer>", whose content ("and") is no answer;
# Search-R1's reward decodes prompt + response and takes the last of >= 2 matches, so a response
# without an answer scores 0 and one with an answer is read. `STUDENT_PROMPT_EXAMPLES` lists every
# answer a student prompt shows; `masksearch.scoring.is_prompt_example` scores a copy of one as
# no answer, so it can never be right.
_STUDENT_HEAD = (
    "You are a search agent. Solve the user's question step by step. Reason inside <think> and "
    "</think> first, every time you get new information. If you lack knowledge, call the search "
    "engine with <search> query </search> (one query per line, several lines allowed); the results "
    "come back between <information> and </information>. Search as often as you need. When you "
    "can answer, write the final answer inside <answer> and </answer> without further explanation"
)
STUDENT_QA_SYSTEM = Template(
    _STUDENT_HEAD + ": a short span (a name, date, number or phrase), not a sentence."
)
STUDENT_RAMP_SYSTEM = Template(
    _STUDENT_HEAD + ". The question is a passage in which [mask] tokens hide words; they cannot be "
    "known without searching. Answer with the hidden words only, one span per [mask] in order of "
    'appearance, separated by " ; ".'
)
# Every teacher prompt starts with the question: a local model's prompt cache then reuses it from
# one role's call to the next (masksearch.models.llamacpp).
PLANNER = Template(
    "Question:\n$question\n\n"
    "You are the planner of a search team. Break the question into the first thing to look up.\n"
    "$rules\n\n"
    "Write your reasoning inside <think></think> in one or two short, complete sentences: what "
    "is missing and what to look up first. Then either give the first sub-query as one "
    "natural-language sentence inside "
    "<search></search>, or, only if you are certain without searching, the final answer inside "
    "<answer></answer>.\n"
    "Format:\n<think>...</think>\n<search>...</search>"
)

REWRITER = Template(
    "Question:\n$question\n\n"
    "You rewrite a search sub-query into up to $num_rewrites keyword-style web search queries that "
    "together retrieve the needed facts (synonyms, the key entity alone, a more specific form).\n\n"
    "Sub-query:\n$subquery\n\n"
    "Reply with one JSON object and nothing else, e.g.\n"
    '{"queries": ["first query", "second query", "third query"]}'
)

_OBSERVER_HEAD = (
    "Question:\n$question\n\n"
    "You are the observer of a search team. Read the new search results, keep what is relevant, "
    "and decide the next step.\n$rules\n\n"
    "Progress so far:\n$history\n\n"
    "Latest sub-query: $subquery\nSearch queries: $queries\n"
    "Search results:\n$observation\n\n"
)
OBSERVER = Template(
    _OBSERVER_HEAD
    + "Inside <think></think>, in a few short, complete sentences: say which result establishes "
    "what (ignore irrelevant hits; quote its words for the answer), whether the sub-query is "
    "resolved, and, if you search again, what is still missing and why the new sub-query should "
    "find it. Then do ONE of:\n"
    "- answer, if the facts now suffice: <answer>...</answer>\n"
    "- search the next sub-query (or, if this one failed, a reformulated one after reflecting on "
    "why): <search>...</search>\n"
    "$budget"
)

# The observer of a masked passage on a model that decodes under grammars: it only chooses (answer
# or one more search); the node writes its thought from that choice and the results
# (`masksearch.nodes.evidence`), and the spans are then copied blank by blank (`RAMP_FILL`).
OBSERVER_RAMP_CHOICE = Template(
    _OBSERVER_HEAD
    + "The question is a passage with $k hidden span(s), [mask 1] … [mask $k]. If one of the "
    "search results is the same passage (the same wording around the masks), reply <answer>: its "
    "hidden words are then copied from it. Otherwise search again with one short keyword query of "
    "distinctive words from the passage that the results did not match: "
    "<search>...</search>\n$budget"
)

# A plain question on a model that decodes under grammars, as for a masked passage: the planner and
# the observer only choose (a keyword query, or to answer), the node composes their thoughts
# (`masksearch.nodes.evidence`), and the answer is copied from a result (`QA_EXTRACT`).
PLANNER_QA_QUERY = Template(
    "Question:\n$question\n\n"
    "You are the planner of a search team. Reply with one short keyword query (the names, "
    "titles, places and dates of the question) that should find a search result stating the "
    "answer: <search>...</search>"
)
OBSERVER_QA_CHOICE = Template(
    _OBSERVER_HEAD
    + "If one of the search results states the answer to the question, reply with the few words "
    "of that result that answer it: <answer>...</answer>. Otherwise search again with one short "
    "keyword query for what is still missing: <search>...</search>\n$budget"
)
QA_EXTRACT = Template(
    "Question:\n$question\n\nSearch results:\n$docs\n\n"
    "Copy from the search results the few words that answer the question (a name, a date, a "
    "number or a short phrase), nothing else."
)

# The planner of a masked passage on a model that decodes under grammars: it chooses the first
# query; the node writes its thought from that query (`masksearch.nodes.evidence.plan_thought`).
PLANNER_RAMP_QUERY = Template(
    "Question:\n$question\n\n"
    "You are the planner of a search team. The [mask] words were removed from an encyclopedia "
    "passage: they cannot be known or guessed without finding the passage. Reply with one short "
    "keyword query built from the most distinctive words of the text (names, titles, places) "
    "inside <search></search>."
)

# RAMP (masked passage) additions for the teacher roles. The hidden words cannot be known without
# retrieval, so a masked example searches first; the answer copies the words from the passage found.
RAMP_PLANNER = (
    "The [mask] words were removed from an encyclopedia passage: they cannot be known or guessed "
    "without searching. Do not answer yet: think, then search with one short keyword query built "
    "from the most distinctive words of the text (names, titles, places)."
)

RAMP_OBSERVER = Template(
    "The question is a passage with $k hidden span(s): [mask 1] … [mask $k], in order.\n"
    "If one of the search results is the same passage (same wording around the masks), copy for "
    "each mask, in order, the exact words it hides from that result. $how Answer with exactly $k "
    'span(s) separated by " ; ", e.g. <answer>$example</answer>.$fallback'
)


# RAMP, one blank at a time (models that decode under grammars: `masksearch.nodes.ramp`). Appended to
# the reader's own prompt, so the search results it has read are a reused prompt prefix.
RAMP_WHICH_DOC = (
    "Which search result is the same passage as the question's text (the same wording around the "
    "[mask]s)? Reply with its number."
)
# The source passage alone, for copying the blanks once a result is known to hold the wording
# around every one of them (`masksearch.nodes.multi_agent.ramp_choice`): the other results and
# the observer's instructions need not be read again.
RAMP_SOURCE = Template("Question:\n$question\n\nSearch result:\n$doc")
RAMP_FILL = Template(
    "Doc $doc is the same passage. Copy from Doc $doc the words hidden by [mask $i], between "
    '"$left" and "$right": continue the phrase exactly as Doc $doc writes it.'
)


def mask_context(
    question: str, filled: Sequence[str], i: int, *, left_words: int = 8, right_words: int = 2
) -> tuple[str, str]:
    """(the words before blank `i` — earlier blanks replaced by `filled` —, the first words after
    it, up to the next blank). A reader continuing the left phrase from the source passage writes
    the hidden words and then the right words, which end the span."""
    parts = re.split(re.escape(MASK_TOKEN), masked_text(question), flags=re.IGNORECASE)
    left = "".join(p + f for p, f in zip(parts[:i], filled, strict=False)) + parts[i]
    left = " ".join(left.rstrip().split(" ")[-left_words:])
    after = parts[i + 1] if i + 1 < len(parts) else ""
    words = after.split()
    right = " ".join(words[:right_words])
    if after[:1] in ",.;:)!?'\"" and words:  # punctuation right after the blank ends it
        right = words[0]
    return left, right


def masked_text(question: str) -> str:
    """The passage part of a RAMP question (without the fill-in instruction)."""
    return question.replace(RAMP_INSTRUCTION, "").strip()


def number_masks(question: str) -> str:
    """`… [mask] … [mask] …` → `… [mask 1] … [mask 2] …` (the teacher's view of the blanks)."""
    parts = re.split(re.escape(MASK_TOKEN), masked_text(question), flags=re.IGNORECASE)
    out = [parts[0]]
    for i, part in enumerate(parts[1:], 1):
        out.append(f"[mask {i}]{part}")
    return "".join(out)


def count_masks(question: str) -> int:
    """How many spans a RAMP question hides (its `k`)."""
    return masked_text(question).lower().count(MASK_TOKEN)


def ramp_observer_note(question: str, *, may_search: bool = True) -> str:
    """The RAMP instructions of the observer (`may_search=False`: the forced answer, no think)."""
    k = count_masks(question)
    example = " ; ".join(f"words of mask {i}" for i in range(1, k + 1))
    how = (
        "Inside <think></think> name the matching result and the words for each mask."
        if may_search
        else "Use the closest result if none matches exactly."
    )
    fallback = (
        " If no result matches, search again with other distinctive words." if may_search else ""
    )
    return RAMP_OBSERVER.substitute(k=k, example=example, how=how, fallback=fallback)


OBSERVER_BUDGET = Template("Search rounds left after this one: $left.")
OBSERVER_LAST = "This was the last search round: you must answer now with <answer>...</answer>."

FORCE_ANSWER = Template(
    "The search budget is used up. Answer the question from the information gathered; if a fact "
    "is still missing, give your best guess from your own knowledge.\n$rules\n\n"
    "Question:\n$question\n\nProgress so far:\n$history\n\n"
    "Reply with the answer only:\n<answer>...</answer>"
)

AGENT_FORCE_ANSWER = (
    "You have used all your searches. Give your final answer now, inside <answer> and </answer>."
)

INVALID_ACTION = (
    "My previous action is invalid. If I want to search, I should put the query between <search> "
    "and </search>. If I want to give the final answer, I should put the answer between <answer> "
    "and </answer>. Let me try again."
)


def _answer_examples(*texts: str) -> tuple[str, ...]:
    found = (
        " ".join(m.split())
        for t in texts
        for m in re.findall(r"<answer>(.*?)</answer>", t, re.DOTALL | re.IGNORECASE)
    )
    return tuple(dict.fromkeys(found))


# Every answer the student's messages show (a complete `<answer>` tag's content): a reply that
# copies one is no answer (`masksearch.scoring.is_prompt_example`).
STUDENT_PROMPT_EXAMPLES: tuple[str, ...] = _answer_examples(
    STUDENT_QA_SYSTEM.template, STUDENT_RAMP_SYSTEM.template, AGENT_FORCE_ANSWER, INVALID_ACTION
)

JUDGE = Template(
    "You grade a model's answer against the reference answer.\n\n"
    "Question:\n$question\n\nReference answer:\n$gold\n\nModel answer:\n$prediction\n\n"
    "The model answer is correct if it states the same facts as the reference (for [mask] "
    "questions: every masked span, in order; paraphrases and aliases count). Reply with exactly "
    "one verdict: <verdict>correct</verdict> or <verdict>incorrect</verdict>."
)


def is_mask_question(question: str) -> bool:
    return MASK_TOKEN in question.lower()


def answer_rules(question: str) -> str:
    """The answer rules in a teacher role's prompt (`$rules`): the masked spans in order for a
    masked passage (its RAMP note gives the details), a short span otherwise."""
    return RAMP_ANSWER_RULES if is_mask_question(question) else QA_ANSWER_RULES


def planner_prompt(question: str) -> str:
    """The planner's prompt; a masked passage adds `RAMP_PLANNER` (search first: the hidden words
    are unknowable without retrieval)."""
    prompt = PLANNER.substitute(question=question, rules=answer_rules(question))
    return prompt + "\n" + RAMP_PLANNER if count_masks(question) else prompt


def student_system_prompt(question: str, task: str | None = None) -> str:
    """The student's system prompt for this question: the RAMP prompt for a masked passage (or
    `task="ramp"`), the QA prompt otherwise."""
    ramp = task == "ramp" if task else is_mask_question(question)
    return (STUDENT_RAMP_SYSTEM if ramp else STUDENT_QA_SYSTEM).substitute()


def render_student_prompt(question: str, task: str | None = None) -> list[dict[str, str]]:
    """The single-agent (student) prompt: system + user question. The graph's student step, the
    RL rollout, the exporters and eval all render it here."""
    return [
        {"role": "system", "content": student_system_prompt(question, task)},
        {"role": "user", "content": question.strip()},
    ]


# Action tags as a model might read them in retrieved text: any case, whitespace inside the
# brackets, HTML entities for the brackets and slash. Matched on a length-preserving fold of the
# text (see `_fold`) so full-width `＜／information＞`, small-form and math-letter variants match too.
_LT = r"(?:<|&lt;?|&#0*60;?|&#x0*3c;?)"
_GT = r"(?:>|&gt;?|&#0*62;?|&#x0*3e;?)"
_SLASH = r"(?:/|&sol;|&#0*47;?|&#x0*2f;?)"
_AGENT_TAG = re.compile(
    rf"{_LT}\s*(?P<slash>{_SLASH}\s*)?(?P<name>think|search|information|answer)(?![a-z])"
    rf"(?:\s*{_GT})?",
    re.IGNORECASE,
)
# Look-alikes of <, > and / that a tokenizer or model may read as the ASCII character.
_LOOKALIKES = {
    **dict.fromkeys(map(ord, "\u2039\u2329\u27e8\u3008\ufe64\uff1c"), "<"),
    **dict.fromkeys(map(ord, "\u203a\u232a\u27e9\u3009\ufe65\uff1e"), ">"),
    **dict.fromkeys(map(ord, "\u2044\u2215\u29f8\uff0f"), "/"),
}


def _fold_char(ch: str) -> str:
    mapped = _LOOKALIKES.get(ord(ch))
    if mapped is not None:
        return mapped
    folded = unicodedata.normalize("NFKC", ch)
    return folded if len(folded) == 1 else ch


def _fold(text: str) -> str:
    """Same length as `text`, each character replaced by its NFKC/look-alike ASCII form."""
    return text if text.isascii() else "".join(_fold_char(ch) for ch in text)


def neutralize_tags(text: str) -> str:
    """Retrieved text is data: our action tags inside it become `[tag]` / `[/tag]`, so a passage
    can never close the `<information>` block or inject a `<search>`/`<answer>` into the
    trajectory. Variants count as tags too: any case, `</information >`, `< answer>`, full-width
    or other look-alike brackets, and HTML entities (`&lt;/information&gt;`, `&#60;`, `&#x3c;`).
    Invisible format characters (zero-width spaces, bidi overrides) are removed first, so they
    cannot hide a tag."""
    text = (
        "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
        if not text.isascii()
        else text
    )
    folded = _fold(text)
    out, pos = [], 0
    for m in _AGENT_TAG.finditer(folded):
        out.append(text[pos : m.start()])
        out.append(f"[{'/' if m.group('slash') else ''}{m.group('name')}]")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def format_docs(passages: Sequence[Any], start: int = 1) -> str:
    """Search-R1 observation body: `Doc i(Title: T) text`, one passage per line, numbered from
    `start`."""
    lines = []
    for i, p in enumerate(passages, start):
        title, text = _field(p, "title"), _field(p, "text")
        lines.append(neutralize_tags(f"Doc {i}(Title: {title}) {' '.join(text.split())}"))
    return "\n".join(lines)


def information_block(docs_text: str) -> str:
    return f"<information>{docs_text}</information>"


def assistant_search_turn(think: str, queries: Iterable[str]) -> str:
    return f"<think>{think.strip()}</think>\n<search>{chr(10).join(queries)}</search>"


def assistant_answer_turn(think: str, answer: str) -> str:
    return f"<think>{think.strip()}</think>\n<answer>{answer.strip()}</answer>"


def render_history(rounds: Sequence[Mapping[str, Any]]) -> str:
    """Observer/force-answer view of ALL earlier rounds: sub-query, queries and observer summary."""
    if not rounds:
        return "(nothing yet)"
    parts = []
    for i, r in enumerate(rounds, 1):
        summary = r.get("summary") or "(no summary)"
        parts.append(
            f"Round {i}: sub-query: {r.get('subquery') or '; '.join(r.get('queries', []))}\n"
            f"  queries: {'; '.join(r.get('queries', []))}\n  summary: {summary}"
        )
    return "\n".join(parts)


def _field(p: Any, name: str) -> str:
    return str(p.get(name, "") if isinstance(p, Mapping) else getattr(p, name, ""))


# --- RAMP masking -------------------------------------------------------------------------------

# Appended to every masked passage; answers list the spans in order, " ; "-joined.
RAMP_INSTRUCTION = (
    'Fill in all the [mask] and output the masked spans in order, separated by " ; ".'
)

RAMP_QUESTION = Template("$masked_text\n\n" + RAMP_INSTRUCTION.replace("$", "$$"))

# Used when the passage never names its subject (title): otherwise the task is underdetermined.
RAMP_TITLED_QUESTION = Template(
    "Title: $title\n$masked_text\n\n" + RAMP_INSTRUCTION.replace("$", "$$")
)

SPAN_EXTRACTION_SYSTEM = (
    "You select salient spans of an encyclopedia passage for a fill-in-the-blank search task. "
    "You answer with JSON only."
)

SPAN_EXTRACTION_USER = Template("""Passage title: $title
Passage:
\"\"\"$text\"\"\"

List the knowledge spans of the passage that a reader could NOT infer from the rest of the passage
and would need to look up: people, places, organizations, events, works, dates, numbers with units
and short domain terms.
Rules:
- Copy each span EXACTLY as it appears in the passage (same spelling and case), whole words only.
- Keep spans short and fine-grained (at most 6 words); do not include the title "$title".
- Do not list a span that appears more than once in the passage. List each span once.
- label is one of PERSON, ORG, LOC, DATE, NUMBER, TERM, ENTITY.
- Give up to $max_spans spans, in order of appearance.

Answer with exactly one JSON object and nothing else:
{"spans": [{"text": "...", "label": "..."}]}""")


# --- Evaluation baselines and judge --------------------------------------------------------------

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
    'recognised ("Jeff" is not "Jeff Bezos"). Approximate numbers are not accepted unless the '
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
    'Now grade this one. Write one line starting with "comment:" and then, on the last line, '
    'exactly "evaluation: correct" or "evaluation: incorrect".\n\n'
    "question: $question\n"
    "correct answer(s): $golds\n"
    "response: $response\n"
)


def rag_pe_messages(question: str, docs_text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": RAG_PE_SYSTEM},
        {
            "role": "user",
            "content": RAG_PE_USER.substitute(
                docs=docs_text or "(no documents)", question=question.strip()
            ),
        },
    ]


def judge_prompt(question: str, golds: Sequence[str], response: str) -> str:
    return JUDGE_RELAXED.substitute(
        question=question.strip(),
        golds=" | ".join(golds),
        response=" ".join((response or "").split()) or "(empty)",
    )
