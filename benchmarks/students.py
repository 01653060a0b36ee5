"""Students from shipped weights on a CPU box: conversion, SFT step time, served decode speed, eval
speed.

- `convert`: seconds to turn the embedded GGUF into the checked HF checkpoint (first run; then
  cached) and to write it back as a student GGUF (Q8_0, F16).
- `sft`: seconds per optimizer step of `train sft` on SmolLM2-135M (full fine-tuning, fp32 or
  `--bf16` autocast over fp32 weights, batch 1 × grad-accum `--accum`, sequences of the given
  records), measured between steps 2..N.
- `decode`: llama.cpp decode tokens/s of the base GGUF (Q4_1) and of the student GGUFs, the same
  prompt and 2 threads, best of `--reps`.
- `rollout`: one GRPO rollout batch (`--questions` questions × `--generations` episodes at
  temperature 1, up to 4 turns, the recipe's retriever) with the SmolLM2-135M policy as training
  holds it (fp32; `--policy` a trained checkpoint instead), decoded by HF `generate` and by llama.cpp (`training.llamacpp_rollout`, the
  weights written to Q8_0 first: that sync is timed apart); seconds, turns and tokens/s of each.
- `eval`: wall time of `masksearch eval run -m masksearch` with the student GGUF on the first
  `--questions` questions of a FlashRAG file (e.g. the offline bench's squad_test.jsonl), and the
  400-question estimate.

    python benchmarks/students.py convert decode
    python benchmarks/students.py sft --steps 6 --records runs/cpu-small/teacher/qa.sqlite
    python benchmarks/students.py rollout --data runs/cpu-small/bench/squad_train.jsonl \
        --retriever bm25:runs/cpu-small/bench/index --questions 2
    python benchmarks/students.py eval --data runs/cpu-small/bench/squad_test.jsonl \
        --retriever bm25:runs/cpu-small/bench/index --questions 20

Every line carries the 1-minute load average (`os.getloadavg`): the box may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE = "local:smollm2-135m"
PROMPT = "Write one paragraph about the history of the city of Paris."


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def bench_convert(work: Path) -> dict[str, Any]:
    from masksearch.models import students

    t0 = time.perf_counter()
    ckpt = students.hf_checkpoint(BASE)
    convert_s = time.perf_counter() - t0
    out: dict[str, Any] = {"checkpoint": str(ckpt), "convert_s": round(convert_s, 1)}
    for qtype in ("q8_0", "f16"):
        t0 = time.perf_counter()
        path = students.write_student_gguf(ckpt, BASE, work / f"student-{qtype}.gguf", qtype=qtype)
        out[f"write_{qtype}_s"] = round(time.perf_counter() - t0, 1)
        out[f"size_{qtype}_mb"] = round(path.stat().st_size / 1e6, 1)
    print(f"convert: {out} ({load()})", flush=True)
    return out


def decode_tps(gguf: str | Path, tokens: int, reps: int) -> float:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=2, verbose=False, seed=0)
    ids = llm.tokenize(PROMPT.encode(), add_bos=True)
    best = 0.0
    for _ in range(reps):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        n = 0
        for _tok in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            n += 1
            if n == tokens:
                break
        dt = time.perf_counter() - t1 - (t1 - t0)  # generate re-evaluates the prompt once
        best = max(best, n / max(dt, 1e-9))
    llm.close()
    return best


def bench_decode(work: Path, tokens: int, reps: int) -> dict[str, Any]:
    from masksearch.models import embedded

    out: dict[str, Any] = {}
    files = {"base_q4_1": embedded.gguf_path("smollm2-135m")}
    for qtype in ("q8_0", "f16"):
        p = work / f"student-{qtype}.gguf"
        if p.is_file():
            files[f"student_{qtype}"] = p
    for name, path in files.items():
        out[name] = round(decode_tps(path, tokens, reps), 1)
        print(f"decode {name}: {out[name]} tok/s ({load()})", flush=True)
    return out


def bench_sft(
    work: Path,
    steps: int,
    records: str | None,
    accum: int,
    bf16: bool = False,
    checkpointing: bool = True,
    lora: bool = False,
) -> dict[str, Any]:
    from transformers import TrainerCallback

    from masksearch.training.config import load_settings
    from masksearch.training.sft import train_sft
    from masksearch.training.smoke import example_record

    if records is None:
        path = work / "records.jsonl"
        path.write_text(
            "".join(json.dumps({**example_record(), "id": f"r{i}"}) + "\n" for i in range(32))
        )
        records = str(path)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            times.append(time.perf_counter())

    settings = load_settings(
        "sft",
        None,
        {
            "model": BASE,
            "records": records,
            "accepted_only": False,
            "output_dir": str(work / "sft"),
            "max_steps": steps,
            "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": accum,
            "save_strategy": "no",
            "report_to": "none",
            "logging_steps": 1,
            "max_length": 2048,
            # bf16 autocast over fp32 master weights; on a CPU it has to be asked for
            **({"bf16": True, "use_cpu": True} if bf16 else {}),
            "activation_checkpointing": checkpointing,  # TRL's default: on
            # LoRA adapters (r 16, all linear layers) over a frozen base: the project's defaults
            **({"lora": {"enabled": True}} if lora else {}),
        },
    )
    stats = train_sft(settings, callbacks=[Clock()], save=False)
    per_step = [b - a for a, b in zip(times, times[1:], strict=False)]
    out = {
        "steps": len(times),
        "s_per_step": round(sum(per_step) / len(per_step), 2) if per_step else None,
        "first_step_s": None,
        "accum": accum,
        "bf16": bf16,
        "activation_checkpointing": checkpointing,
        "lora": lora,
        "examples": stats["examples"],
        "label_tokens": stats["label_tokens"],
    }
    print(f"sft: {out} ({load()})", flush=True)
    return out


def bench_eval(
    work: Path, data: str, retriever: str, questions: int, model: str, concurrency: int = 1
) -> dict:
    out_dir = work / f"eval-c{concurrency}"
    cmd = [
        sys.executable,
        "-m",
        "masksearch.cli",
        "eval",
        "run",
        "-d",
        f"bench={data}",
        "-m",
        "masksearch",
        "--model",
        model,
        "--retriever",
        retriever,
        "--max-turns",
        "4",
        "--limit",
        str(questions),
        "--out",
        str(out_dir),
        "--concurrency",
        str(concurrency),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (out_dir / "results.jsonl").read_text().splitlines() if x]
    per_q = sum(float(r["latency_s"]) for r in rows) / len(rows)
    out = {
        "questions": len(rows),
        "wall_s": round(wall, 1),
        "mean_latency_s": round(per_q, 2),
        "concurrency": concurrency,
        # questions in flight share one llama.cpp engine: the wall clock (model load included)
        # is what 400 questions cost
        "estimate_400_min": round(400 * wall / len(rows) / 60, 1),
        "recall": round(
            100 * sum(float((r.get("scores") or {}).get("recall") or 0) for r in rows) / len(rows),
            1,
        ),
        "failed": sum(1 for r in rows if r.get("error")),
        "searches_per_q": round(sum(int(r.get("search_calls") or 0) for r in rows) / len(rows), 2),
        "model": model,
    }
    print(f"eval: {out} ({load()})", flush=True)
    return out


def bench_rollout(
    work: Path,
    data: str,
    retriever: str,
    questions: int,
    generations: int,
    engines: list[str],
    policy: str = BASE,
    seed: int = 0,
) -> dict[str, Any]:
    from types import SimpleNamespace

    from accelerate import Accelerator

    from masksearch.prompts import render_student_prompt
    from masksearch.retrievers import load_retriever
    from masksearch.student import Decoding
    from masksearch.training.config import ModelSettings
    from masksearch.training.data import load_questions
    from masksearch.training.llamacpp_rollout import LlamaCppGenerator
    from masksearch.training.modeling import load_model, load_tokenizer
    from masksearch.training.rollout import SearchRollout

    tok = load_tokenizer(ModelSettings(model=policy))
    tok.padding_side = "left"
    model = load_model(ModelSettings(model=policy)).eval()
    qs = load_questions(data, limit=questions)
    prompts = [render_student_prompt(q["question"], q.get("task")) for q in qs]
    prompts = [p for p in prompts for _ in range(generations)]
    decoding = Decoding(temperature=1.0)
    rows: dict[str, Any] = {}
    for engine in engines:
        llama = (
            LlamaCppGenerator(
                BASE, decoding, eos_id=tok.eos_token_id, workdir=work, n_ctx=4096, seed=seed
            )
            if engine == "llama_cpp"
            else None
        )
        ro = SearchRollout(
            load_retriever(retriever),
            tok,
            max_turns=4,
            max_completion_length=2048,
            decoding=decoding,
            policy_generator=llama,
            seed=seed,
        )
        trainer = SimpleNamespace(
            model=model,
            model_wrapped=model,
            accelerator=Accelerator(cpu=True),
            args=SimpleNamespace(ds3_gather_for_generation=True),
            state=SimpleNamespace(global_step=0),
        )
        t0 = time.perf_counter()
        gen = ro.trainer_generate(trainer)
        sync_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        trajs = ro.run(prompts, gen)
        seconds = time.perf_counter() - t0
        if llama is not None:
            llama.close()
        turns = sum(sum(1 for m in t.turns if m["role"] == "assistant") for t in trajs)
        generated = sum(t.model_tokens for t in trajs)
        rows[engine] = {
            "episodes": len(trajs),
            "sync_s": round(sync_s, 1),
            "rollout_s": round(seconds, 1),
            "turns": turns,
            "generated_tokens": generated,
            "generated_tokens_per_s": round(generated / seconds, 1),
            "searches": sum(t.searches for t in trajs),
            "statuses": sorted({t.status for t in trajs}),
            "policy": policy,
        }
        print(f"rollout {engine}: {rows[engine]} ({load()})", flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", nargs="*", default=["convert", "decode"])
    p.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--bf16", action="store_true", help="sft: bf16 autocast on the CPU")
    p.add_argument(
        "--no-checkpointing", action="store_true", help="sft: no activation checkpointing"
    )
    p.add_argument("--lora", action="store_true", help="sft: LoRA adapters, not full weights")
    p.add_argument("--records", default=None)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--data", default=None)
    p.add_argument("--retriever", default=None)
    p.add_argument("--questions", type=int, default=10)
    p.add_argument("--model", default=None, help="eval: model spec (default: the Q8_0 student)")
    p.add_argument("--concurrency", type=int, default=1, help="eval: questions in flight")
    p.add_argument("--generations", type=int, default=4, help="rollout: episodes a question")
    p.add_argument("--policy", default=None, help="rollout: checkpoint (default: the base)")
    p.add_argument(
        "--engines", default="llama_cpp,hf", help="rollout: engines to time (comma-separated)"
    )
    p.add_argument("--json", default=None)
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="students-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"load_start": os.getloadavg()[0]}
    if "convert" in args.what:
        report["convert"] = bench_convert(work)
    if "decode" in args.what:
        report["decode"] = bench_decode(work, args.tokens, args.reps)
    if "sft" in args.what:
        report["sft"] = bench_sft(
            work,
            args.steps,
            args.records,
            args.accum,
            args.bf16,
            not args.no_checkpointing,
            args.lora,
        )
    if "rollout" in args.what:
        if not (args.data and args.retriever):
            p.error("rollout needs --data and --retriever")
        report["rollout"] = bench_rollout(
            work,
            args.data,
            args.retriever,
            args.questions,
            args.generations,
            args.engines.split(","),
            args.policy or BASE,
        )
    if "eval" in args.what:
        if not (args.data and args.retriever):
            p.error("eval needs --data and --retriever")
        model = args.model or f"local:{work / 'student-q8_0.gguf'}"
        report["eval"] = bench_eval(
            work, args.data, args.retriever, args.questions, model, args.concurrency
        )
    report["load_end"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from masksearch.cli import error_line
    from masksearch.errors import MaskSearchError

    try:
        raise SystemExit(main())
    except (MaskSearchError, OSError) as e:  # bad input (e.g. --records): one line, exit 2
        print(error_line(e), file=sys.stderr)
        raise SystemExit(2) from None
