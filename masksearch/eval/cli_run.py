"""Wiring for `masksearch eval run`: parse specs, load datasets, build methods, run, report."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from masksearch.eval.items import EvalItem
from masksearch.eval.methods import METHODS, Method, build_method
from masksearch.eval.report import write_report
from masksearch.eval.runner import (
    RESULTS,
    RunStats,
    compact_results,
    pending_work,
    read_results,
    run_eval,
)
from masksearch.fileio import atomic_write_text, check_output_dir
from masksearch.resources import Resources

if TYPE_CHECKING:
    from masksearch.workers.cluster import ClusterSettings


def answerable_count(items: Sequence[EvalItem]) -> dict[str, int]:
    """`{"answerable": n}` when the items say whether their answer is in the corpus, else {}."""
    flags = [i.metadata.get("answerable") for i in items]
    if not flags or not all(isinstance(f, bool) for f in flags):
        return {}
    return {"answerable": sum(1 for f in flags if f)}


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


@dataclass(frozen=True)
class EvalSetup:
    """What `eval run` evaluates (picklable: a Ray worker rebuilds the same methods and items)."""

    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    context: Context
    method_models: tuple[str, ...] = ()
    limit: int | None = None
    judge_model: str | None = None
    label: str | None = None
    base_model: str | None = None
    pre_train: str | None = None
    post_train: str | None = None
    aliases: tuple[str, ...] = ()

    def check(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(
                f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}"
            )
        if self.limit is not None and self.limit < 1:
            raise ConfigError(
                f"--limit must be at least 1, got {self.limit} (leave it out to run all)"
            )
        if not self.datasets:
            raise ConfigError("name at least one --dataset NAME=PATH")

    def build(
        self, resources: Resources
    ) -> tuple[list[Method], dict[str, list[EvalItem]], dict[str, dict[str, Any]]]:
        """(methods with their variants, items per dataset, dataset info for `run.json`);
        every input is validated here, before any model call."""
        overrides = parse_method_models(self.method_models)
        specs = [DatasetSpec.parse(d) for d in self.datasets]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise InputError("each dataset name may appear once", field="--dataset")
        alias_files = parse_aliases(self.aliases, names)
        items = {
            s.name: load_items(s, limit=self.limit, aliases=alias_files.get(s.name)) for s in specs
        }
        dataset_info = {
            s.name: {
                "path": str(s.path),
                "split": s.split,
                "sha256": file_digest(s.path),
                "n": len(items[s.name]),
                **answerable_count(items[s.name]),
            }
            for s in specs
        }
        built = []
        for name in dict.fromkeys(self.methods):
            spec = overrides.get(name)
            ctx = (
                replace(self.context, planner_model=spec, rewriter_model=spec, observer_model=spec)
                if spec
                else self.context
            )
            spec = spec or self.context.planner_model
            method = build_method(name, ctx, resources=resources)
            row_label, tags = make_label(
                spec,
                label=self.label,
                base_model=self.base_model,
                pre_train=self.pre_train,
                post_train=self.post_train,
            )
            method.variant = Variant(  # type: ignore[attr-defined]
                name,
                row_label,
                context_settings(method.context, judge_model=self.judge_model),
                tags,
            )
            built.append(method)
        return built, items, dataset_info


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
    cluster: ClusterSettings | None = None,
    worker_resources: Callable[[], Resources] = Resources,
) -> tuple[RunStats, dict[str, Path]]:
    """`context` holds the graph settings every method shares (its planner model is the model of
    every method without a `method_models` override); `judge_model` is eval's own LLM judge;
    `resources` serves every method's models and retriever (default a fresh one for this run,
    so a model two methods share is loaded once).

    `cluster`: run the questions on Ray workers (`workers.cluster`), split by a stable hash
    of their key, `ceil(concurrency / workers)` in flight in each; each worker loads the models
    once (`worker_resources`, picklable, makes them) and appends to its own part of
    `results.jsonl`, merged into it (each row once) when the workers stop."""
    setup = EvalSetup(
        datasets=tuple(datasets),
        methods=tuple(methods),
        context=context,
        method_models=tuple(method_models),
        limit=limit,
        judge_model=judge_model,
        label=label,
        base_model=base_model,
        pre_train=pre_train,
        post_train=post_train,
        aliases=tuple(aliases),
    )
    setup.check()
    check_output_dir(out, what="--out")  # a file, /dev/full, read-only: refused before any work
    check_datasets_not_outputs(setup.datasets, out)
    resources = resources if resources is not None else Resources()
    built, items, dataset_info = setup.build(resources)
    variants = [m.variant for m in built]  # type: ignore[attr-defined]
    if cluster is not None and out.is_dir():
        from masksearch.workers.cluster import merge_parts

        merge_parts(out / RESULTS, row_identity)  # what a killed sharded run left in its parts
    done = read_results(out) if out.is_dir() else {}
    check_compatible(out, variants, dataset_info, done.values())
    todo, _, _ = pending_work(built, items, done, retry_failed=retry_failed)
    if cluster is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(out, merged_manifest(out, variants, dataset_info))
        stats = run_on_cluster(
            EvalShard(
                setup,
                out,
                concurrency=-(-concurrency // cluster.workers),
                retry_failed=retry_failed,
                save_messages=save_messages,
                resources=worker_resources,
            ),
            cluster,
        )
        return stats, write_report(out)
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


def row_identity(row: dict[str, Any]) -> bytes:
    """A result row's identity when merging workers' parts: its whole content (a retried
    question's new row differs from its failed one, a row merged twice does not)."""
    text = json.dumps(row, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


@dataclass(frozen=True)
class EvalShard:
    """One Ray worker's share of an `eval run` (picklable; `workers.cluster.ShardJob`)."""

    setup: EvalSetup
    out: Path
    concurrency: int  # questions in flight in this worker
    retry_failed: bool = False
    save_messages: bool = True
    resources: Callable[[], Resources] = Resources  # makes the worker's Resources (runs there)

    async def __call__(self, shard: int, shards: int, stop: asyncio.Event) -> RunStats:
        built, items, _ = self.setup.build(self.resources())
        done = read_results(self.out)
        todo, _, _ = pending_work(
            built, items, done, retry_failed=self.retry_failed, shard=(shard, shards)
        )
        await warm_up(list(dict.fromkeys(method for method, _ in todo)))
        judge = None
        if self.setup.judge_model and todo:
            from masksearch.eval.judge import load_judge

            judge = load_judge(self.setup.judge_model)
        return await run_eval(
            built,
            items,
            self.out,
            concurrency=self.concurrency,
            judge=judge,
            retry_failed=self.retry_failed,
            save_messages=self.save_messages,
            progress=False,
            shard=(shard, shards),
            stop=stop,
        )


def run_on_cluster(job: EvalShard, cluster: ClusterSettings) -> RunStats:
    """Run `job` on Ray workers, then merge their parts into `results.jsonl` (also after an
    error or a signal: what they finished is kept)."""
    from masksearch.workers.cluster import merge_parts, run_sharded

    try:
        result = run_sharded(job, cluster)
    finally:
        merge_parts(job.out / RESULTS, row_identity)
    stats = RunStats(interrupted=result.interrupted)
    for part in result.values.values():
        stats.add(part)
    if job.retry_failed and stats.ran:
        compact_results(job.out)
    return stats


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


_WRITTEN = (RESULTS, MANIFEST, "summary.md", "scores.csv", "table_*.csv", "*.png", "*.part*")


def check_datasets_not_outputs(datasets: tuple[str, ...], out: Path) -> None:
    """Refuse a dataset file that is one of the files `eval run` writes in `out` (results,
    manifest, report tables, charts): the run would overwrite what it reads."""
    import fnmatch

    from masksearch.fileio import same_file

    for text in datasets:
        try:
            path = DatasetSpec.parse(text).path
        except InputError:
            continue  # reported, located, when the datasets are read
        if not same_file(path.parent, out):
            continue
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in _WRITTEN):
            raise InputError(
                f"is a file `eval run` writes in --out {out}: a command never writes over what "
                "it reads (copy the dataset elsewhere)",
                path=str(path),
                field="--dataset",
            )
