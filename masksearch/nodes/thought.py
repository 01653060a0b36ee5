"""A teacher call that thinks, then acts, with its thought bounded by tokens and complete.

A model that decodes under grammars (local llama.cpp) gets the role's thinking format (at most
`grammars.THINK_SENTENCES` sentences, each ending at a sentence end, in the scripts of what the
role read: `masksearch.grammars.thinking`) and a token budget: the thought's
(`grammars.THINK_TOKENS`) plus the action's. A reply cut by that budget is completed by continuing the same assistant turn
(its prompt is a reused prefix):

- the thought closed, the action cut: the action is asked for again after `</think>`;
- the thought cut: it is cut back to its last complete sentence and closed, and the action asked
  for after it; a thought cut inside its first sentence may finish that sentence
  (`grammars.thought_tail`, a few more words) before `</think>`.

A continuation's budget covers the longest text its grammar allows, so it always completes.

So a stored thought never stops mid-sentence or mid-word however long the model writes. Models
without grammar support get the prompt alone; their thought is cut back to its last complete
sentence when it has one (`complete_thought`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from masksearch import grammars
from masksearch.context import Context
from masksearch.nodes.common import call_model
from masksearch.nodes.ramp import merge_meta
from masksearch.quality import last_complete_sentence
from masksearch.resources import Resources

_ENDS = ("</search>", "</answer>", "<answer>")


def finished(text: str) -> bool:
    """Did a thinking format's reply get to its end (a closed thought, then a complete action)?"""
    return "</think>" in text and text.rstrip().endswith(_ENDS)


def complete_thought(think: str) -> str:
    """A thought cut back to its last complete sentence (kept whole when it has none)."""
    return last_complete_sentence(think) or think.strip()


async def think_then_act(
    ctx: Context,
    role: str,
    messages: Sequence[dict[str, str]],
    output_format: str,
    *,
    resources: Resources,
    context: str | None,
    think_tokens: int,
    action_tokens: int = grammars.ACTION_TOKENS,
) -> tuple[str, dict[str, Any]]:
    """Call `role` with a thinking format (`grammars.for_role(...)`); return (text, metadata)
    where text is `<think>…</think>\\n` + the action, the thought ending at a sentence end."""
    model = await resources.amodel(ctx.model_for(role), **ctx.model_settings())
    if not getattr(model, "supports_output_format", False):  # the prompt and the tag parser
        return await call_model(
            ctx, role, messages, resources=resources, output_format=output_format
        )
    text, meta = await call_model(
        ctx,
        role,
        messages,
        resources=resources,
        output_format=output_format,
        max_tokens=think_tokens + action_tokens,
    )
    if finished(text):
        return text, meta
    head, closed, _ = text.partition("</think>")
    body = head.split("<think>", 1)[1] if "<think>" in head else ""
    kept = body.strip() if closed else last_complete_sentence(body)
    if kept:
        prefix, fmt = f"<think>{kept}</think>\n", grammars.after_thought(output_format)
        budget = grammars.REST_TOKENS
    else:  # cut inside the first sentence: let it finish that sentence
        prefix = "<think>" + body.lstrip()
        fmt = grammars.thought_tail(output_format, context)
        budget = grammars.THINK_TAIL_CHARS + 12 + grammars.REST_TOKENS
    more, meta2 = await call_model(
        ctx,
        role,
        [*messages, {"role": "assistant", "content": prefix}],
        resources=resources,
        output_format=fmt,
        max_tokens=budget,
    )
    return prefix + more, merge_meta([meta, meta2])
