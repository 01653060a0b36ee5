"""The Qwen2.5-1.5B recipe: `--dry-run` prints every stage of all six rows of the paper's table and
checks that each input a stage needs is made by an earlier stage (or exists)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "qwen2.5-1.5b" / "run.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def dry_run(tmp_path, *args, **env):
    full = {
        **os.environ,
        "CORPUS": str(tmp_path / "wiki.jsonl"),
        "TEACHER": "openai-compatible:teacher@http://127.0.0.1:9/v1",
        "W": str(tmp_path / "w"),
        **env,
    }
    return subprocess.run(
        ["bash", str(RECIPE), "--dry-run", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stages(out: str) -> dict[str, dict[str, list[str] | str]]:
    found = {}
    for block in out.split("\n\n"):
        m = re.search(r"^\[(\S+)\]\n  needs: (.*)\n  makes: (.*)\n  \$ (.*)$", block, re.M)
        if m:
            needs = [] if m[2] == "(nothing)" else m[2].split()
            found[m[1]] = {"needs": needs, "makes": m[3].split(), "cmd": m[4]}
    return found


def test_dry_run_prints_every_rows_stages_and_each_input_is_made_earlier(tmp_path):
    r = dry_run(tmp_path)
    assert r.returncode == 0, r.stderr
    s = stages(r.stdout)
    w = tmp_path / "w"
    # training of the four trained rows, each from the right model and data
    cmds = {name: v["cmd"] for name, v in s.items()}
    assert "train sft" in cmds["train-distill"] and "Qwen2.5-1.5B-Instruct" in cmds["train-distill"]
    assert "hotpotqa_trajectories.sqlite" in cmds["train-distill"]
    assert (
        "train rl" in cmds["train-search-r1"] and "hotpotqa_rl_questions" in cmds["train-search-r1"]
    )
    assert "ramp_trajectories.sqlite" in cmds["train-sft"]
    assert f"--model {w}/sft " in cmds["train-sft-sft"] and "hotpotqa_traj" in cmds["train-sft-sft"]
    assert "ramp_train.jsonl" in cmds["train-rl"] and "curriculum.enabled=true" in cmds["train-rl"]
    assert f"--model {w}/rl " in cmds["train-rl-rl"]
    # every row evaluated (RAG-PE and Agent-PE on the base model), then one report
    assert "'rag-pe agent-pe'" in cmds["eval-base"]
    for row in ("distill", "search-r1", "sft-sft", "rl-rl"):
        assert f"{w}/{row} " in cmds[f"eval-{row}"]
    assert "--pre-train SFT --post-train SFT" in cmds["eval-sft-sft"]
    assert "--pre-train RL --post-train RL" in cmds["eval-rl-rl"]
    assert list(s)[-1] == "report"
    # each input is made by an EARLIER stage (or is the corpus, which a dry run need not have)
    made: set[str] = {str(tmp_path / "wiki.jsonl")}
    for name, v in s.items():
        missing = [p for p in v["needs"] if p not in made]
        assert not missing, f"{name} needs {missing}"
        made.update(v["makes"])
    assert "pip install -e '.[train,deepspeed]'" in RECIPE.read_text()


def test_a_missing_input_is_named_and_rows_select_their_stages(tmp_path):
    r = dry_run(tmp_path, "--skip", "index")  # nothing else makes the index, none exists
    assert r.returncode == 2 and "needs" in r.stderr and f"{tmp_path}/w/index" in r.stderr
    (tmp_path / "w" / "index").mkdir(parents=True)  # made elsewhere: skipping it is fine
    assert dry_run(tmp_path, "--skip", "index").returncode == 0
    r = dry_run(tmp_path, "--rows", "search-r1")
    assert r.returncode == 0, r.stderr
    names = set(stages(r.stdout))
    assert "train-search-r1" in names and "eval-search-r1" in names
    assert not names & {"ramp-mask", "train-sft", "hotpotqa-trajectories", "eval-base"}
    bad = dry_run(tmp_path, "--rows", "sft-rl")
    assert bad.returncode == 2 and "unknown row" in bad.stderr


FAKE_VLLM = """#!/usr/bin/env bash
# a stand-in for `vllm serve`: a worker child (as vLLM's engine processes) and the server itself
sleep 300 &
echo "$!" >> "$FAKE_PIDS"
echo "$$" >> "$FAKE_PIDS"
wait
"""
FAKE_MASKSEARCH = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
if [ "$1 $2" = "eval report" ]; then mkdir -p "$3" && touch "$3/summary.md"; fi
if [ "$1 $2" = "eval run" ] && [ -n "${FAKE_HANG:-}" ]; then sleep 300; fi
exit 0
"""


