"""Offline teacher benchmark: the README's main job (`masksearch run`) on the embedded default model.

For each `--n` (default 8 and 32) it runs `masksearch run --n N` as a subprocess, exactly as a user
does, in a fresh work directory:

- cold: with an empty model/corpus cache (`MASKSEARCH_CACHE` in a temp dir: the corpus is built and
  the chunked GGUF joined and verified), reported for the first `--n` only;
- warm: a fresh work directory with the caches already filled (what every later run costs).

It prints wall time, accepted trajectories by k (the judge's rule, unchanged), malformed actions
(steps with a parse error), tracebacks on screen, the data-quality report by task and k
(`masksearch.quality`, the same checks as the run's summary: thoughts cut mid-sentence, thoughts
with foreign-script letters, answering observer thoughts quoting evidence found in the cited
result, near-duplicate rewrite pairs, mean thought length), and the local model's decode speed against the
binding's raw `create_completion` on the same prompt. Machine load (`uptime`) is printed beside the
figures: the numbers mean little on a busy machine.

    python benchmarks/offline_teacher.py                     # n = 8 and 32, cold + warm
    python benchmarks/offline_teacher.py --n 8 --no-cold --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

MODEL = "local:default"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load: " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_job(
    workdir: Path, n: int, cache: Path | None, extra: list[str], model: str = MODEL
) -> dict[str, Any]:
    env = dict(os.environ)
    if cache is not None:
        env["MASKSEARCH_CACHE"] = str(cache)
    cmd = [sys.executable, "-m", "masksearch.cli", "run", "--workdir", str(workdir), "--n", str(n)]
    cmd += ["--model", model, "--no-progress", *extra]
    load_before = uptime()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    screen = proc.stdout + proc.stderr
    out: dict[str, Any] = {
        "n": n,
        "model": model,
        "wall_s": round(wall, 1),
        "exit_code": proc.returncode,
        "tracebacks_on_screen": screen.count("Traceback (most recent call last)"),
        "load_before": load_before,
        "load_after": uptime(),
    }
    if proc.returncode not in (0, 1):
        out["screen_tail"] = screen[-2000:]
    summary_path = workdir / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        run = summary.get("run", summary)
        out["accepted"] = run.get("accepted")
        out["done"] = run.get("done")
        out["by_k"] = run.get("by_k")
        out["by_status"] = run.get("by_status")
        out["fail_reasons"] = run.get("fail_reasons")
    out.update(inspect_records(workdir / "trajectories.sqlite"))
    return out


def inspect_records(store_path: Path) -> dict[str, Any]:
    """Malformed actions (model steps with a parse error) and span accuracy from the store."""
    if not store_path.is_file():
        return {}
    from masksearch.store.trajectories import TrajectoryStore

    malformed: Counter[str] = Counter()
    steps = spans = spans_right = 0
    seconds = 0.0
    with TrajectoryStore(store_path) as st:
        records = list(st.records())
    for rec in records:
        k = len(rec.get("answers") or [])
        spans += k
        spans_right += round(float((rec.get("scores") or {}).get("span_recall", 0.0)) * k)
        for s in rec.get("steps", []):
            if s.get("agent") == "search":
                continue
            steps += 1
            seconds += float(s.get("latency_s") or 0.0)
            if s.get("parse_error"):
                malformed[s.get("agent", "?")] += 1
    from masksearch.quality import quality_report

    return {
        "records": len(records),
        "quality": quality_report(records).to_dict(),
        "model_steps": steps,
        "malformed_actions": sum(malformed.values()),
        "malformed_by_agent": dict(malformed),
        "spans_right": spans_right,
        "spans": spans,
        "model_s_per_example": round(seconds / len(records), 1) if records else None,
    }


def decode_speed(prompt_text: str, max_tokens: int = 128, spec: str = MODEL) -> dict[str, Any]:
    """Our LangChain model against llama-cpp-python's own `Llama.create_completion` (its public
    API, a second copy of the weights), same prompt, greedy, same number of new tokens (grammar
    off: see `grammar_speed`), one call at a time."""
    from langchain_core.messages import HumanMessage
    from llama_cpp import Llama

    from masksearch.models import load_chat_model

    model = load_chat_model(spec, max_tokens=max_tokens)
    rt = model.load()
    msgs = [HumanMessage(prompt_text)]
    tokens = rt.format([{"role": "user", "content": prompt_text}])
    llm = Llama(
        model_path=str(rt.path),
        n_ctx=rt.n_ctx,
        n_threads=rt.n_threads,
        n_threads_batch=rt.n_threads,
        n_batch=512,
        verbose=False,
    )

    def raw() -> tuple[int, float]:
        llm.reset()
        first = None
        n = 0
        for _ in llm.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, stream=True):
            n += 1
            if first is None:
                first = time.perf_counter()
        t1 = time.perf_counter()
        return n, (n - 1) / (t1 - first) if first and n > 1 else 0.0

    def ours() -> tuple[int, float]:
        rt.recent.clear()  # no earlier completion to draft from: the reply is new, as in the job
        out = model.invoke(msgs)
        return out.usage_metadata["output_tokens"], out.response_metadata["decode_tok_s"]

    ours()  # warm-up
    results: dict[str, list[float]] = {"raw": [], "ours": []}
    for _ in range(3):
        results["raw"].append(raw()[1])
        results["ours"].append(ours()[1])
    llm.close()
    best = {k: max(v) for k, v in results.items()}
    return {
        "prompt_tokens": len(tokens),
        "max_tokens": max_tokens,
        "raw_tok_s": round(best["raw"], 2),
        "ours_tok_s": round(best["ours"], 2),
        "ratio": round(best["ours"] / best["raw"], 3) if best["raw"] else None,
        "model": spec,
        "threads": rt.n_threads,
        "load": uptime(),
    }


def sample_prompt(workdir: Path) -> str:
    """The first masked example's planner prompt (the job's first model call)."""
    from masksearch import prompts

    masked = workdir / "masked.jsonl"
    question = "The [mask] was built in [mask]."
    if masked.is_file():
        with masked.open() as f:
            question = json.loads(f.readline())["question"]
    return prompts.planner_prompt(question)


def install_size(spec: str) -> int | None:
    """Bytes of the GGUF file an embedded model spec loads (what the packages install)."""
    from masksearch.models import embedded

    model = embedded.lookup(spec.partition(":")[2])
    return model.size if model else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--models", nargs="+", default=[MODEL], help="model specs to compare")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache run")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", type=Path, help="keep work directories under this directory")
    ap.add_argument("run_args", nargs="*", help="extra `masksearch run` arguments (after --)")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="offline-teacher-"))
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load": uptime()}, "runs": []}
    print(f"machine: {os.cpu_count()} CPUs; {results['machine']['load']}", flush=True)
    results["decode"] = []
    for model in args.models:
        tag = model.replace(":", "_").replace("/", "_")
        for i, n in enumerate(args.n):
            if i == 0 and not args.no_cold:
                cache = base / f"empty-cache-{tag}"
                r = run_job(base / f"cold-{tag}-{n}", n, cache, args.run_args, model)
                r["cache"] = "cold"
                results["runs"].append(r)
                print(json.dumps(r), flush=True)
            r = run_job(base / f"warm-{tag}-{n}", n, None, args.run_args, model)
            r["cache"] = "warm"
            results["runs"].append(r)
            print(json.dumps(r), flush=True)
        d = decode_speed(sample_prompt(base / f"warm-{tag}-{args.n[0]}"), spec=model)
        d["install_bytes"] = install_size(model)
        results["decode"].append(d)
        print(json.dumps(d), flush=True)
    print()
    print(
        "| model | cache | n | wall | accepted | by k | spans right | malformed | tracebacks | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        by_k = ", ".join(
            f"k={k} {v['accepted']}/{v['done']}" for k, v in (r.get("by_k") or {}).items()
        )
        print(
            f"| {r['model']} | {r['cache']} | {r['n']} | {r['wall_s']:.0f} s "
            f"| {r.get('accepted')}/{r.get('done')} | {by_k} "
            f"| {r.get('spans_right')}/{r.get('spans')} | {r.get('malformed_actions')} "
            f"| {r['tracebacks_on_screen']} | {r['load_before'].split('load average:')[-1].strip()} |"
        )
    print()
    print(
        "| model | cache | n | group | thoughts | cut mid-sentence | foreign script "
        "| answers quoting evidence | near-duplicate rewrite pairs | mean thought tokens | accepted |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        for name, g in ((r.get("quality") or {}).get("by_group") or {}).items():
            print(
                f"| {r['model']} | {r['cache']} | {r['n']} | {name} | {g['thoughts']} | {g['cut']} "
                f"| {g['foreign']} | {g['evidence']}/{g['answering']} "
                f"| {g['near_duplicates']}/{g['rewrite_pairs']} | {g['mean_thought_tokens']} "
                f"| {g['accepted']}/{g['records']} |"
            )
    for d in results["decode"]:
        size = d["install_bytes"]
        print(
            f"decode {d['model']}: ours {d['ours_tok_s']} tok/s vs raw llama-cpp-python "
            f"{d['raw_tok_s']} tok/s = {d['ratio']}x ({d['threads']} threads, prompt "
            f"{d['prompt_tokens']} tokens; {d['load']})"
            + (f"; weights {size / 1e6:.0f} MB" if size else "")
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
