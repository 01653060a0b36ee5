"""Wiring for `masksearch eval run`: parse specs, load datasets, build methods, run, report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from masksearch.context import Context
from masksearch.errors import ConfigError, InputError
from masksearch.eval.config import (
    MANIFEST,
    Variant,
    check_compatible,
    context_settings,
    file_digest,
    make_label,
    merged_manifest,
)
from masksearch.eval.datasets import DatasetSpec, canonical_name, load_items
from masksearch.eval.methods import METHODS, build_method
from masksearch.eval.report import write_report
from masksearch.eval.runner import RunStats, pending_work, read_results, run_eval
from masksearch.fileio import atomic_write_text, check_output_dir
from masksearch.resources import Resources


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


def write_manifest(out: Path, data: dict[str, Any]) -> None:
    """`run.json`, replaced atomically (a crash leaves the old or the new file)."""
    atomic_write_text(out / MANIFEST, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


async def warm_up(methods: Sequence[Any]) -> None:
    """Load every model and retriever once, one at a time, before questions run concurrently:
    a bad spec or a missing key fails here instead of in every question, and concurrent first
    loads (not thread-safe for local transformers models) cannot race."""
    for method in methods:
        await method.resources.warm_up(method.context)


async def build_and_run(
    *,
    datasets: Sequence[str],
    methods: Sequence[str],
    context: Context,
    method_models: Sequence[str],
    out: Path,
    concurrency: int,
    limit: int | None,
    judge_model: str | None,
    retry_failed: bool,
    save_messages: bool,
    progress: bool,
    label: str | None = None,
    base_model: str | None = None,
    pre_train: str | None = None,
    post_train: str | None = None,
    aliases: Sequence[str] = (),
    resources: Resources | None = None,
) -> tuple[RunStats, dict[str, Path]]:
    """`context` holds the graph settings every method shares (its planner model is the model of
    every method without a `method_models` override); `judge_model` is eval's own LLM judge;
    `resources` serves every method's models and retriever (default a fresh one for this run,
    so a model two methods share is loaded once)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}"
        )
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit} (leave it out to run all)")
    if not datasets:
        raise ConfigError("name at least one --dataset NAME=PATH")
    check_output_dir(out, what="--out")  # a file, /dev/full, read-only: refused before any work
    overrides = parse_method_models(method_models)
    specs = [DatasetSpec.parse(d) for d in datasets]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError("each dataset name may appear once", field="--dataset")
    alias_files = parse_aliases(aliases, names)
    # validate every input before any model call
    items = {s.name: load_items(s, limit=limit, aliases=alias_files.get(s.name)) for s in specs}
    dataset_info = {
        s.name: {
            "path": str(s.path),
            "split": s.split,
            "sha256": file_digest(s.path),
            "n": len(items[s.name]),
        }
        for s in specs
    }
    resources = resources if resources is not None else Resources()
    built = []
    for name in dict.fromkeys(methods):
        spec = overrides.get(name)
        ctx = (
            replace(context, planner_model=spec, rewriter_model=spec, observer_model=spec)
            if spec
            else context
        )
        spec = spec or context.planner_model
        method = build_method(name, ctx, resources=resources)
        row_label, tags = make_label(
            spec, label=label, base_model=base_model, pre_train=pre_train, post_train=post_train
        )
        method.variant = Variant(  # type: ignore[attr-defined]
            name, row_label, context_settings(method.context, judge_model=judge_model), tags
        )
        built.append(method)
    variants = [m.variant for m in built]  # type: ignore[attr-defined]
    done = read_results(out) if out.is_dir() else {}
    check_compatible(out, variants, dataset_info, done.values())
    todo, _, _ = pending_work(built, items, done, retry_failed=retry_failed)
    needed = list(dict.fromkeys(method for method, _ in todo))
    await warm_up(needed)  # no model is loaded when every question is already done
    judge = None
    if judge_model and todo:
        from masksearch.eval.judge import load_judge

        judge = load_judge(judge_model)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, merged_manifest(out, variants, dataset_info))
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


def parse_aliases(pairs: Sequence[str], names: Sequence[str]) -> dict[str, Path]:
    """`--aliases NAME=PATH` (2Wiki `id_aliases.json`): dataset name → file."""
    out: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        name = canonical_name(name) if sep else "2wikimultihopqa"
        path = path if sep else pair
        if name not in names:
            raise InputError(
                f"--aliases names dataset {name!r}, which is not among --dataset "
                f"({', '.join(names)})",
                field="--aliases",
            )
        if not Path(path).is_file():
            raise InputError("aliases file not found", path=path, field="--aliases")
        out[name] = Path(path)
    return out
