"""RAMP answers one blank at a time, for models that decode under grammars (local llama.cpp).

A small model asked for all `k` spans at once mixes their order, pastes whole passages or names
other words of the passage. Here the reader that decided to answer is asked, with its own prompt
(the search results it has read stay a reused prompt prefix):

1. which search result is the masked passage (`grammars.choice`);
2. for each blank in order: the phrase before the blank (earlier blanks filled in) is given as the
   start of its reply, which it continues under `grammars.fill_grammar` — a verbatim run of words
   of that result — until it writes the words that follow the blank (a stop string).

The spans make the answer `s1 ; … ; sk`; each call's tokens and time go into the step's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from masksearch import grammars, prompts
from masksearch.context import Context
from masksearch.nodes.common import call_model, user
from masksearch.resources import Resources


async def decodes_under_grammars(ctx: Context, role: str, resources: Resources) -> bool:
    """Whether the role's model decodes under grammars (then a RAMP example's planner and observer
    only choose their actions, their thoughts are composed from those choices and the results,
    and the answers go blank by blank)."""
    model = await resources.amodel(ctx.model_for(role), **ctx.model_settings())
    return bool(getattr(model, "supports_output_format", False))


async def fill_masks(
    ctx: Context,
    role: str,
    prompt: str,
    question: str,
    passages: Sequence[dict[str, Any]],
    *,
    resources: Resources,
    doc: int | None = None,
) -> tuple[list[str], int, dict[str, Any]]:
    """The `k` spans of a RAMP question, copied from the passage among `passages` (numbered
    Doc 1.. in `prompt`) at index `doc`, or else the one the model names; returns (spans, the
    index of that passage in `passages`, merged call metadata)."""
    k = prompts.count_masks(question)
    metas: list[dict[str, Any]] = []
    base = prompt + "\n\n"
    if doc is None and len(passages) > 1:
        text, meta = await call_model(
            ctx,
            role,
            [*user(base + prompts.RAMP_WHICH_DOC), {"role": "assistant", "content": "Doc "}],
            resources=resources,
            output_format=grammars.choice(len(passages)),
        )
        metas.append(meta)
        doc = min(max(int(text.strip() or 1), 1), len(passages)) - 1
    doc = doc or 0
    source = passages[doc] if passages else {}
    texts = [str(source.get(f, "")) for f in ("title", "text") if source.get(f)]
    spans: list[str] = []
    for i in range(k):
        left, right = prompts.mask_context(question, spans, i)
        fmt = grammars.fill_grammar(texts, after=left)  # where the passage continues `left`
        ask = prompts.RAMP_FILL.substitute(doc=doc + 1, i=i + 1, left=left[-60:], right=right)
        text, meta = await call_model(
            ctx,
            role,
            [*user(base + ask), {"role": "assistant", "content": left}],
            resources=resources,
            output_format=fmt,
            stop=[right] if right else None,
            max_tokens=grammars.MAX_FILL_TOKENS,
        )
        metas.append(meta)
        spans.append(" ".join(text.replace(";", ",").split()))
    return spans, doc, merge_meta(metas)


def merge_meta(metas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One step's metadata for several calls: summed time and tokens, the call count."""
    out: dict[str, Any] = {"calls": 0}
    for meta in metas:
        out["calls"] += meta.get("calls", 1)
        for key, value in meta.items():
            if key in ("latency_s", "prompt_tokens", "completion_tokens"):
                out[key] = round(out.get(key, 0) + value, 4)
            elif key != "calls":  # the first call's model, message id, …
                out.setdefault(key, value)
    return out
