"""Which embedded model should be the offline teacher? The observer's RAMP step, measured per model.

On the same masked examples (the first `--n` of a `masksearch run` work directory's
`masked.jsonl`: rule-masked passages of the embedded corpus), each candidate model gets the
teacher's observer prompt with the top-`--top-k` BM25 results for the masked text (what the first
search round retrieves) and answers under the observer's RAMP grammar. Reported per model: format
validity (the output parses as an action), how often it answered, masked spans right (the
acceptance rule's per-span match), examples fully right (`ramp_correct`), decode tok/s, seconds
per call, and the weights' size. Machine load (`uptime`) is printed: figures on a shared machine
are lower bounds.

    python benchmarks/teacher_models.py --workdir runs/default --n 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

CANDIDATES = ["local:smollm2-135m", "local:qwen2.5-coder-0.5b", "local:qwen2.5-coder-1.5b"]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def load_examples(workdir: Path, n: int) -> list[dict[str, Any]]:
    with (workdir / "masked.jsonl").open() as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


def observer_prompt(question: str, observation: str) -> str:
    from masksearch import prompts

    prompt = prompts.OBSERVER.substitute(
        question=question,
        history=prompts.render_history([]),
        subquery=prompts.masked_text(question)[:200],
        queries=prompts.masked_text(question)[:200],
        observation=observation,
        budget=prompts.OBSERVER_BUDGET.substitute(left=1),
    )
    return prompt + "\n" + prompts.ramp_observer_note(question)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("runs/default"))
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=CANDIDATES)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from langchain_core.messages import HumanMessage

    from masksearch import grammars, prompts
    from masksearch.models import embedded, load_chat_model
    from masksearch.retrievers import load_retriever
    from masksearch.scoring import ramp_correct, span_matches
    from masksearch.tagformat import parse_action

    examples = load_examples(args.workdir, args.n)
    retriever = load_retriever(f"bm25:{args.workdir / 'index'}")
    queries = [prompts.masked_text(e["question"]).replace("[mask]", " ") for e in examples]
    hits = retriever.search(queries, args.top_k)
    print(f"{len(examples)} examples; {uptime()}", flush=True)
    results = []
    for spec in args.models:
        model = load_chat_model(spec, max_tokens=192)
        t0 = time.perf_counter()
        model.load()
        load_s = time.perf_counter() - t0
        row: dict[str, Any] = {"model": spec, "load_s": round(load_s, 1), "examples": 0}
        row.update(valid=0, answered=0, spans=0, spans_right=0, correct=0, tokens=0, decode_s=0.0)
        row["wall_s"] = 0.0
        for ex, passages in zip(examples, hits, strict=True):
            texts = [t for p in passages for t in (p.title, p.text)]
            prompt = observer_prompt(ex["question"], prompts.format_docs(passages))
            k = prompts.count_masks(ex["question"])
            fmt = grammars.ramp_grammar(k, texts, may_search=True)
            t = time.perf_counter()
            out = model.invoke([HumanMessage(prompt)], output_format=fmt)
            row["wall_s"] += time.perf_counter() - t
            meta = out.response_metadata
            row["tokens"] += out.usage_metadata["output_tokens"]
            row["decode_s"] += meta.get("decode_s") or 0.0
            action = parse_action(out.content)
            row["examples"] += 1
            row["valid"] += action.kind != "invalid"
            answers = ex["answers"]
            row["spans"] += len(answers)
            if action.kind == "answer":
                row["answered"] += 1
                row["spans_right"] += sum(span_matches(action.answer, answers))
                row["correct"] += ramp_correct(action.answer, answers)
        m = embedded.lookup(spec.partition(":")[2])
        row["weights_mb"] = round(m.size / 1e6) if m else None
        row["decode_tok_s"] = round(row["tokens"] / row["decode_s"], 1) if row["decode_s"] else None
        row["s_per_call"] = round(row["wall_s"] / max(1, row["examples"]), 1)
        row["load"] = uptime()
        results.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(
        "| model | weights | valid format | answered | spans right | examples right | decode tok/s | s/call |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['model']} | {r['weights_mb']} MB | {r['valid']}/{r['examples']} "
            f"| {r['answered']}/{r['examples']} | {r['spans_right']}/{r['spans']} "
            f"| {r['correct']}/{r['examples']} | {r['decode_tok_s']} | {r['s_per_call']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
