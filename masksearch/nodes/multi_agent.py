"""Multi-agent (teacher) nodes: planner → rewriter → [search] → observer → … → answer.

Every node returns a partial state update (never mutates the state) and records its decision
in `decision`; the graph's routers read the state to pick the next node, so an edited state
routes the same way a produced one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from langgraph.runtime import Runtime

from masksearch import grammars, prompts
from masksearch.context import Context
from masksearch.errors import ContextOverflow
from masksearch.nodes.common import (
    ai_message,
    answered,
    call_model,
    context_and_question,
    forced_answer_update,
    overflow_update,
    step,
    user,
)
from masksearch.nodes.evidence import (
    answer_thought,
    not_searched,
    passage_with_every_blank,
    plan_thought,
    qa_answer_thought,
    qa_evidence,
    qa_plan_thought,
    qa_search_thought,
    quoted,
    search_thought,
    supports,
    unsearched,
    was_searched,
)
from masksearch.nodes.ramp import decodes_under_grammars, fill_masks, merge_meta
from masksearch.nodes.search import NO_RESULTS
from masksearch.nodes.thought import complete_thought, think_then_act
from masksearch.prompts import format_docs
from masksearch.quality import citation, distinct_queries
from masksearch.resources import Resources
from masksearch.state import GraphState, Pending, Round
from masksearch.tagformat import Action, ParseError, parse_action, parse_rewrites, strip_tags

QA_ACTION_TOKENS = 96  # `<search>` with a sentence sub-query, or a short `<answer>`


async def planner(
    state: GraphState, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """First decision: a sub-query to search, or (rarely) a direct answer."""
    ctx, question = context_and_question(state, runtime)
    if await decodes_under_grammars(ctx, "planner", resources):
        # the model chooses the first query; the thought is composed from it (`plan_thought`)
        ramp = bool(prompts.count_masks(question))
        prompt = prompts.PLANNER_RAMP_QUERY if ramp else prompts.PLANNER_QA_QUERY
        text, meta = await call_model(
            ctx,
            "planner",
            user(prompt.substitute(question=question)),
            resources=resources,
            output_format=grammars.keyword_search(),
            max_tokens=grammars.MAX_KEYWORD_CHARS + 20,  # the longest query the grammar allows
        )
        query = grammars.whole_words("; ".join(parse_action(text).queries))
        if ramp:
            query = query or prompts.masked_text(question)
            thought = plan_thought(question, query)
        else:
            query = query or question
            thought = qa_plan_thought(query)
        text = f"<think>{thought}</think>\n<search>{query}</search>"
    else:
        text, meta = await think_then_act(
            ctx,
            "planner",
            user(prompts.planner_prompt(question)),
            grammars.for_role("planner", question, context=question),
            resources=resources,
            context=question,
            think_tokens=grammars.THINK_TOKENS,
            action_tokens=QA_ACTION_TOKENS,
        )
    action = parse_action(text)
    if action.kind == "answer":
        return answered(
            with_think(action, complete_thought(action.think)), "planner", 0, text, meta
        )
    if action.kind == "search":
        subquery = "; ".join(action.queries)
        think, error = complete_thought(action.think), ""
    else:  # malformed: search the question itself, keep the prose as the thought
        subquery, think, error = question, action.think or strip_tags(text), action.error
    pending: Pending = {"think": think, "subquery": subquery, "queries": []}
    return {
        "decision": "search",
        "pending": pending,
        "status": "running",
        "steps": [step("planner", 0, text, meta, queries=[subquery], parse_error=error)],
        "messages": [ai_message("planner", text, meta)],
    }


async def rewriter(
    state: GraphState, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Sub-query → 1..num_rewrites search queries (JSON); falls back to the sub-query itself."""
    ctx, question = context_and_question(state, runtime)
    pending: dict[str, Any] = dict(state.get("pending") or {})
    subquery = str(pending.get("subquery") or question)
    prompt = prompts.REWRITER.substitute(
        question=question, subquery=subquery, num_rewrites=ctx.num_rewrites
    )
    text, meta = await call_model(
        ctx,
        "rewriter",
        user(prompt),
        resources=resources,
        output_format=grammars.rewrites(ctx.num_rewrites),
    )
    try:
        queries, error = parse_rewrites(text, max_queries=ctx.num_rewrites), ""
        queries = distinct_queries(queries)  # near-duplicates add nothing to a round
    except ParseError as e:
        queries, error = [subquery], f"fallback to sub-query: {e}"
    searched = [q for r in state.get("rounds", []) for q in r.get("queries", [])]
    queries = not_searched(question, queries, subquery, searched)
    turn = state.get("turn", 0) + 1
    new_pending: Pending = {
        "think": str(pending.get("think", "")),
        "subquery": subquery,
        "queries": queries,
    }
    return {
        "pending": new_pending,
        "steps": [step("rewriter", turn, text, meta, queries=queries, parse_error=error)],
        "messages": [ai_message("rewriter", text, meta, queries=queries, turn=turn)],
    }


