"""Batch RAMP masking: strategies, chunked processing, resume and a summary."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

from masksearch.errors import ConfigError
from masksearch.jsonl import SkipCounter
from masksearch.masking.kdist import calibrate
from masksearch.masking.rule import extract_rule_spans
from masksearch.masking.select import (
    MASK_TOKEN,
    MaskConfig,
    Plan,
    filter_candidates,
    finish_plan,
    max_compatible,
    plan_passage,
)
from masksearch.types import MaskedExample, Passage, Span

if TYPE_CHECKING:
    from masksearch.workers.cluster import ClusterSettings

STRATEGIES = ("rule", "spacy", "llm", "ppl")


class SpanProposer(Protocol):
    name: str

    def propose(self, passages: Sequence[Passage]) -> list[list[Span] | str]:
        """Candidate spans for each passage, or a skip reason."""
        ...


class RuleSpanProposer:
    name = "rule"

    def propose(self, passages: Sequence[Passage]) -> list[list[Span] | str]:
        return [extract_rule_spans(p.text) for p in passages]


@dataclass
class MaskSummary:
    """What a masking run did: examples written by k and passages skipped by reason."""

    target: dict[int, float] = field(default_factory=dict)
    sampling: dict[int, float] = field(default_factory=dict)  # calibrated weights, if any
    read: int = 0
    written: int = 0
    existing: int = 0  # examples already in the output before this run (resume)
    by_k: Counter[int] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    rejected_spans: Counter[str] = field(default_factory=Counter)
    interrupted: bool = False  # Ray workers stopped by a signal (rerun to resume)

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "written": self.written,
            "existing": self.existing,
            "total": self.existing + self.written,
            "target": self.target,
            "sampling": self.sampling or self.target,
            "by_k": dict(sorted(self.by_k.items())),
            "skipped": dict(self.skipped),
            "rejected_spans": dict(self.rejected_spans),
        }

    def format(self) -> str:
        lines = [
            f"passages read: {self.read}   examples written: {self.written}"
            + (f"   in the output: {self.existing + self.written}" if self.existing else "")
        ]
        for k in sorted(set(self.by_k) | set(self.target)):
            n = self.by_k.get(k, 0)
            share = n / self.written if self.written else 0.0
            lines.append(f"  k={k}: {n:>7} ({share:6.1%}; target {self.target.get(k, 0.0):6.1%})")
        if self.sampling and self.sampling != self.target:
            lines.append(
                "k sampling weights (calibrated): "
                + ", ".join(f"{k}:{p:.3f}" for k, p in sorted(self.sampling.items()))
            )
        if self.skipped:
            lines.append("skipped: " + ", ".join(f"{r}={n}" for r, n in self.skipped.most_common()))
        if self.rejected_spans:
            lines.append(
                "candidate spans rejected: "
                + ", ".join(f"{r}={n}" for r, n in self.rejected_spans.most_common())
            )
        return "\n".join(lines)


Scorer = Callable[[Sequence[tuple[str, Sequence[Span]]]], list[list[float]]]


def mask_passages(
    passages: Iterable[Passage],
    proposer: SpanProposer,
    config: MaskConfig,
    *,
    scorer: Scorer | None = None,
    strategy: str | None = None,
    summary: MaskSummary | None = None,
    chunk_size: int = 32,
    on_passage: Callable[[], None] | None = None,
) -> Iterator[MaskedExample]:
    """Mask each passage (in corpus order); skipped passages are counted in `summary`.

    With `scorer` (ppl), the k highest-scoring candidates are kept instead of a random draw.
    Each passage uses its own RNG seeded from (seed, passage id): output does not depend on
    chunking, order or which other passages are present.
    """
    summary = summary if summary is not None else MaskSummary()
    summary.target = summary.target or config.k_dist.probabilities()
    strategy = strategy or proposer.name
    it = iter(passages)
    while chunk := list(islice(it, chunk_size)):
        proposals = proposer.propose(chunk)
        plans: list[Plan] = []
        rejected: dict[str, int] = {}
        for passage, prop in zip(chunk, proposals, strict=True):
            summary.read += 1
            result = (
                prop if isinstance(prop, str) else plan_passage(passage, prop, config, rejected)
            )
            if isinstance(result, str):
                summary.skipped[result] += 1
            else:
                plans.append(result)
        summary.rejected_spans.update(rejected)
        scores: list[list[float] | None] = [None] * len(plans)
        if scorer is not None and plans:
            raw = scorer([(p.passage.text, p.candidates) for p in plans])
            scores = [[s if not math.isnan(s) else -math.inf for s in row] for row in raw]
        for plan, sc in zip(plans, scores, strict=True):
            ex = finish_plan(plan, strategy, config, sc)
            summary.written += 1
            summary.by_k[ex.k] += 1
            yield ex
        if on_passage is not None:
            for _ in chunk:
                on_passage()


def feasible_histogram(
    passages: Iterable[Passage], proposer: SpanProposer, config: MaskConfig, chunk_size: int = 64
) -> Counter[int]:
    """How many passages allow at most f compatible masks, for each f (maskable passages only)."""
    hist: Counter[int] = Counter()
    it = iter(passages)
    while chunk := list(islice(it, chunk_size)):
        for p, prop in zip(chunk, proposer.propose(chunk), strict=True):
            if (
                isinstance(prop, str)
                or len(p.text.split()) < config.min_words
                or MASK_TOKEN in p.text
            ):
                continue
            kept, _ = filter_candidates(p.text, p.title, prop, max_span_chars=config.max_span_chars)
            hist[len(max_compatible(kept, p.text))] += 1
    return hist


def calibrated_config(
    passages: Iterable[Passage], proposer: SpanProposer, config: MaskConfig
) -> tuple[MaskConfig, Counter[int]]:
    """`config` with k sampling weights calibrated so the OUTPUT k distribution matches the
    target on passages like these (a sample of the corpus); see docs/masking.md."""
    hist = feasible_histogram(passages, proposer, config)
    if not any(f > 0 for f in hist):
        return config, hist
    return replace(config, k_dist=calibrate(config.k_dist, hist, config.on_few)), hist


def make_strategy(
    strategy: str,
    *,
    model: Any = None,
    tokenizer: Any = None,
    ppl_mode: str = "fill",
    batch_size: int = 16,
    device: str = "auto",
    max_concurrency: int = 8,
) -> tuple[SpanProposer, Scorer | None]:
    """Build (proposer, scorer) for a strategy name; heavy libraries load only here."""
    if strategy == "rule":
        return RuleSpanProposer(), None
    if strategy == "spacy":
        from masksearch.masking.spacy_ner import SpacySpanProposer

        return SpacySpanProposer(model), None
    if strategy == "llm":
        if model is None:
            raise ConfigError("--strategy llm needs --model (e.g. openai:gpt-4o-mini)")
        from masksearch.masking.llm import LLMSpanProposer

        return LLMSpanProposer(model, max_concurrency=max_concurrency), None
    if strategy == "ppl":
        if model is None:
            raise ConfigError("--strategy ppl needs --model (a causal LM path or Hugging Face id)")
        from masksearch.masking.ppl import PerplexityScorer

        scorer = PerplexityScorer(
            model,
            tokenizer,
            mode=ppl_mode,  # type: ignore[arg-type]
            batch_size=batch_size,
            device=device,
        )
        return RuleSpanProposer(), scorer.score
    raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def iter_corpus(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    *,
    skip_bad: bool = False,
    counter: SkipCounter | None = None,
) -> Iterator[Passage]:
    """Passages of a corpus file: `masksearch.corpus.iter_passages` when available, else
    FlashRAG jsonl (`id` + `contents` = "title\\ntext", or `id`, `title`, `text`). With
    `skip_bad`, bad records are counted in `counter` instead of raising."""
    from masksearch.corpus import iter_passages

    yield from iter_passages(path, fmt, skip_bad=skip_bad, counter=counter)


def iter_flashrag_jsonl(path: str | os.PathLike[str]) -> Iterator[Passage]:
    from masksearch.errors import InputError
    from masksearch.jsonl import iter_jsonl

    for lineno, obj in iter_jsonl(path, required=("id",)):
        if isinstance(obj.get("contents"), str):
            yield Passage.from_contents(str(obj["id"]), obj["contents"])
        elif isinstance(obj.get("text"), str):
            yield Passage(str(obj["id"]), str(obj.get("title", "")), obj["text"])
        else:
            raise InputError(
                "expected 'contents' (or 'text') string",
                path=str(path),
                line=lineno,
                field="contents",
            )


@dataclass(frozen=True)
class MaskSettings:
    """What a `mask_corpus` run does: the strategy and its model, the selection rules, which
    passages it reads and how many examples it writes."""

    strategy: str = "rule"  # one of STRATEGIES
    config: MaskConfig = field(default_factory=MaskConfig)
    model: Any = None  # a spec (llm: chat model, ppl: causal LM, spacy: pipeline) or a model
    limit: int | None = None  # read at most the first N corpus passages
    max_examples: int | None = None  # stop when `out` holds N examples in all (resumes count)
    corpus_format: str = "auto"
    calibrate_on: int = 2000  # corpus passages scanned to calibrate k sampling (0: off)
    skip_bad: bool = False  # skip (and count) bad corpus records instead of stopping
    strategy_options: dict[str, Any] = field(default_factory=dict)  # `make_strategy`'s


def mask_corpus(
    corpus: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: MaskSettings | None = None,
    *,
    progress: bool = True,
    summary: MaskSummary | None = None,
    counter: SkipCounter | None = None,
    cluster: ClusterSettings | None = None,
) -> MaskSummary:
    """Mask a corpus file into RAMP JSONL, appending to `out` and skipping source ids it holds.

    `max_examples` caps the examples in `out` in all (those from earlier, interrupted runs
    count), so kill-and-rerun converges on the same total. With `calibrate_on` > 0 (not for
    `llm`, whose proposals cost model calls), the first `calibrate_on` corpus passages are
    scanned first to calibrate the k sampling weights.

    `cluster`: run on Ray workers (`workers.cluster`): passages are split by a stable hash
    of their id, each worker loads the strategy's model once and appends to its own part file
    next to `out`; the parts are merged into `out` (each source id once) when the workers stop,
    and parts left by a killed run are merged first. `model` (a spec, or a picklable model
    object) travels to the workers, which load it once each.
    """
    from masksearch.fileio import check_output_file
    from masksearch.jsonl import JsonlAppender
    from masksearch.masking.io import existing_source_ids

    settings = settings or MaskSettings()
    strategy, config, model = settings.strategy, settings.config, settings.model
    limit, max_examples = settings.limit, settings.max_examples
    corpus_format, skip_bad = settings.corpus_format, settings.skip_bad
    for name, value in (("--limit", limit), ("--max-examples", max_examples)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1 (got {value}); leave it out for no limit")
    if settings.calibrate_on < 0:
        raise ConfigError(f"--calibrate must be 0 (off) or more (got {settings.calibrate_on})")
    if cluster is not None:
        if max_examples is not None:
            raise ConfigError(
                "--max-examples cannot be used with Ray workers (each worker masks its own "
                "share): use --limit (the first N corpus passages)"
            )
        if strategy in ("llm", "ppl") and model is None:
            raise ConfigError(f"--strategy {strategy} needs --model")
    # before reading anything: /dev/full, a FIFO, a folder, the corpus itself, a foreign file
    check_output_file(out, what="--out", inputs={"--corpus": corpus}, kind="jsonl")
    if cluster is not None:
        from masksearch.workers.cluster import merge_parts

        merge_parts(out, _source_id)  # what a killed sharded run left in its parts
    done = existing_source_ids(out)
    summary = summary if summary is not None else MaskSummary()
    summary.target, summary.existing = config.k_dist.probabilities(), len(done)
    if max_examples is not None and summary.existing >= max_examples:
        return summary  # already holds the requested total
    if cluster is not None:
        # the driver only calibrates (rule or spaCy candidates); the workers load the model
        proposer, scorer = (
            (RuleSpanProposer(), None)
            if strategy in ("llm", "ppl")
            else make_strategy(strategy, model=model)
        )
    else:
        proposer, scorer = make_strategy(strategy, model=model, **settings.strategy_options)
    if settings.calibrate_on > 0 and strategy != "llm":
        # the first N corpus passages, whatever --limit says: weights stay the same on resume
        config, _ = calibrated_config(
            islice(iter_corpus(corpus, corpus_format, skip_bad=skip_bad), settings.calibrate_on),
            proposer,
            config,
        )
        summary.sampling = config.k_dist.probabilities()
    if cluster is not None:
        return _mask_on_cluster(
            MaskShard(str(corpus), str(out), replace(settings, config=config)),
            cluster,
            summary,
            counter,
        )

    from tqdm import tqdm

    bar = tqdm(total=limit, desc=f"mask ({strategy})", unit="passage", disable=not progress)
    passages = islice(iter_corpus(corpus, corpus_format, skip_bad=skip_bad, counter=counter), limit)
    with JsonlAppender(out) as sink:
        mask_stream(
            passages,
            sink,
            proposer,
            config,
            scorer=scorer,
            strategy=strategy,
            summary=summary,
            done=done,
            max_examples=max_examples,
            on_passage=bar.update,
        )
    bar.close()
    if counter is not None and counter.skipped:
        summary.skipped["bad_input"] = counter.skipped
    return summary


def _source_id(row: dict[str, Any]) -> Any:
    return row.get("source_id")


def mask_stream(
    passages: Iterable[Passage],
    sink: Any,
    proposer: SpanProposer,
    config: MaskConfig,
    *,
    scorer: Scorer | None,
    strategy: str,
    summary: MaskSummary,
    done: set[str],
    max_examples: int | None = None,
    on_passage: Callable[[], None] | None = None,
    keep: Callable[[Passage], bool] | None = None,
    stop: Any = None,
) -> None:
    """Mask the passages whose id is not in `done` (nor seen before in this stream) and write
    each example to `sink`. `keep` selects a shard's passages (the others are not counted);
    `stop` (an event) set: start no new chunk."""
    seen: set[str] = set()

    def fresh() -> Iterator[Passage]:
        for p in passages:
            if keep is not None and not keep(p):
                continue
            if stop is not None and stop.is_set():
                return
            if p.id in done:
                summary.skipped["already_done" if p.id not in seen else "duplicate_id"] += 1
                if on_passage is not None:
                    on_passage()
                continue
            done.add(p.id)
            seen.add(p.id)
            yield p

    for ex in mask_passages(
        fresh(),
        proposer,
        config,
        scorer=scorer,
        strategy=strategy,
        summary=summary,
        on_passage=on_passage,
    ):
        sink.write(ex.to_dict())
        if max_examples is not None and summary.existing + summary.written >= max_examples:
            break


@dataclass(frozen=True)
class MaskShard:
    """One Ray worker's share of a `mask` run (picklable; `workers.cluster.ShardJob`)."""

    corpus: str
    out: str
    settings: MaskSettings  # calibrated; `limit` is the first N passages before sharding

    async def __call__(self, shard: int, shards: int, stop: Any) -> MaskSummary:
        import asyncio

        # masking is synchronous (batched model calls): a thread keeps the actor's loop free
        # to receive `stop`
        return await asyncio.to_thread(self.run, shard, shards, stop)

    def run(self, shard: int, shards: int, stop: Any) -> MaskSummary:
        from masksearch.jsonl import JsonlAppender
        from masksearch.masking.io import existing_source_ids
        from masksearch.workers.cluster import part_path, shard_of

        part = part_path(self.out, shard)
        done = existing_source_ids(self.out) | existing_source_ids(part)  # a restarted worker
        s = self.settings
        proposer, scorer = make_strategy(s.strategy, model=s.model, **s.strategy_options)
        summary, counter = MaskSummary(), SkipCounter()
        passages = islice(
            iter_corpus(self.corpus, s.corpus_format, skip_bad=s.skip_bad, counter=counter), s.limit
        )
        with JsonlAppender(part) as sink:
            mask_stream(
                passages,
                sink,
                proposer,
                s.config,
                scorer=scorer,
                strategy=s.strategy,
                summary=summary,
                done=done,
                keep=lambda p: shard_of(p.id, shards) == shard,
                stop=stop,
            )
        if counter.skipped:
            summary.skipped["bad_input"] = counter.skipped
        return summary


def _mask_on_cluster(
    job: MaskShard, cluster: ClusterSettings, summary: MaskSummary, counter: SkipCounter | None
) -> MaskSummary:
    from masksearch.workers.cluster import merge_parts, run_sharded

    try:
        result = run_sharded(job, cluster)
    finally:
        merge_parts(job.out, _source_id)  # what every worker wrote, even after an error
    for part in result.values.values():
        summary.read += part.read
        summary.written += part.written
        summary.by_k.update(part.by_k)
        summary.rejected_spans.update(part.rejected_spans)
        bad = part.skipped.pop("bad_input", 0)  # every worker reads every line
        summary.skipped.update(part.skipped)
        summary.skipped["bad_input"] = max(summary.skipped.get("bad_input", 0), bad)
        if counter is not None:
            counter.skipped = max(counter.skipped, bad)
    if not summary.skipped.get("bad_input"):
        summary.skipped.pop("bad_input", None)
    summary.interrupted = result.interrupted
    return summary
