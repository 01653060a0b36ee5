"""`masksearch chat`: ask the agent questions on a remembered thread and watch each step stream."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import typer

from masksearch.context import Context
from masksearch.context_options import context_options

CHAT_APP = "masksearch chat"  # checkpoint metadata `app` marking chat threads (for --resume)
QUICK_S = 0.5  # a second Ctrl-C this soon after the one that stopped an answer quits


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.command("chat")(chat)


@context_options(
    interactive=True,
    aliases={
        "model": ["-m"],
        "retriever": ["-r"],
        "agent_mode": ["--mode"],
        "llm_timeout_s": ["--llm-timeout"],
    },
)
def chat(
    context: Context,
    thread: Annotated[
        str | None,
        typer.Option(
            "--thread", "-t", help="Thread id to continue or create (default: a new thread)."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the most recent chat thread (or --thread): show its history, finish "
            "an interrupted question.",
        ),
    ] = False,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint",
            help="Where threads are kept: sqlite:///path.db, postgres://..., or memory "
            "(default: chat.db in the masksearch cache directory).",
        ),
    ] = None,
) -> None:
    """Interactive loop: read questions (one per line) and stream every graph step.

    The conversation is kept on a thread (a checkpoint): `--thread ID` or `--resume` continue it
    later. Works with piped input too, e.g. `echo "Who designed the Eiffel Tower?" | masksearch
    chat -m fake:example`. A question may contain \\[mask] tokens (RAMP mask filling). At the
    prompt: `help` lists the commands, `history` shows the thread's questions and answers; an
    empty line, `exit`, EOF or Ctrl-C quits. Ctrl-C during an answer stops it (the model too) and
    returns to the prompt; pressed twice, it quits. Every Context setting is an option
    (--judge-model, --llm-timeout, --top-k, ...).
    """
    ctx = context
    ChatSession(ctx, checkpoint or default_chat_checkpoint(), thread, resume).run()


def default_chat_checkpoint() -> str:
    from masksearch.corpus.default import cache_dir

    return f"sqlite:///{cache_dir() / 'chat.db'}"


HELP = """commands at the prompt:
  <question>   ask it (a question may contain [mask] tokens: RAMP mask filling)
  history      this thread's questions and answers
  help         this list
  exit, quit, an empty line, EOF or Ctrl-C: quit
