"""Which embedded model should be the offline teacher? The observer's RAMP step, measured per model.

On the same masked examples (the first `--n` of a `masksearch run` work directory's
`masked.jsonl`: rule-masked passages of the embedded corpus), each candidate model runs the graph's
own observer node (`masksearch.nodes.multi_agent.observer`, last round: it must answer) on the
top-`--top-k` BM25 results for the masked text (what a good first search retrieves). A local model
answers as in `masksearch run`: it names the matching result, then fills one blank at a time under
the verbatim-span grammar. Reported per model: format validity (the observer's action parses as an
answer), masked spans right (the acceptance rule's per-span match), examples fully right
(`ramp_correct`, the acceptance rule), model seconds per example, decode tok/s on a plain prompt,
and the weights' size. Machine load (`uptime`) is printed: figures on a shared machine are lower
bounds.

    python benchmarks/teacher_models.py --workdir runs/default --n 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

CANDIDATES = ["local:smollm2-135m", "local:qwen2.5-coder-0.5b", "local:qwen2.5-coder-1.5b"]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def load_examples(workdir: Path, n: int) -> list[dict[str, Any]]:
    with (workdir / "masked.jsonl").open() as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


async def observe(spec: str, example: dict[str, Any], passages: list[Any], res: Any) -> Any:
    """The production observer node on one round of results, with no search left."""
    from masksearch import prompts
    from masksearch.context import Context
    from masksearch.nodes.multi_agent import observer

    query = prompts.masked_text(example["question"]).replace("[mask]", " ")
    ctx = Context(observer_model=spec, max_turns=1, max_tokens=192, retriever="bm25:default")
    state = {
        "question": example["question"],
        "turn": 1,
        "rounds": [
            {
                "turn": 1,
                "kind": "search",
                "think": "",
                "subquery": query[:200],
                "queries": [query[:200]],
                "observation": prompts.format_docs(passages),
                "passages": [p.to_dict() for p in passages],
            }
        ],
    }
    return await observer(state, SimpleNamespace(context=ctx), resources=res)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("runs/default"))
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=CANDIDATES)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from langchain_core.messages import HumanMessage

    from masksearch import prompts
    from masksearch.models import embedded, load_chat_model
    from masksearch.resources import Resources
    from masksearch.retrievers import load_retriever
    from masksearch.scoring import ramp_correct, span_matches
    from masksearch.tagformat import parse_action

    examples = load_examples(args.workdir, args.n)
    retriever = load_retriever(f"bm25:{args.workdir / 'index'}")
    queries = [prompts.masked_text(e["question"]).replace("[mask]", " ") for e in examples]
    hits = retriever.search(queries, args.top_k)
    found = sum(e["source_id"] in [p.id for p in h] for e, h in zip(examples, hits, strict=True))
    print(f"{len(examples)} examples, source passage retrieved for {found}; {uptime()}", flush=True)
    results = []
    for spec in args.models:
        res = Resources()
        model = load_chat_model(spec, max_tokens=128)
        t0 = time.perf_counter()
        model.load()
        row: dict[str, Any] = {"model": spec, "load_s": round(time.perf_counter() - t0, 1)}
        row.update(examples=0, valid=0, spans=0, spans_right=0, correct=0, model_s=0.0)
        for ex, passages in zip(examples, hits, strict=True):
            update = asyncio.run(observe(spec, ex, passages, res))
            step = update["steps"][-1]
            action = parse_action(step["output"])
            answers = ex["answers"]
            row["examples"] += 1
            row["model_s"] += float(step.get("latency_s") or 0.0)
            row["valid"] += action.kind == "answer"
            row["spans"] += len(answers)
            if action.kind == "answer":
                row["spans_right"] += sum(span_matches(action.answer, answers))
                row["correct"] += ramp_correct(action.answer, answers)
        plain = model.invoke([HumanMessage("Describe the Eiffel Tower in a long paragraph.")])
        m = embedded.lookup(spec.partition(":")[2])
        row["weights_mb"] = round(m.size / 1e6) if m else None
        row["decode_tok_s"] = plain.response_metadata.get("decode_tok_s")
        row["s_per_example"] = round(row["model_s"] / max(1, row["examples"]), 1)
        row["load"] = uptime()
        results.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(
        "| model | weights | valid format | spans right | examples right | decode tok/s | s/example |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['model']} | {r['weights_mb']} MB | {r['valid']}/{r['examples']} "
            f"| {r['spans_right']}/{r['spans']} | {r['correct']}/{r['examples']} "
            f"| {r['decode_tok_s']} | {r['s_per_example']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