def _fake_run(tmp_path, reuse=False, **env):
    """run.sh for the base-model rows with fake `vllm`, `curl` and `masksearch` on PATH and every
    input already there; returns (process, pid file, log)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=reuse)
    for name, text in (
        ("vllm", FAKE_VLLM),
        ("masksearch", FAKE_MASKSEARCH),
        ("curl", "#!/usr/bin/env bash\nexit 0\n"),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    w = tmp_path / "w"
    (w / "index").mkdir(parents=True, exist_ok=reuse)
    (w / "bench").mkdir(exist_ok=reuse)
    for d in ("hotpotqa", "musique", "2wikimultihopqa", "bamboogle", "fanoutqa", "freshqa"):
        (w / "bench" / f"{d}.jsonl").write_text("{}\n")
        (w / "bench" / f"{d}.file").write_text(str(w / "bench" / f"{d}.jsonl") + "\n")
    corpus = tmp_path / "wiki.jsonl"
    corpus.write_text("{}\n")
    full = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CORPUS": str(corpus),
        "TEACHER": "fake:teacher.json",
        "W": str(w),
        "FAKE_PIDS": str(tmp_path / "pids"),
        "FAKE_LOG": str(tmp_path / "log"),
        **env,
    }
    args = ["bash", str(RECIPE), "--rows", "rag-pe,agent-pe", "--skip", "index"]
    for d in ("hotpotqa", "musique", "2wikimultihopqa", "bamboogle", "fanoutqa", "freshqa"):
        args += ["--skip", f"bench-{d}"]
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own foreground group, as in a terminal
    )
    return proc, tmp_path / "pids", tmp_path / "log"


def _alive(pid_file: Path) -> list[int]:
    pids = [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


def _wait_gone(pid_file: Path, seconds: float = 20.0) -> list[int]:
    import time

    end = time.monotonic() + seconds
    while _alive(pid_file) and time.monotonic() < end:
        time.sleep(0.2)
    return _alive(pid_file)


def test_eval_servers_are_stopped_with_their_workers_and_stages_resume(tmp_path):
    proc, pids, log = _fake_run(tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert len(pids.read_text().split()) == 2  # the server and its worker were started
    assert not _wait_gone(pids)  # both stopped when the stage ended
    runs = [ln for ln in log.read_text().splitlines() if ln.startswith("eval run")]
    assert len(runs) == 2 and "-m rag-pe -m agent-pe" in runs[0] and "--retriever web" in runs[1]
    assert "== eval-base" in out and (tmp_path / "w" / ".done" / "eval-base").exists()
    # a rerun skips what is done: no server, no eval
    proc2, _, _ = _fake_run(tmp_path, reuse=True)
    out2, err2 = proc2.communicate(timeout=120)
    assert proc2.returncode == 0 and "== eval-base: done, skipped" in out2, err2
    assert len(pids.read_text().split()) == 2  # no new server


def test_an_interrupt_stops_the_server_group(tmp_path):
    import signal
    import time

    proc, pids, log = _fake_run(tmp_path, FAKE_HANG="1")
    end = time.monotonic() + 60
    while not (log.exists() and "eval run" in log.read_text()) and time.monotonic() < end:
        time.sleep(0.2)
    assert len(_alive(pids)) == 2  # server + worker running during the eval
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground group
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not _wait_gone(pids)