async def observer(
    state: GraphState, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Summarize the latest results with ALL earlier summaries in view; answer or search again.

    A local RAMP observer's thought is composed from its choices and the results
    (`masksearch.nodes.evidence`): the cited result and the quoted words around each blank when
    it answers, what is still missing and why the next query should find it when it searches."""
    ctx, question = context_and_question(state, runtime)
    rounds = state.get("rounds", [])
    latest = rounds[-1]
    turn = state.get("turn", len(rounds))
    left = ctx.max_turns - turn
    budget = prompts.OBSERVER_LAST if left <= 0 else prompts.OBSERVER_BUDGET.substitute(left=left)
    history = prompts.render_history(with_summaries(rounds[:-1], state.get("summaries", [])))
    fields = {
        "question": question,
        "rules": prompts.answer_rules(question),
        "history": history,
        "subquery": latest.get("subquery", ""),
        "queries": "; ".join(latest.get("queries", [])),
        "observation": latest["observation"],
        "budget": budget,
    }
    passages = list(latest.get("passages", []))
    k = prompts.count_masks(question)
    grammar = await decodes_under_grammars(ctx, "observer", resources)
    try:
        if grammar and k:
            text, meta = await ramp_choice(
                ctx,
                prompts.OBSERVER_RAMP_CHOICE.substitute(k=k, **fields),
                question,
                passages,
                may_search=left > 0,
                resources=resources,
                searched=searched_queries(rounds),
            )
            action = parse_action(text)
        elif grammar:
            text, meta = await qa_choice(
                ctx,
                prompts.OBSERVER_QA_CHOICE.substitute(**fields),
                question,
                rounds,
                may_search=left > 0,
                resources=resources,
            )
            action = parse_action(text)
        else:
            prompt = prompts.OBSERVER.substitute(**fields)
            if k:  # without grammar support the RAMP answer comes in one call
                prompt += "\n" + prompts.ramp_observer_note(question)
            read = question + "\n" + "\n".join(str(r.get("observation", "")) for r in rounds)
            text, meta = await think_then_act(
                ctx,
                "observer",
                user(prompt),
                grammars.for_role("observer", "", may_search=left > 0, context=read),
                resources=resources,
                context=read,
                think_tokens=grammars.THINK_TOKENS,
                action_tokens=QA_ACTION_TOKENS,
            )
            action = parse_action(text)
            thought = complete_thought(action.think)
            if action.kind == "answer" and not k:
                quote = qa_evidence(action.answer, passages, None)
                thought = f"{thought} {quote}".strip() if quote else thought
            action = with_think(action, thought)
    except ContextOverflow as e:  # the results fill the window: answer from what was gathered
        return overflow_update(ctx, "observer", turn, e)
    summary = action.think or strip_tags(text)
    if action.kind == "answer":  # kept even on the last turn
        return {**answered(action, "observer", turn, text, meta), "summaries": [summary]}
    if action.kind == "search" and left > 0:
        pending: Pending = {
            "think": action.think,
            "subquery": "; ".join(action.queries),
            "queries": [],
        }
        return {
            "decision": "search",
            "summaries": [summary],
            "pending": pending,
            "steps": [step("observer", turn, text, meta, queries=action.queries)],
            "messages": [ai_message("observer", text, meta)],
        }
    reason = "turn limit reached" if action.kind == "search" else action.error
    return {
        "decision": "force",
        "summaries": [summary],
        "pending": None,
        "steps": [step("observer", turn, text, meta, parse_error=reason)],
        "messages": [ai_message("observer", text, meta)],
    }


async def ramp_choice(
    ctx: Context,
    prompt: str,
    question: str,
    passages: list[dict[str, Any]],
    *,
    may_search: bool,
    resources: Resources,
    searched: Sequence[str] = (),
) -> tuple[str, dict[str, Any]]:
    """The observer's step on a masked passage, on a model that decodes under grammars: the text
    `<think>…</think>\\n<search>…</search>` or `…<answer>spans</answer>` and the call metadata.

    The model chooses (`grammars.ramp_action`); a search result with the passage's wording on
    both sides of every blank is answered from without asking (a small model often searches on
    anyway, and then answers from worse results), and so is the last turn. The thought is
    composed from that choice and the results: the cited result and the words quoted around
    each blank (`answer_thought`), or what is still missing and why the new query should find it
    (`search_thought`), so nothing in it is false about what was retrieved."""
    metas: list[dict[str, Any]] = []
    choice = "<answer>"
    found = passage_with_every_blank(question, passages)
    if may_search and found is None:
        choice, meta = await call_model(
            ctx,
            "observer",
            user(prompt),
            resources=resources,
            output_format=grammars.ramp_action(may_search=True),
            max_tokens=grammars.MAX_KEYWORD_CHARS + 20,  # the longest query the grammar allows
        )
        metas.append(meta)
    action = parse_action(choice)
    if action.kind == "search" and action.queries:
        query = unsearched(question, grammars.whole_words("; ".join(action.queries)), searched)
        thought = search_thought(question, passages, query)
        return f"<think>{thought}</think>\n<search>{query}</search>", merge_meta(metas)
    if found is not None:  # copy from that result alone
        doc_line = format_docs([passages[found]], start=found + 1)
        prompt = prompts.RAMP_SOURCE.substitute(question=question, doc=doc_line)
    spans, doc, fill_meta = await fill_masks(
        ctx, "observer", prompt, question, passages, resources=resources, doc=found
    )
    metas.append(fill_meta)
    if passages:
        cite = citation(doc + 1, str(passages[doc].get("title", "")))
        thought = answer_thought(question, spans, passages[doc], cite)
    else:
        thought = NO_RESULTS_THOUGHT
    answer = " ; ".join(spans)
    return f"<think>{thought}</think>\n<answer>{answer}</answer>", merge_meta(metas)


def with_think(action: Action, think: str) -> Action:
    """The action with its thought replaced (the stored thought; the step keeps the raw text)."""
    return replace(action, think=think)


async def force_answer(
    state: GraphState, runtime: Runtime[Context], *, resources: Resources
) -> dict[str, Any]:
    """Out of turns (or no usable decision): answer from what was gathered."""
    ctx, question = context_and_question(state, runtime)
    rounds = state.get("rounds", [])
    history = prompts.render_history(with_summaries(rounds, state.get("summaries", [])))
    prompt = prompts.FORCE_ANSWER.substitute(
        question=question, history=history, rules=prompts.answer_rules(question)
    )
    if prompts.count_masks(question):
        prompt += "\n" + prompts.ramp_observer_note(question, may_search=False)
        if await decodes_under_grammars(ctx, "answer", resources):
            passages = unique_passages(rounds)
            prompt += "\n\nSearch results:\n" + (format_docs(passages) or NO_RESULTS)
            spans, doc, meta = await fill_masks(
                ctx, "answer", prompt, question, passages, resources=resources
            )
            answer = " ; ".join(spans)
            think = ""
            if passages:
                search, number = where_retrieved(rounds, passages[doc])
                cite = citation(number, str(passages[doc].get("title", "")), search)
                think = answer_thought(question, spans, passages[doc], cite)
            text = (
                f"<think>{think}</think>\n<answer>{answer}</answer>"
                if think
                else (f"<answer>{answer}</answer>")
            )
            return forced_answer_update(text, meta, state.get("turn", 0))
    elif rounds and await decodes_under_grammars(ctx, "answer", resources):
        answer, meta = await qa_extract(ctx, "answer", question, rounds, resources=resources)
        quote = quote_found(answer, rounds)
        think = qa_answer_thought(answer, quote) if quote else FORCED_NO_EVIDENCE
        text = f"<think>{think}</think>\n<answer>{answer}</answer>"
        return forced_answer_update(text, meta, state.get("turn", 0))
    text, meta = await call_model(
        ctx, "answer", user(prompt), resources=resources, output_format="answer_only"
    )
    action = parse_action(text)
    if action.kind == "answer" and not action.think:  # the forced answer writes no thought
        think = quote_found(action.answer, rounds) or FORCED_NO_EVIDENCE
        text = f"<think>{think}</think>\n<answer>{action.answer}</answer>"
    return forced_answer_update(text, meta, state.get("turn", 0))


def searched_queries(rounds: list[Round]) -> list[str]:
    """Every sub-query and query of the rounds so far (what a new query should not repeat)."""
    return [q for r in rounds for q in (r.get("subquery", ""), *r.get("queries", [])) if q]


def quote_found(answer: str, rounds: list[Round]) -> str:
    """The sentence quoting the first result retrieved so far that holds `answer` verbatim, named
    as the student's `<information>` blocks number it, or "" when none does."""
    for p in unique_passages(rounds):
        search, number = where_retrieved(rounds, p)
        quote = quoted(answer, p, citation(number, str(p.get("title", "")), search))
        if quote:
            return quote
    return ""


async def qa_extract(
    ctx: Context, role: str, question: str, rounds: list[Round], *, resources: Resources
) -> tuple[str, dict[str, Any]]:
    """A plain question's forced answer on a model that decodes under grammars: a short span copied
    from the results retrieved so far (`grammars.qa_span`; a 1.5B teacher asked to answer freely
    wrote its thought again as the answer)."""
    passages = unique_passages(rounds)
    prompt = prompts.QA_EXTRACT.substitute(question=question, docs=format_docs(passages))
    text, meta = await call_model(
        ctx,
        role,
        user(prompt),
        resources=resources,
        output_format=grammars.qa_span([str(p.get("text", "")) for p in passages]),
        max_tokens=4 * grammars.MAX_QA_SPAN_TOKENS,  # a word can take several tokens
    )
    return text.strip(), meta


async def qa_choice(
    ctx: Context,
    prompt: str,
    question: str,
    rounds: list[Round],
    *,
    may_search: bool,
    resources: Resources,
) -> tuple[str, dict[str, Any]]:
    """The observer's step on a plain question, on a model that decodes under grammars, as
    `ramp_choice` for a masked passage. The model copies its answer from the latest results
    (its prompt continued after `<answer>`, `grammars.qa_span`); a result with a sentence holding
    that answer and the question's words (`evidence.supports`) is answered from, as is the last
    turn; otherwise the model chooses one keyword query (`grammars.keyword_search`; a 1.5B
    teacher asked to choose searched on until its turns ran out), and when that query and the
    question itself were both searched already it answers (the same query finds the same
    results). The thought is composed: the result that states the answer, quoted, or that the
    observer is not sure and what it searches next."""
    latest = list(rounds[-1].get("passages", [])) if rounds else []
    answer, meta = await call_model(  # the prompt's results are cached for the second call
        ctx,
        "observer",
        [*user(prompt), {"role": "assistant", "content": "<answer>"}],
        resources=resources,
        output_format=grammars.qa_span([str(p.get("text", "")) for p in latest], close=True),
        max_tokens=4 * grammars.MAX_QA_SPAN_TOKENS + 8,  # a word can take several tokens
    )
    metas = [meta]
    answer = answer.removesuffix("</answer>").strip()
    if may_search and not any(supports(question, answer, p) for p in latest):
        choice, meta = await call_model(
            ctx,
            "observer",
            user(prompt),
            resources=resources,
            output_format=grammars.keyword_search(),
            max_tokens=grammars.MAX_KEYWORD_CHARS + 20,  # the longest query the grammar allows
        )
        metas.append(meta)
        searched = searched_queries(rounds)
        query = grammars.whole_words("; ".join(parse_action(choice).queries)) or question
        query = unsearched(question, query, searched)
        if not was_searched(query, searched):  # else nothing new to find: answer now
            thought = qa_search_thought(latest, query)
            return f"<think>{thought}</think>\n<search>{query}</search>", merge_meta(metas)
    thought = qa_answer_thought(answer, quote_found(answer, rounds))
    return f"<think>{thought}</think>\n<answer>{answer}</answer>", merge_meta(metas)


NO_RESULTS_THOUGHT = "The search returned no results, so the blanks are my best guess."
FORCED_NO_EVIDENCE = (
    "The searches are used up and no result states the answer word for word, so I answer from "
    "what they found and what I know."
)


def where_retrieved(rounds: list[Round], passage: dict[str, Any]) -> tuple[int | None, int]:
    """(the search round that first retrieved `passage` — None for the latest —, its number
    Doc N in that round's results), as the student's `<information>` blocks show it."""
    key = str(passage.get("id") or passage.get("text"))
    searches = [r for r in rounds if r.get("kind") == "search"]
    for n, r in enumerate(searches, 1):
        for i, p in enumerate(r.get("passages", []), 1):
            if str(p.get("id") or p.get("text")) == key:
                return (None if n == len(searches) else n), i
    return None, 1


def unique_passages(rounds: list[Round]) -> list[dict[str, Any]]:
    """Every passage retrieved so far, once each (by id), in retrieval order."""
    seen: dict[str, dict[str, Any]] = {}
    for r in rounds:
        for p in r.get("passages", []):
            seen.setdefault(str(p.get("id") or p.get("text")), dict(p))
    return list(seen.values())


def with_summaries(rounds: list[Round], summaries: list[str]) -> list[dict[str, Any]]:
    return [
        {**r, "summary": summaries[i] if i < len(summaries) else ""} for i, r in enumerate(rounds)
    ]
