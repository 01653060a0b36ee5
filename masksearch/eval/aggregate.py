"""What an eval directory's results add up to: per (row, dataset) means over the questions every
row ran (`summarize`), the answerable subset, bootstrap intervals. `masksearch.eval.report`
renders it (tables in the paper's layout, the chart)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from masksearch.eval.datasets import column_order, display_name

TABLE_METRICS = ("recall", "em", "f1")
EXTRA_METRICS = ("cover_em", "acc", "loose_acc", "judge")
METRIC_TITLES = {
    "recall": "Token-level recall (MaskSearch paper metric)",
    "em": "Exact match",
    "f1": "Token F1",
    "cover_em": "Cover-EM (gold span inside the prediction, token boundaries)",
    "acc": "Substring accuracy (FlashRAG `acc`)",
    "loose_acc": "FanoutQA loose accuracy (no lemmatisation)",
    "judge": "LLM judge, relaxed accuracy (judged questions only)",
}


METHOD_ORDER = ("rag-pe", "agent-pe", "masksearch")  # the paper's row order within a model
STAGE_ORDER = ("", "-", "–", "none", "sft", "rl")
RowKey = tuple[str, str]  # (label, method)


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key where "Qwen2.5-3B" < "Qwen2.5-14B" (digit runs compare as numbers)."""
    import re

    return tuple(
        (0, float(part), "") if part.replace(".", "", 1).isdigit() else (1, 0.0, part.lower())
        for part in re.findall(r"\d+(?:\.\d+)?|\D+", text)
    )


@dataclass(frozen=True)
class RowInfo:
    """One table row: a method under one model configuration."""

    label: str
    method: str
    base_model: str | None = None
    pre_train: str | None = None
    post_train: str | None = None

    @property
    def group(self) -> str:
        return self.base_model or self.label

    def sort_key(self) -> tuple[Any, ...]:
        def stage(v: str | None) -> tuple[int, str]:
            key = (v or "").strip().lower()
            return (STAGE_ORDER.index(key), "") if key in STAGE_ORDER else (len(STAGE_ORDER), key)

        m = METHOD_ORDER.index(self.method) if self.method in METHOD_ORDER else len(METHOD_ORDER)
        return (
            _natural(self.group),
            m,
            self.method,
            stage(self.pre_train),
            stage(self.post_train),
            self.label,
        )


@dataclass
class Summary:
    rows: list[RowInfo]
    datasets: list[str]
    cells: dict[tuple[RowKey, str], dict[str, Any]]  # ((label, method), dataset) -> {metric: mean…}
    compared: dict[str, int] = field(default_factory=dict)
    """Datasets whose rows ran different questions → the number of questions all of them ran
    (every row's cell is the mean over those)."""
    mixed: set[str] = field(default_factory=set)
    """Datasets whose rows share no question: cells over different questions, not comparable."""

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.rows))

    @property
    def grouped(self) -> bool:
        """Paper layout (base model, method, Pre-train, Post-train) when several model
        configurations share the directory or a base model was named."""
        return len({r.label for r in self.rows}) > 1 or any(r.base_model for r in self.rows)

    def value(self, row: RowInfo | str, dataset: str, metric: str) -> float | None:
        cell = self.cells.get((self._key(row), dataset))
        return None if cell is None else cell.get(metric)

    def _key(self, row: RowInfo | str) -> RowKey:
        if isinstance(row, RowInfo):
            return (row.label, row.method)
        matches = [r for r in self.rows if r.method == row]
        if len(matches) != 1:
            raise KeyError(f"{row!r} names {len(matches)} rows; pass a RowInfo")
        return (matches[0].label, matches[0].method)

    def columns(self, metric: str) -> list[str]:
        """Datasets shown for a metric: all for the main metrics, else those where it applies."""
        if metric in TABLE_METRICS:
            return list(self.datasets)
        return [
            d
            for d in self.datasets
            if any(metric in c for (_, cd), c in self.cells.items() if cd == d)
        ]

    def avg(self, row: RowInfo | str, metric: str) -> tuple[float | None, bool]:
        """(unweighted mean over datasets with a value, whether every dataset had one)."""
        vals = [self.value(row, d, metric) for d in self.columns(metric)]
        have = [v for v in vals if v is not None]
        return (sum(have) / len(have) if have else None), len(have) == len(vals)

    def comparable(self, row: RowInfo | str, metric: str) -> bool:
        """Whether the row's Avg compares like with like (none of its cells is over questions the
        other rows did not run; see `mixed`)."""
        return not any(
            d in self.mixed and self.value(row, d, metric) is not None for d in self.columns(metric)
        )

    def column_title(self, dataset: str) -> str:
        return display_name(dataset) + ("†" if dataset in self.mixed else "")

    def metrics(self) -> list[str]:
        present = {m for cell in self.cells.values() for m in cell if m in EXTRA_METRICS}
        return [*TABLE_METRICS, *(m for m in EXTRA_METRICS if m in present)]

    def head(self) -> list[str]:
        return ["Base model", "Method", "Pre-train", "Post-train"] if self.grouped else ["Method"]

    def row_cells(self, row: RowInfo, *, first_of_group: bool = True) -> list[str]:
        if not self.grouped:
            return [row.method]
        return [
            row.group if first_of_group else "",
            row.method,
            row.pre_train or "–",
            row.post_train or "–",
        ]

    def series_name(self, row: RowInfo) -> str:
        if not self.grouped:
            return row.method
        stages = f" {row.pre_train or '–'}→{row.post_train or '–'}" if row.base_model else ""
        return f"{row.group} · {row.method}{stages}"


