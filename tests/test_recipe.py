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
