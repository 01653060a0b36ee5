"""Wiring for `masksearch eval run`: parse specs, load datasets, build methods, run, report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from masksearch.errors import ConfigError, InputError
from masksearch.eval.datasets import DatasetSpec, load_items
from masksearch.eval.methods import METHODS, build_method
from masksearch.eval.report import write_report
from masksearch.eval.runner import RunStats, run_eval


def parse_method_models(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, spec = pair.partition("=")
        if not sep or name.strip() not in METHODS or not spec.strip():
            raise InputError(
                f"expected METHOD=SPEC with METHOD in {', '.join(METHODS)}, got {pair!r}",
                field="--method-model",
            )
        out[name.strip()] = spec.strip()
    return out


def write_manifest(
    out: Path,
    specs: Sequence[DatasetSpec],
    sizes: dict[str, int],
    methods: dict[str, str],
    context: dict[str, Any],
    judge: str | None,
) -> None:
    """`run.json`: what the last run used (merged with earlier runs' datasets and methods)."""
    path = out / "run.json"
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            data = {}
    data.setdefault("datasets", {}).update(
        {s.name: {"path": str(s.path), "split": s.split, "n": sizes[s.name]} for s in specs}
    )
    data.setdefault("methods", {}).update({m: {"model": spec} for m, spec in methods.items()})
    data["context"] = context
    data["judge_model"] = judge
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


async def warm_up(methods: Sequence[Any]) -> None:
    """Load every model and retriever once, one at a time, before questions run concurrently:
    a bad spec or a missing key fails here instead of in every question, and concurrent first
    loads (not thread-safe for local transformers models) cannot race."""
    import asyncio

    from masksearch.graph import resources

    for method in methods:
        ctx = method.context
        await asyncio.to_thread(resources.get_retriever, ctx.retriever)
        for spec in dict.fromkeys(ctx.models().values()):
            model = await asyncio.to_thread(
                resources.get_model,
                spec,
                temperature=ctx.temperature,
                max_tokens=ctx.max_tokens,
                timeout=ctx.llm_timeout_s,
                seed=ctx.seed,
            )
            if spec.startswith("local:") and isinstance(getattr(model, "model_path", None), str):
                from masksearch.models.local import load_weights  # weights load lazily otherwise

                await asyncio.to_thread(load_weights, model.model_path)


async def build_and_run(
    *,
    datasets: Sequence[str],
    methods: Sequence[str],
    model: str,
    method_models: Sequence[str],
    retriever: str,
    out: Path,
    concurrency: int,
    limit: int | None,
    judge_model: str | None,
    top_k: int,
    max_turns: int,
    max_tokens: int,
    temperature: float,
    timeout: float,
    retry_failed: bool,
    save_messages: bool,
    progress: bool,
) -> tuple[RunStats, dict[str, Path]]:
    from masksearch.graph.context import Context

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}"
        )
    overrides = parse_method_models(method_models)
    specs = [DatasetSpec.parse(d) for d in datasets]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError("each dataset name may appear once", field="--dataset")
    items = {
        s.name: load_items(s, limit=limit) for s in specs
    }  # validate everything before any call
    base = Context(
        retriever=retriever,
        top_k=top_k,
        max_turns=max_turns,
        max_tokens=max_tokens,
        temperature=temperature,
        llm_timeout_s=timeout,
    )
    built, used = [], {}
    for name in dict.fromkeys(methods):
        spec = overrides.get(name, model)
        ctx = Context.from_dict(
            {
                **base.to_dict(),
                "planner_model": spec,
                "rewriter_model": spec,
                "observer_model": spec,
            }
        )
        built.append(build_method(name, ctx))
        used[name] = spec
    await warm_up(built)
    judge = None
    if judge_model:
        from masksearch.eval.judge import load_judge

        judge = load_judge(judge_model)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(
        out,
        specs,
        {k: len(v) for k, v in items.items()},
        used,
        {k: v for k, v in base.to_dict().items() if not k.endswith("_model")},
        judge_model,
    )
    stats = await run_eval(
        built,
        items,
        out,
        concurrency=concurrency,
        judge=judge,
        retry_failed=retry_failed,
        save_messages=save_messages,
        progress=progress,
    )
    return stats, write_report(out)
