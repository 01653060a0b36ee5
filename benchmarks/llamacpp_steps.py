"""What one llama.cpp step costs on this machine: decode steps by rows, prompt reading by ubatch.

    python benchmarks/llamacpp_steps.py [--model qwen2.5-coder-1.5b] [--repack]

Decode: one context with 16 sequences of 200 cached tokens; a step evaluates one token in each of
`rows` sequences (ms per step, tokens per second). Prompt: a 480-token prompt read in ubatches of
512 and of 63 tokens (exact mode's size). Results go to benchmarks/RESULTS.md with the load.
"""

from __future__ import annotations

import argparse
import os
import time

from masksearch.models import embedded
from masksearch.models.llamacpp_capi import Context, Model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--repack", action="store_true", help="llama.cpp's repacked weight layouts")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    model = Model(embedded.gguf_path(args.model), repack=args.repack)
    toks = model.tokenize("word " * 600)
    ctx = Context(model, n_seq=16, n_batch=512, n_threads=args.threads, n_ctx=16384)
    for s in range(16):
        for i in range(200):
            ctx.add(toks[i], i, s, False)
        ctx.decode()
    for rows in (1, 2, 4, 8, 12, 16):
        start, n = time.perf_counter(), 6
        for _ in range(n):
            for r in range(rows):
                ctx.add(toks[r], 200, r, True)
            ctx.decode()
            for r in range(rows):
                ctx.forget(r, 200)
        dt = (time.perf_counter() - start) / n
        print(f"decode rows={rows}: {dt * 1000:.0f} ms/step, {rows / dt:.1f} tok/s", flush=True)
    ctx.close()
    for ub in (512, 63):
        ctx = Context(model, n_seq=1, n_batch=ub, n_threads=args.threads, n_ctx=4096)
        start = time.perf_counter()
        for s in range(0, 480, ub):
            for i, t in enumerate(toks[s : min(s + ub, 480)]):
                ctx.add(t, s + i, 0, False)
            ctx.decode()
        print(f"prompt ubatch={ub}: {480 / (time.perf_counter() - start):.1f} tok/s", flush=True)
        ctx.close()
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
