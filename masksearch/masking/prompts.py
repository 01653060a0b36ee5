"""Prompt templates for RAMP masking (to be merged into masksearch/prompts.py by the lead)."""

from __future__ import annotations

# The instruction appended to every masked passage; answers list the spans in order, " ; "-joined.
RAMP_INSTRUCTION = (
    "Fill in all the [mask] and output the masked spans in order, separated by \" ; \"."
)

RAMP_QUESTION_TEMPLATE = "{masked_text}\n\n" + RAMP_INSTRUCTION

# Used when the passage never names its subject (title): otherwise the task is underdetermined.
RAMP_TITLED_QUESTION_TEMPLATE = "Title: {title}\n{masked_text}\n\n" + RAMP_INSTRUCTION

SPAN_EXTRACTION_SYSTEM = (
    "You select salient spans of an encyclopedia passage for a fill-in-the-blank search task. "
    "You answer with JSON only."
)

SPAN_EXTRACTION_USER = """Passage title: {title}
Passage:
\"\"\"{text}\"\"\"

List the knowledge spans of the passage that a reader could NOT infer from the rest of the passage
and would need to look up: people, places, organizations, events, works, dates, numbers with units
and short domain terms.
Rules:
- Copy each span EXACTLY as it appears in the passage (same spelling and case), whole words only.
- Keep spans short and fine-grained (at most 6 words); do not include the title "{title}".
- Do not list a span that appears more than once in the passage. List each span once.
- label is one of PERSON, ORG, LOC, DATE, NUMBER, TERM, ENTITY.
- Give up to {max_spans} spans, in order of appearance.

Answer with exactly one JSON object and nothing else:
{{"spans": [{{"text": "...", "label": "..."}}]}}"""