Ctrl-C during an answer stops it and returns here (twice: quits); --resume finishes it later."""


class ChatSession:
    """One event loop for the session; the prompt is read synchronously (Ctrl-C quits at once).

    During an answer, Ctrl-C does not raise `KeyboardInterrupt` into whatever code runs (a
    LangGraph node, a model's stream): a SIGINT handler on the loop cancels the answer's task,
    which cancels the graph's node tasks and their model calls; a local llama.cpp call returns
    only once its decode has stopped (`masksearch.models.llamacpp`), and the session returns to
    the prompt. A second Ctrl-C before that quits once the answer has stopped."""

    def __init__(self, ctx: Context, checkpoint: str, thread: str | None, resume: bool) -> None:
        from masksearch.resources import Resources

        self.ctx = ctx
        self.checkpoint = checkpoint
        self.thread = thread
        self.resume = resume
        self.resources = Resources()
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.saver: Any = None
        self.interactive = sys.stdin.isatty()
        self.quit = False  # Ctrl-C pressed twice during an answer

    def run(self) -> None:
        try:
            self._await(self._open())
            if self.interactive:
                with contextlib.suppress(ImportError):
                    import readline  # noqa: F401  (line editing and ↑ history at the prompt)
            while not self.quit:
                try:
                    if not self._turn():
                        break
                except KeyboardInterrupt:  # at the prompt, or between an answer and the prompt
                    typer.echo("")
                    break
        except asyncio.CancelledError:  # Ctrl-C while opening or finishing a resumed question
            typer.echo("\n[interrupted]")
        finally:
            self._await(self.stack.aclose(), interruptible=False)
            self._close_loop()
        if self.checkpoint != "memory":
            typer.echo(f"thread {self.thread} (continue: masksearch chat --thread {self.thread})")

    def _turn(self) -> bool:
        """Read one line and act on it; False: quit."""
        try:
            question = self._prompt("question> ")
        except EOFError:
            typer.echo("")
            return False
        if question is None or question.lower() in {"", "exit", "quit"}:
            return False
        if question.lower() in {"help", "?"}:
            typer.echo(HELP)
            return True
        if question.lower() == "history":
            self._await(self._show_history())
            return True
        try:
            self._await(self._ask({"question": question}))
        except asyncio.CancelledError:
            typer.echo(
                "\n[interrupted]"
                if self.quit
                else f"\n[interrupted] stopped; ask another question, or finish this one later "
                f"with --thread {self.thread} --resume"
            )
        return not self.quit

    # -- plumbing ------------------------------------------------------------------------
    def _await(self, coro: Any, *, interruptible: bool = True) -> Any:
        """Run `coro` on the session's loop. Ctrl-C cancels it (raised here as
        `asyncio.CancelledError` once it has stopped); a second Ctrl-C before that, or within
        `QUICK_S` after, sets `quit`."""
        task = self.loop.create_task(coro)
        current = [task]  # what a Ctrl-C cancels: the task, then the wait for a second press
        presses = 0

        def on_sigint() -> None:
            nonlocal presses
            presses += 1
            if presses > 1:
                self.quit = True
            # a second cancel of a task that is still stopping would abandon its node tasks
            # (and their model calls) half-cancelled: it only asks to quit
            if presses == 1 or current[0] is not task:
                current[0].cancel()

        handled = False
        if interruptible:
            try:
                self.loop.add_signal_handler(signal.SIGINT, on_sigint)
                handled = True
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                pass
        try:
            return self.loop.run_until_complete(task)
        except asyncio.CancelledError:
            if presses == 1 and handled:  # a second press soon after also quits
                current[0] = self.loop.create_task(asyncio.sleep(QUICK_S))
                with contextlib.suppress(asyncio.CancelledError):
                    self.loop.run_until_complete(current[0])
            raise
        except KeyboardInterrupt:  # no handler could be installed: stop the task, then leave
            task.cancel()
            with contextlib.suppress(BaseException):
                self.loop.run_until_complete(task)
            raise
        finally:
            if handled:
                self.loop.remove_signal_handler(signal.SIGINT)  # back to KeyboardInterrupt

    def _close_loop(self) -> None:
        """Let every task left on the loop finish cancelling (a model call returns once its
        decode has stopped), then close it."""
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def _prompt(self, text: str) -> str | None:
        if self.interactive:
            return input(text).strip()
        line = sys.stdin.readline()
        return line.strip() if line else None

    def _config(self) -> dict[str, Any]:
        return {
            "configurable": {"thread_id": self.thread},
            "metadata": {"app": CHAT_APP},
            "recursion_limit": 4 * self.ctx.max_turns + 12,
        }

    async def _open(self) -> None:
        from masksearch.graph.checkpoint import open_checkpointer

        self.saver = await self.stack.enter_async_context(open_checkpointer(self.checkpoint))
        if self.resume and self.thread is None:
            self.thread = await latest_chat_thread(self.saver)
            if self.thread is None:
                typer.echo("no earlier chat thread to resume: starting a new one")
        self.thread = self.thread or str(uuid.uuid4())
        typer.echo(f"thread {self.thread}")
        if self.resume:
            await self._show_history()
            snapshot = await self._graph().aget_state(self._config())
            if snapshot.next:
                typer.echo(f"finishing the interrupted question (next: {', '.join(snapshot.next)})")
                await self._ask(None)

    def _graph(self) -> Any:
        from masksearch.graph.builder import build_graph

        # a fresh resources view per question: fake scripts restart, loaded models are shared
        return build_graph(self.saver, resources=self.resources.for_run())

    async def _show_history(self) -> None:
        state = (await self._graph().aget_state(self._config())).values
        lines = conversation(state.get("messages") or [])
        typer.echo("\n".join(lines) if lines else "(no earlier questions on this thread)")

    async def _ask(self, payload: Any) -> None:
        from langgraph.types import Command

        graph = self._graph()
        while True:
            live = TokenPrinter() if self.interactive else None
            await stream_question(
                graph,
                payload,
                self.ctx,
                live.echo if live else typer.echo,
                config=self._config(),
                tokens=live.token if live else None,
            )
            snapshot = await graph.aget_state(self._config())
            pending = [i for task in snapshot.tasks for i in task.interrupts]
            if not pending:
                return
            payload = Command(resume=self._review(pending[0].value))

    def _review(self, request: dict[str, Any]) -> list[str]:
        """Ask for the queries to search (read synchronously inside the answer's task: Ctrl-C
        here stops the question like Ctrl-C during the answer)."""
        typer.echo(f"[review] proposed queries: {' | '.join(request.get('queries', []))}")
        try:
            previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        except ValueError:  # not the main thread
            previous = None
        try:
            answer = self._prompt("queries (Enter keeps them; separate with ';')> ") or ""
        except (KeyboardInterrupt, EOFError):
            raise asyncio.CancelledError from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        return [q.strip() for q in answer.split(";") if q.strip()]


class TokenPrinter:
    """Terminal output: model tokens dimmed as they arrive, then each node's summary lines."""

    def __init__(self) -> None:
        self.node = ""  # the node whose tokens are being printed ("" = at a line start)

    def token(self, node: str, text: str) -> None:
        if node != self.node:
            self._end_line()
            typer.echo(typer.style(f"[{node}] ", dim=True), nl=False)
            self.node = node
        typer.echo(typer.style(text, dim=True), nl=False)

    def echo(self, line: str) -> None:
        self._end_line()
        typer.echo(line)

    def _end_line(self) -> None:
        if self.node:
            typer.echo("")
            self.node = ""


