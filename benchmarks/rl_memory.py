"""Peak memory (RSS) of RL rollouts with HF `generate`, by how many contexts one call takes.

A GRPO step generates the whole generation batch (`per_device_train_batch_size ×
steps_per_generation` episodes) through `SearchRollout`; every turn re-reads the episode's whole
context (prompt + earlier turns + retrieved `<information>`). On CPU, PyTorch's attention with a
padding mask materialises the (batch × heads × length × length) scores of a layer in fp32, and the
KV cache holds (batch × length) tokens of every layer, so one call over 40 contexts of 3,500 tokens
needs tens of GB for a 135M policy. `rollout_batch_size` caps the contexts per `generate` call.

    python benchmarks/rl_memory.py --model tiny --episodes 32 --context 2048 --chunk 0
    python benchmarks/rl_memory.py --model tiny --episodes 32 --context 2048 --chunk 4

Each run is one process (peak RSS = `ru_maxrss`), one rollout turn per episode: `--episodes`
contexts of `--context` tokens (a long retrieved block), `--new` generated tokens each. Prints
one JSON line: RSS after loading, peak RSS, the rollout's seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from types import SimpleNamespace


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(model: str):
    from masksearch.training.smoke import offline_tokenizer, smollm2_dir, tiny_model

    tok = offline_tokenizer()
    if model == "tiny":
        return tok, tiny_model(tok, hidden=256, layers=4)
    if model == "smollm2":
        from transformers import AutoModelForCausalLM

        from masksearch.training.smoke import SMOLLM2_GGUF

        return tok, AutoModelForCausalLM.from_pretrained(str(smollm2_dir()), gguf_file=SMOLLM2_GGUF)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(model), AutoModelForCausalLM.from_pretrained(model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 | tiny | an HF model directory")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--context", type=int, default=1024, help="tokens of context per episode")
    ap.add_argument("--new", type=int, default=8, help="tokens generated per episode")
    ap.add_argument("--chunk", type=int, default=0, help="rollout_batch_size (0 = all at once)")
    args = ap.parse_args()

    import torch
    from accelerate import Accelerator

    from masksearch.training.rollout import SearchRollout

    torch.set_num_threads(2)
    tok, model = load(args.model)
    model.eval()
    loaded = _rss_mib()
    filler = tok(" ".join(f"word{i}" for i in range(args.context)), add_special_tokens=False)
    contexts = [filler["input_ids"][: args.context] for _ in range(args.episodes)]
    contexts = [c[: args.context - i] for i, c in enumerate(contexts)]  # ragged: padding masks
    rollout = SearchRollout(None, tok, rollout_batch_size=args.chunk or len(contexts))
    trainer = SimpleNamespace(
        accelerator=Accelerator(cpu=True),
        model_wrapped=model,
        args=SimpleNamespace(ds3_gather_for_generation=True),
        use_vllm=False,
    )
    gen = rollout.trainer_generate(trainer)
    t0 = time.perf_counter()
    out, _ = gen(contexts, args.new, ("</search>", "</answer>"))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "model": args.model,
                "parameters": sum(p.numel() for p in model.parameters()),
                "episodes": args.episodes,
                "context_tokens": args.context,
                "new_tokens": args.new,
                "rollout_batch_size": args.chunk or "all",
                "rss_after_load_mib": round(loaded),
                "peak_rss_mib": round(peak),
                "rollout_s": round(seconds, 1),
                "generated": sum(len(o) for o in out),
            }
        )
    )


if __name__ == "__main__":
    main()
