"""`masksearch chat` on a real terminal (tmux): tokens stream, two questions, Ctrl-C at the prompt
quits at once, `--resume` shows the thread's history. Skipped when tmux is not installed."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """A private tmux server (own socket: the caller's environment, no shared sessions)."""

    def __init__(self) -> None:
        self.socket = f"ms-test-{uuid.uuid4().hex[:8]}"

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20
        )
        return out.stdout

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-s", "chat", "-x", "200", "-y", "60", command)

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "chat", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "chat")

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} (x{count}) did not appear; screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20)


@pytest.fixture
def term():
    t = Tmux()
    yield t
    t.kill()


def test_chat_two_questions_ctrl_c_and_resume(term, tmp_path, tiny_corpus_path):
    from masksearch.retrievers.build import build_index

    build_index(tiny_corpus_path, tmp_path / "idx", kind="bm25", show_progress=False)
    env = f"PYTHONPATH={shlex.quote(str(REPO))} NO_COLOR=1"
    chat = (
        f"cd {shlex.quote(str(tmp_path))} && {env} {shlex.quote(sys.executable)} -m masksearch.cli "
        f"chat -m fake:example -r bm25:{tmp_path / 'idx'} --checkpoint sqlite:///{tmp_path}/c.db"
    )
    term.start(f"{chat} --thread tty-1; echo EXITED $?; sleep 60")
    term.wait_for("question> ")
    term.send("Who designed the Eiffel Tower?", "Enter")
    screen = term.wait_for("==> Gustave Eiffel")
    # the model's tokens stream on the terminal, then the step summaries
    assert "[planner] <think>The question asks who designed the Eiffel Tower." in screen
    assert (
        "[rewriter] queries: Eiffel Tower designer | Gustave Eiffel engineering company" in screen
    )
    term.wait_for("question> ", count=2)
    term.send("Who built it?", "Enter")
    term.wait_for("==> Gustave Eiffel", count=2)
    term.wait_for("question> ", count=3)
    started = time.time()
    term.send("C-c")  # at the prompt: quits at once, no Enter needed
    screen = term.wait_for("EXITED 0", timeout=15)
    assert time.time() - started < 10
    assert (
        "Traceback" not in screen
        and "thread tty-1 (continue: masksearch chat --thread tty-1)" in screen
    )
    term.kill()

    term2 = Tmux()
    try:
        term2.start(f"{chat} --resume; echo EXITED $?; sleep 60")
        screen = term2.wait_for("question> ")
        assert "thread tty-1" in screen
        assert "Q: Who designed the Eiffel Tower?\nA: Gustave Eiffel\nQ: Who built it?" in screen
        term2.send("C-c")
        assert "Traceback" not in term2.wait_for("EXITED 0", timeout=15)
    finally:
        term2.kill()
    assert os.path.exists(tmp_path / "c.db")
