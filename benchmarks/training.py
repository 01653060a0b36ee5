"""Training throughput benchmark.

CPU (any box):
- `sft`: SFT tokens/s on the tiny random Llama (SmolLM2 tokenizer, `training.smoke`), one process
  vs 2-process DDP (`accelerate launch --multi_gpu --num_processes 2`, gloo on CPU). Tokens are
  every input token the optimizer saw (all ranks), over the wall time of `trainer.train()`.
- `rollout`: GRPO rollout turns/s with HF `generate` (the `SearchRollout` the trainer uses, the
  tiny model as policy, an in-memory retriever): assistant turns generated per second, and
  generated tokens per second.

GPU (`--gpu`): `sft` runs the 1.5B recipe's SFT config (`recipes/qwen2.5-1.5b/sft.yaml`) for a
few steps on the local model directory or hub id given by `--model`, reporting tokens/s and MFU
(6 × parameters × tokens/s ÷ the GPU's peak dense bf16 FLOP/s, `--peak-tflops`); `rollout` runs
the same rollout as above with that model as the policy (fp32 weights, as training holds them)
on the GPU.

    python benchmarks/training.py                       # sft (1 vs 2 processes) + rollout
    python benchmarks/training.py sft --steps 8 --json out.json
    python benchmarks/training.py rollout --prompts 16 --max-turns 4
    python benchmarks/training.py --gpu --model Qwen/Qwen2.5-1.5B-Instruct --records data/traj.sqlite

Every report line carries the 1-minute load average (`os.getloadavg`): the box may be shared.
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


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def token_counter() -> Any:
    """A trainer callback keeping TRL's `num_tokens` log (input tokens seen, all ranks) and the
    wall time of the training loop itself (`seconds`, setup excluded)."""
    from transformers import TrainerCallback

    class Tokens(TrainerCallback):
        seen = 0.0
        seconds = 0.0
        _start = 0.0

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            Tokens._start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
            Tokens.seconds = time.perf_counter() - Tokens._start

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs and "num_tokens" in logs:
                Tokens.seen = float(logs["num_tokens"])

    return Tokens()


# -- SFT tokens/s -----------------------------------------------------------------------------


def sft_worker(out: str, steps: int, batch: int, max_length: int) -> None:
    """One rank: a few SFT steps on the tiny model; rank 0 writes tokens and seconds."""
    from accelerate import PartialState

    from masksearch.training.config import build_settings
    from masksearch.training.sft import train_sft
    from masksearch.training.smoke import (
        TINY_CPU_TRAINER,
        example_record,
        offline_tokenizer,
        tiny_model,
    )

    state = PartialState()
    tok = offline_tokenizer()
    model = tiny_model(tok, hidden=256, layers=4)
    settings = build_settings(
        "sft",
        {
            **TINY_CPU_TRAINER,
            "output_dir": f"{out}/sft",
            "max_steps": steps,
            "max_length": max_length,
            "per_device_train_batch_size": batch,
            "gradient_accumulation_steps": 1,
        },
    )
    records = [example_record(i) for i in range(steps * batch * state.num_processes)]
    counter = token_counter()
    started = time.perf_counter()
    train_sft(
        settings, records=records, model=model, tokenizer=tok, save=False, callbacks=[counter]
    )
    seconds = time.perf_counter() - started
    tokens = counter.seen
    if state.is_main_process:
        Path(out, "sft.json").write_text(
            json.dumps({"tokens": tokens, "seconds": seconds, "world": state.num_processes})
        )


def run_sft(procs: int, steps: int, batch: int, max_length: int) -> dict[str, Any]:
    from masksearch.training.smoke import cpu_launch_command

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // procs)),
        }
        worker = [__file__, "_sft_worker", tmp, str(steps), str(batch), str(max_length)]
        cmd = [sys.executable, *worker] if procs == 1 else cpu_launch_command(procs, 29633, *worker)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stderr[-3000:])
        data = json.loads(Path(tmp, "sft.json").read_text())
    return {
        "processes": procs,
        "tokens": data["tokens"],
        "seconds": round(data["seconds"], 2),
        "tokens_per_s": round(data["tokens"] / data["seconds"], 1),
        "load": load(),
    }


# -- rollout turns/s ----------------------------------------------------------------------------


def run_rollout(
    prompts: int, max_turns: int, turn_tokens: int, model_dir: str | None = None
) -> dict[str, Any]:
    """Rollout throughput: the tiny model on CPU, or (`model_dir`) that policy loaded as training
    loads it (fp32 weights) on the accelerator's device (the GPU when there is one)."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from masksearch.prompts import render_student_prompt
    from masksearch.training.rollout import SearchRollout
    from masksearch.training.smoke import FakeRetriever, offline_tokenizer, tiny_model

    if model_dir is None:
        accelerator = Accelerator(cpu=True)
        tok = offline_tokenizer()
        model = tiny_model(tok, hidden=256, layers=4)
    else:
        from masksearch.training.config import ModelSettings
        from masksearch.training.modeling import load_model, load_tokenizer

        accelerator = Accelerator()
        tok = load_tokenizer(ModelSettings(model=model_dir))
        model = load_model(ModelSettings(model=model_dir))
    tok.padding_side = "left"
    model = model.to(accelerator.device).eval()
    trainer = SimpleNamespace(
        model_wrapped=model,
        accelerator=accelerator,
        args=SimpleNamespace(ds3_gather_for_generation=True),
    )
    ro = SearchRollout(
        FakeRetriever(),
        tok,
        max_turns=max_turns,
        max_turn_tokens=turn_tokens,
        max_completion_length=max_turns * (turn_tokens + 300) + turn_tokens,
    )
    gen = ro.trainer_generate(trainer)
    batch = [
        render_student_prompt(f"When was the Eiffel Tower built? ({i})") for i in range(prompts)
    ]
    started = time.perf_counter()
    trajs = ro.run(batch, gen)
    seconds = time.perf_counter() - started
    turns = sum(sum(1 for m in t.turns if m["role"] == "assistant") for t in trajs)
    generated = sum(sum(t.env_mask) for t in trajs)
    return {
        "device": str(accelerator.device),
        "prompts": prompts,
        "turns": turns,
        "generated_tokens": generated,
        "seconds": round(seconds, 2),
        "turns_per_s": round(turns / seconds, 2),
        "generated_tokens_per_s": round(generated / seconds, 1),
        "statuses": sorted({t.status for t in trajs}),
        "load": load(),
    }