def summarize(rows: Iterable[Mapping[str, Any]]) -> Summary:
    """Means per (row, dataset); the order of `rows` (finishing order) does not matter.

    Rows compare like with like: when the rows that ran a dataset ran different questions of it
    (a resumed run with another `--limit`, a method still running), every row's cell is the mean
    over the questions all of them ran (`Summary.compared`); when they share none, each cell
    keeps its own questions and the dataset is marked not comparable (`Summary.mixed`)."""
    from masksearch.eval.config import row_label

    ordered = sorted(
        rows, key=lambda r: (row_label(r), str(r["method"]), str(r["dataset"]), str(r["id"]))
    )
    infos: dict[RowKey, RowInfo] = {}
    grouped: dict[tuple[RowKey, str], list[Mapping[str, Any]]] = {}
    for row in ordered:
        rk = (row_label(row), str(row["method"]))
        infos.setdefault(
            rk,
            RowInfo(
                rk[0],
                rk[1],
                row.get("base_model") or None,
                row.get("pre_train") or None,
                row.get("post_train") or None,
            ),
        )
        grouped.setdefault((rk, str(row["dataset"])), []).append(row)
    datasets = column_order([d for _, d in grouped])
    ran = {k: len(rs) for k, rs in grouped.items()}  # before keeping only the common questions
    compared: dict[str, int] = {}
    mixed: set[str] = set()
    for d in datasets:
        id_sets = [{str(r["id"]) for r in rs} for (_, cd), rs in grouped.items() if cd == d]
        common = set.intersection(*id_sets)
        if all(ids == common for ids in id_sets):
            continue
        if not common:
            mixed.add(d)
            continue
        compared[d] = len(common)
        for key in [k for k in grouped if k[1] == d]:
            grouped[key] = [r for r in grouped[key] if str(r["id"]) in common]
    cells: dict[tuple[RowKey, str], dict[str, Any]] = {}
    for key, rs in grouped.items():
        metric_values: dict[str, list[float]] = {}
        for row in rs:
            for metric, value in (row.get("scores") or {}).items():
                if value is not None:
                    metric_values.setdefault(metric, []).append(float(value))
        n = len(rs)
        cell: dict[str, Any] = {m: 100.0 * sum(v) / len(v) for m, v in metric_values.items() if v}
        cell.update(
            n=n,
            ran=ran[key],
            failed=sum(r.get("status") == "failed" for r in rs),
            mean_latency_s=sum(float(r.get("latency_s") or 0.0) for r in rs) / n,
            mean_turns=sum(int(r.get("turns") or 0) for r in rs) / n,
        )
        if "judge" in metric_values:
            cell["judged"] = len(metric_values["judge"])
        cells[key] = cell
    infos_sorted = sorted(infos.values(), key=RowInfo.sort_key)
    return Summary(infos_sorted, datasets, cells, compared, mixed)


def answerable_subset(rows: Iterable[Mapping[str, Any]]) -> Summary | None:
    """The summary over the questions whose gold answer occurs in the corpus (rows with
    `answerable: true`); None when no row says (benchmarks without that flag)."""
    rows = list(rows)
    if not any(isinstance(r.get("answerable"), bool) for r in rows):
        return None
    kept = [r for r in rows if r.get("answerable") is True]
    return summarize(kept) if kept else None


def bootstrap_ci(
    values: Iterable[float], *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean ×100 (None for no values). Seeded: the same
    values always give the same interval."""

    vals = [float(v) for v in values]
    if not vals:
        return None
    rng = random.Random(seed)
    n = len(vals)
    means = sorted(sum(rng.choices(vals, k=n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * resamples)]
    hi = means[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return 100.0 * lo, 100.0 * hi
