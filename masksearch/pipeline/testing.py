"""Offline stand-ins for batch tests, crash tests and benchmarks.

`LatencyChatModel` is an async chat model that waits a fixed time per call (no thread pool, so
64 concurrent calls really overlap) and answers through a `respond(messages) -> str | Exception`
function. `team_respond` plays every multi-agent role deterministically for any example:
planner → one search, rewriter → one query, observer → an answer looked up by question text.
So each example takes exactly `CALLS_PER_EXAMPLE` model calls and one search.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from masksearch.graph.testing import JUDGE_KEY, OBSERVER_KEY, PLANNER_KEY, REWRITER_KEY
from masksearch.models.fake import messages_text
from masksearch.resources import Resources

CALLS_PER_EXAMPLE = 3  # planner, rewriter, observer
Respond = Callable[[list[BaseMessage]], Any]


class LatencyChatModel(BaseChatModel):
    """Replies via `respond` after `latency_s` (asyncio.sleep on the async path)."""

    respond: Respond
    latency_s: float = 0.0
    jitter: float = 0.0  # each call waits latency_s * uniform(1 - jitter, 1 + jitter) (seeded)
    seed: int = 0
    model_name: str = "fake:latency"
    calls: int = 0

    draws: int = 0

    def _delay(self) -> float:
        if not self.jitter:
            return self.latency_s
        import random

        # one draw per call, counted at the start (calls in flight at once get different delays)
        self.draws += 1
        rng = random.Random(self.seed * 1_000_003 + self.draws)
        return self.latency_s * rng.uniform(1 - self.jitter, 1 + self.jitter)

    @property
    def _llm_type(self) -> str:
        return "latency-fake"

    def _result(self, messages: list[BaseMessage]) -> ChatResult:
        self.calls += 1
        out = self.respond(list(messages))
        if isinstance(out, BaseException):
            raise out
        text = str(out)
        n_in, n_out = len(messages_text(messages).split()), len(text.split())
        msg = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": n_in,
                "output_tokens": n_out,
                "total_tokens": n_in + n_out,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        time.sleep(self._delay())
        return self._result(messages)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        if self.latency_s:
            await asyncio.sleep(self._delay())
        return self._result(messages)


def question_of(prompt: str) -> str:
    """The text between 'Question:' and the next blank line in a role prompt."""
    _, _, rest = prompt.partition("Question:\n")
    return rest.split("\n\n", 1)[0].strip()


def team_respond(
    answers: Mapping[str, str] | Callable[[str], str],
    *,
    faults: Callable[[str, str], Any] | None = None,
    question: Callable[[str], str] = question_of,
) -> Respond:
    """Respond as planner / rewriter / observer (and judge: 'correct'); any other prompt (the
    single-agent student) gets the observer's answer.

    `answers` maps a question (or a function of it) to the answer the observer gives.
    `faults(role, question)` may return an exception or a raw string to inject instead.
    `question(prompt)` finds the question in a prompt.
    """

    def answer_for(question: str) -> str:
        if callable(answers):
            return answers(question)
        return answers.get(question, "unknown")

    def respond(messages: list[BaseMessage]) -> Any:
        text = messages_text(messages)
        role = next(
            (
                r
                for r, key in (
                    ("planner", PLANNER_KEY),
                    ("rewriter", REWRITER_KEY),
                    ("observer", OBSERVER_KEY),
                    ("judge", JUDGE_KEY),
                )
                if key in text
            ),
            "other",
        )
        q = question(text)
        if faults is not None:
            injected = faults(role, q)
            if injected is not None:
                return injected
        if role == "planner":
            return f"<think>Look it up.</think>\n<search>{q[:80]}</search>"
        if role == "rewriter":
            return '{"queries": ["' + " ".join(q.replace('"', " ").split()[:6]) + '"]}'
        if role == "judge":
            return "correct"
        return f"<think>Found it.</think>\n<answer>{answer_for(q)}</answer>"

    return respond


@dataclass(frozen=True)
class TeamSetup:
    """A `Resources` factory: the scripted team as `fake:team` and a keyword retriever over
    "Item i is about number i." passages as `mem:team` (picklable: a Ray worker calls it to make
    its own, `run_generate(worker_resources=TeamSetup())`).

    The observer answers the number in the question (so every example is accepted); with
    `calls_log`, each model call appends "<role>\\t<question>" to that file (O_APPEND: safe from
    many processes), so a test can count model calls per example across workers."""

    latency_s: float = 0.0
    jitter: float = 0.0
    passages: int = 64
    calls_log: str | None = None

    def __call__(self) -> Resources:
        from masksearch.graph.testing import KeywordRetriever
        from masksearch.types import Passage

        inner = team_respond(lambda q: q.split()[1], question=item_question)
        log_path = self.calls_log

        def respond(messages: list[BaseMessage]) -> Any:
            if log_path is not None:
                text = messages_text(messages)
                role = next(
                    (
                        r
                        for r, k in (("planner", PLANNER_KEY), ("rewriter", REWRITER_KEY))
                        if k in text
                    ),
                    "observer",
                )
                log_line(log_path, f"{role}\t{item_question(text)}")
            return inner(messages)

        model = LatencyChatModel(respond=respond, latency_s=self.latency_s, jitter=self.jitter)
        passages = [
            Passage(f"p{i}", f"Topic {i}", f"Item {i} is about number {i}.")
            for i in range(self.passages)
        ]
        return Resources(
            models={"fake:team": model}, retrievers={"mem:team": KeywordRetriever(passages)}
        )


def item_question(prompt: str) -> str:
    """The question of a role prompt, or else the first "Item <i> is about number ..." line
    (a single-agent student prompt: `TeamSetup`'s questions are these)."""
    import re

    found = question_of(prompt)
    if not found and (m := re.search(r"Item \d+ is about number[^\n]*", prompt)):
        found = m.group(0).strip()
    return found


def log_line(path: str, line: str) -> None:
    """Append one line to `path` (O_APPEND: whole lines from many processes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def corpus_row(i: int) -> dict[str, str]:
    """A FlashRAG corpus line `d<i>` whose maskable words are `Alpha<i>`, `Beta<i>`, `Gamma<i>`
    and a number (input for masking tests; `span_model` proposes the three names)."""
    return {
        "id": f"d{i}",
        "contents": f"Topic {i}\nThe river Alpha{i} flows for {7 * i + 3} kilometres through the "
        f"valley of Beta{i} before it reaches the sea near the old town of Gamma{i}, where "
        "fishermen have lived for many centuries.",
    }


def span_model(latency_s: float = 0.0, calls_log: str | None = None) -> LatencyChatModel:
    """A chat model for `mask --strategy llm`: proposes the passage's `<Word><digits>` names
    (see `corpus_row`); with `calls_log`, each call appends the passage title to that file."""
    import json
    import re

    def respond(messages: list[BaseMessage]) -> str:
        text = messages_text(messages)
        title = re.search(r"Passage title: (.*)", text)
        body = text.split('Passage:\n"""', 1)[-1].split('"""', 1)[0]
        if calls_log is not None and title:
            log_line(calls_log, title.group(1).strip())
        names = list(dict.fromkeys(re.findall(r"\b[A-Z][a-z]+\d+\b", body)))
        return json.dumps({"spans": [{"text": n, "label": "LOC"} for n in names]})

    return LatencyChatModel(respond=respond, latency_s=latency_s, model_name="fake:spans")


@contextlib.contextmanager
def local_postgres(workdir: str | os.PathLike[str]) -> Iterator[str | None]:
    """A throwaway Postgres server (unix socket in `workdir`, trust auth) → its DSN.

    Yields `MASKSEARCH_TEST_POSTGRES_DSN` when set (a server you run), else starts one from the
    installed binaries (`initdb`/`pg_ctl`, run as the `postgres` user when this is root), else
    yields None: callers skip. The server is stopped (`-m immediate`) on exit."""
    dsn = os.environ.get("MASKSEARCH_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    import glob
    import shutil
    import subprocess

    bindir = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)
    initdb = shutil.which("initdb") or (bindir and os.path.join(bindir, "initdb"))
    if not initdb or not os.path.exists(initdb):
        yield None
        return
    pg_ctl = os.path.join(os.path.dirname(initdb), "pg_ctl")
    prefix: list[str] = []
    root = Path(workdir) / "pg"
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            yield None
            return
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for parent in list(root.parents)[:-1]:  # the server must reach its socket directory
            os.chmod(parent, os.stat(parent).st_mode | 0o711)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", 5400 + os.getpid() % 500

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *cmd], capture_output=True, text=True, timeout=120, cwd=root
        )

    made = run(initdb, "-D", str(data), "-A", "trust", "-U", "test")
    if made.returncode != 0:
        print(f"local_postgres: initdb failed: {made.stderr.strip()[-300:]}", file=sys.stderr)
        yield None
        return
    opts = f"-k {root} -p {port} -c listen_addresses='' -c fsync=off"
    started = run(pg_ctl, "-D", str(data), "-o", opts, "-w", "-l", str(root / "log"), "start")
    if started.returncode != 0:
        print(f"local_postgres: pg_ctl failed: {started.stderr.strip()[-300:]}", file=sys.stderr)
        yield None
        return
    try:
        yield f"postgresql://test@/postgres?host={root}&port={port}"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")


def masked_row(i: int, **over: Any) -> dict[str, Any]:
    """A valid one-span RAMP example `ex<i>` ("Item i is about number [mask]." → "i") as a JSON
    object, with fields replaced by `over`: input for generate and bad-input tests."""
    from masksearch.types import MaskedExample, Span

    row = MaskedExample(
        id=f"ex{i}",
        question=f"Item {i} is about number [mask].",
        answers=[str(i)],
        spans=[Span(0, len(str(i)), str(i))],
        text=str(i),
    ).to_dict()
    row.update(over)
    return row


def team_script(path: str | os.PathLike[str], answer: str = "Paris") -> Path:
    """Write a cycling `fake:` script for the multi-agent team (plan one search, rewrite it,
    answer `answer`); returns its path, for `--planner-model fake:<path>`."""
    import json

    p = Path(path)
    routes = {
        PLANNER_KEY: ["<think>Look it up.</think>\n<search>the masked fact</search>"],
        REWRITER_KEY: ['{"queries": ["capital city", "history"]}'],
        OBSERVER_KEY: [f"<think>Done.</think>\n<answer>{answer}</answer>"],
    }
    p.write_text(json.dumps({"cycle": True, "routes": routes}), encoding="utf-8")
    return p