# -- GPU: the 1.5B recipe ------------------------------------------------------------------------


def run_gpu(model: str, records: str | None, steps: int, peak_tflops: float) -> dict[str, Any]:
    import torch

    from masksearch.training.config import load_settings
    from masksearch.training.modeling import load_model
    from masksearch.training.sft import train_sft
    from masksearch.training.smoke import example_record

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA GPU")
    settings = load_settings(
        "sft",
        ROOT / "recipes" / "qwen2.5-1.5b" / "sft.yaml",
        {
            "model": model,
            "max_steps": steps,
            "gradient_accumulation_steps": 1,
            "per_device_train_batch_size": 4,
            "save_strategy": "no",
            "report_to": "none",
            "logging_steps": 1,
            "output_dir": tempfile.mkdtemp(),
        },
    )
    recs = None if records else [example_record(i) for i in range(4 * steps)]
    if records:
        settings.records = records
    policy = load_model(settings, lora=settings.lora)
    n_params = sum(p.numel() for p in policy.parameters())
    counter = token_counter()
    stats = train_sft(settings, records=recs, model=policy, save=False, callbacks=[counter])
    seconds = counter.seconds
    tps = counter.seen / seconds
    return {
        "gpu": torch.cuda.get_device_name(0),
        "steps": stats["global_step"],
        "tokens": counter.seen,
        "tokens_per_s": round(tps, 1),
        "mfu": round(6 * n_params * tps / (peak_tflops * 1e12), 4),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_sft_worker":
        _, _, out, steps, batch, max_length = sys.argv
        sft_worker(out, int(steps), int(batch), int(max_length))
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("what", nargs="*", help="sft and/or rollout (default: both)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-turns", type=int, default=2)
    ap.add_argument("--turn-tokens", type=int, default=32)
    ap.add_argument("--gpu", action="store_true", help="run the 1.5B recipe's SFT on a GPU")
    ap.add_argument("--model", default="Qwen/Qwen2.5-1.5B-Instruct")
    ap.add_argument("--records", default=None)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="H100 SXM dense bf16")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.what = args.what or ["sft", "rollout"]
    if set(args.what) - {"sft", "rollout"}:
        ap.error("what: choose sft and/or rollout")
    results: dict[str, Any] = {}
    if args.gpu:
        if "sft" in args.what:
            results["gpu_sft"] = run_gpu(args.model, args.records, args.steps, args.peak_tflops)
            print("gpu sft:", results["gpu_sft"])
        if "rollout" in args.what:
            r = run_rollout(args.prompts, args.max_turns, args.turn_tokens, model_dir=args.model)
            results["gpu_rollout"] = r
            print("gpu rollout:", r)
    else:
        if "sft" in args.what:
            for procs in (1, 2):
                r = run_sft(procs, args.steps, args.batch, args.max_length)
                results[f"sft_{procs}proc"] = r
                print(
                    f"SFT {procs} process(es): {r['tokens_per_s']} tokens/s ({r['tokens']} tokens in {r['seconds']} s; {r['load']})"
                )
        if "rollout" in args.what:
            r = run_rollout(args.prompts, args.max_turns, args.turn_tokens)
            results["rollout"] = r
            print(
                f"rollout (HF generate): {r['turns_per_s']} turns/s, {r['generated_tokens_per_s']} "
                f"generated tokens/s ({r['turns']} turns, {r['prompts']} prompts, {r['seconds']} s; {r['load']})"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
