"""`masksearch chat`: ask the agent questions and watch each step stream."""

from __future__ import annotations

import sys
from typing import Any

import typer

from masksearch.context_options import context_options
from masksearch.errors import MaskSearchError
from masksearch.graph.context import Context


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.command("chat")(chat)


@context_options(aliases={"model": ["-m"], "retriever": ["-r"], "agent_mode": ["--mode"]})
def chat(context: Context) -> None:
    """Interactive loop: read questions (one per line) from stdin and stream every graph step.

    Works with piped input, e.g. `echo "Who designed the Eiffel Tower?" | masksearch chat`.
    A question may contain \\[mask] tokens (RAMP mask filling). Empty line, `exit` or EOF quits.
    """
    import asyncio

    asyncio.run(_chat_loop(context))


async def _chat_loop(ctx: Any) -> None:
    from masksearch.graph.builder import build_graph

    graph = build_graph()
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            typer.echo("question> ", nl=False)
        line = sys.stdin.readline()
        question = line.strip()
        if not line or not question or question.lower() in {"exit", "quit"}:
            break
        await stream_question(graph, question, ctx, typer.echo)


async def stream_question(graph: Any, question: str, ctx: Any, echo: Any) -> str:
    """Run one question, echoing each node's update; returns the final answer ('' if none)."""
    answer = ""
    try:
        async for update in graph.astream(
            {"question": question}, context=ctx, stream_mode="updates"
        ):
            for node, delta in update.items():
                for line in describe_update(node, delta or {}):
                    echo(line)
                if isinstance(delta, dict) and delta.get("final_answer"):
                    answer = delta["final_answer"]
    except MaskSearchError:
        raise
    except Exception as e:  # noqa: BLE001 - keep the chat session alive
        echo(f"[error] {type(e).__name__}: {e}")
    echo(f"==> {answer or '(no answer)'}")
    return answer


def describe_update(node: str, delta: dict[str, Any]) -> list[str]:
    """Human-readable lines for one node update."""
    lines: list[str] = []
    steps = delta.get("steps") or []
    last = steps[-1] if steps else {}
    think = (delta.get("pending") or {}).get("think") or delta.get("final_think") or ""
    if node in ("planner", "observer", "agent", "force_answer", "agent_force_answer"):
        if node == "observer" and delta.get("summaries"):
            think = delta["summaries"][-1]
        if think:
            lines.append(f"[{node}] think: {_short(think)}")
        if delta.get("final_answer"):
            lines.append(f"[{node}] answer: {delta['final_answer']}")
        elif (delta.get("pending") or {}).get("subquery"):
            lines.append(f"[{node}] next sub-query: {delta['pending']['subquery']}")
        elif (delta.get("pending") or {}).get("queries"):
            lines.append(f"[{node}] search: {' | '.join(delta['pending']['queries'])}")
        elif last.get("parse_error"):
            lines.append(f"[{node}] {last['parse_error']}")
    elif node == "rewriter":
        lines.append(
            f"[rewriter] queries: {' | '.join((delta.get('pending') or {}).get('queries', []))}"
        )
        if last.get("parse_error"):
            lines.append(f"[rewriter] {last['parse_error']}")
    elif node == "search":
        for rnd in delta.get("rounds", []):
            titles = [p.get("title", "") for p in rnd.get("passages", [])]
            lines.append(
                f"[search] turn {rnd['turn']}: {len(titles)} passages: {'; '.join(titles) or '-'}"
            )
    elif node == "judge" and delta.get("scores"):
        scores = ", ".join(f"{k}={v:.2f}" for k, v in delta["scores"].items())
        lines.append(f"[judge] {scores} accepted={delta.get('accepted')}")
    return lines


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