async def latest_chat_thread(saver: Any) -> str | None:
    """The thread of the most recent chat checkpoint in this checkpointer, if any."""
    async for item in saver.alist(None, filter={"app": CHAT_APP}, limit=1):
        return str(item.config["configurable"]["thread_id"])
    return None


def conversation(messages: list[Any]) -> list[str]:
    """`Q:`/`A:` lines of a thread: each human question and the last model answer after it."""
    from masksearch.tagformat import parse_action

    lines: list[str] = []
    answer = ""
    for m in messages:
        if m.type == "human" and not m.name:
            if answer:
                lines.append(f"A: {answer}")
            answer = ""
            lines.append(f"Q: {m.text}")
        elif m.type == "ai":
            action = parse_action(m.text)
            if action.kind == "answer":
                answer = action.answer
    if answer:
        lines.append(f"A: {answer}")
    return lines


async def stream_question(
    graph: Any,
    payload: Any,
    ctx: Context,
    echo: Callable[[str], Any],
    config: dict[str, Any] | None = None,
    tokens: Callable[[str, str], Any] | None = None,
) -> str:
    """Run (or resume) one question, echoing each node's update; returns the final answer.

    With `tokens(node, text)`, model tokens are passed on as they stream (a terminal shows the
    model writing); the per-node summary lines follow each node as usual."""
    from masksearch.errors import MaskSearchError

    answer = ""
    final: dict[str, Any] = {}
    ended = False  # the judge ran: the question is over (not paused for a review, not failed)
    streamed: set[str] = set()  # nodes whose model tokens were shown since their last update
    modes = ["updates", "messages"] if tokens is not None else ["updates"]
    try:
        async for mode, data in graph.astream(payload, config, context=ctx, stream_mode=modes):
            if mode == "messages":
                chunk, meta = data
                if tokens is not None and chunk.type == "AIMessageChunk" and chunk.text:
                    node = str(meta.get("langgraph_node", ""))
                    tokens(node, chunk.text)
                    streamed.add(node)
                continue
            for node, delta in data.items():
                if node == "__interrupt__" or not isinstance(delta, dict):
                    continue
                # a thought the terminal has just shown token by token is not repeated
                for line in describe_update(node, delta, think=node not in streamed):
                    echo(line)
                streamed.discard(node)
                ended = ended or node == "judge"
                final.update(
                    {k: delta[k] for k in ("final_answer", "scores", "accepted") if k in delta}
                )
    except MaskSearchError as e:
        echo(f"[error] {e}")
        return ""
    except Exception as e:  # noqa: BLE001 - keep the chat session alive
        echo(f"[error] {type(e).__name__}: {e}")
        return ""
    if ended:
        answer = final.get("final_answer", "")
        echo(f"==> {answer or '(no answer)'}{verdict(final)}")
    return answer


def verdict(final: dict[str, Any]) -> str:
    """`  (accepted, recall 1.00)` when gold answers were scored; nothing for a plain question."""
    scores = final.get("scores") or {}
    if not scores:
        return ""
    label = "accepted" if final.get("accepted") else "not accepted"
    return f"  ({label}, " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()) + ")"


def describe_update(node: str, delta: dict[str, Any], *, think: bool = True) -> list[str]:
    """Human-readable lines for one node update (`think=False`: without the model's thought,
    already shown as it streamed)."""
    lines: list[str] = []
    steps = delta.get("steps") or []
    last = steps[-1] if isinstance(steps, list) and steps else {}
    pending = delta.get("pending") or {}
    thought = pending.get("think") or delta.get("final_think") or ""
    if node in ("planner", "observer", "agent", "force_answer", "agent_force_answer"):
        if node == "observer" and delta.get("summaries"):
            thought = delta["summaries"][-1]
        if thought and think:
            lines.append(f"[{node}] think: {_short(thought)}")
        if delta.get("final_answer"):
            lines.append(f"[{node}] answer: {delta['final_answer']}")
        elif pending.get("subquery"):
            lines.append(f"[{node}] next sub-query: {pending['subquery']}")
        elif pending.get("queries"):
            lines.append(f"[{node}] search: {' | '.join(pending['queries'])}")
        elif last.get("parse_error"):
            lines.append(f"[{node}] {last['parse_error']}")
    elif node == "rewriter":
        lines.append(f"[rewriter] queries: {' | '.join(pending.get('queries', []))}")
        if last.get("parse_error"):
            lines.append(f"[rewriter] {last['parse_error']}")
    elif node == "review":
        lines.append(f"[review] searching: {' | '.join(pending.get('queries', []))}")
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
