"""Summary tables in the paper's layout and a bar chart.

Rows are methods; when several model configurations share the directory (or `--base-model` was
given), rows are grouped by base model with Pre-train / Post-train columns, as in the MaskSearch
table. Columns are datasets + Avg. Cells are means ×100 over the questions of a (row, dataset);
Avg is the unweighted mean over datasets. Rows compare like with like: where rows ran different
questions of a dataset, each cell is over the questions all of them ran (`summarize`). Everything is re-rendered from `results.jsonl`, in an
order that depends only on the rows (paper datasets first, methods in the paper's order).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masksearch.errors import InputError
from masksearch.eval.datasets import column_order, display_name
from masksearch.eval.runner import RESULTS, read_results
from masksearch.fileio import atomic_write

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


def render_subset(s: Summary) -> str:
    """summary.md's answerable-subset section (the same tables over the answerable questions)."""
    parts = [
        "# Answerable subset",
        "",
        "The same scores over the questions whose gold answer occurs in the retrieval corpus "
        "(`metadata.answerable`); datasets without that flag are left out.",
        "",
    ]
    for metric in s.metrics():
        title = METRIC_TITLES.get(metric, metric)
        parts += [f"## {title}, answerable subset", "", markdown_table(s, metric), ""]
    parts += ["## Answerable questions per cell", ""]
    head = [*s.head(), *(display_name(d) for d in s.datasets)]
    parts += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r, first in _grouped_rows(s):
        cells = [
            str(c["n"]) if (c := s.cells.get(((r.label, r.method), d))) else "–" for d in s.datasets
        ]
        parts.append("| " + " | ".join([*s.row_cells(r, first_of_group=first), *cells]) + " |")
    parts.append("")
    return "\n".join(parts)


def bootstrap_ci(
    values: Iterable[float], *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean ×100 (None for no values). Seeded: the same
    values always give the same interval."""
    import random

    vals = [float(v) for v in values]
    if not vals:
        return None
    rng = random.Random(seed)
    n = len(vals)
    means = sorted(sum(rng.choices(vals, k=n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * resamples)]
    hi = means[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return 100.0 * lo, 100.0 * hi


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _grouped_rows(s: Summary) -> list[tuple[RowInfo, bool]]:
    out, last = [], None
    for r in s.rows:
        out.append((r, r.group != last))
        last = r.group
    return out


def markdown_table(s: Summary, metric: str) -> str:
    cols = s.columns(metric)
    head = [*s.head(), *(s.column_title(d) for d in cols), "Avg"]
    n_label = len(s.head())
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * n_label + ["---:"] * (len(head) - n_label)) + "|",
    ]
    for r, first in _grouped_rows(s):
        avg, complete = s.avg(r, metric)
        cells = [_fmt(s.value(r, d, metric)) for d in cols]
        avg_cell = _fmt(avg)
        if avg is not None:
            avg_cell += ("" if complete else "*") + ("" if s.comparable(r, metric) else "†")
        lines.append(
            "| " + " | ".join([*s.row_cells(r, first_of_group=first), *cells, avg_cell]) + " |"
        )
    return "\n".join(lines)


def table_rows(s: Summary, metric: str) -> list[list[str]]:
    """CSV rows (header first); Avg is empty when a row lacks a dataset, as is a missing cell."""
    cols = s.columns(metric)
    head = [h.lower().replace(" ", "_").replace("-", "_") for h in s.head()]
    if s.grouped:
        head.insert(0, "label")
    rows = [[*head, *(display_name(d) for d in cols), "Avg"]]
    for r in s.rows:
        avg, complete = s.avg(r, metric)
        vals = [s.value(r, d, metric) for d in cols]
        label = [r.label] if s.grouped else []
        rows.append(
            [
                *label,
                *s.row_cells(r),
                *("" if v is None else f"{v:.2f}" for v in vals),
                "" if avg is None or not complete or not s.comparable(r, metric) else f"{avg:.2f}",
            ]
        )
    return rows


def render_markdown(s: Summary, expected: Mapping[str, int] | None = None) -> str:
    parts = [
        "# Evaluation summary",
        "",
        "Scores are means ×100 per (row, dataset); Avg is the unweighted mean over datasets "
        "(`*`: over the datasets this row has; – : not run). Failed questions count as 0.",
        "",
    ]
    if s.compared:
        common = ", ".join(f"{display_name(d)} {n}" for d, n in s.compared.items())
        parts += [
            "Rows ran different questions of some datasets; every cell of those is the mean over "
            f"the questions all rows ran ({common}; the last table gives each row's count).",
            "",
        ]
    if s.mixed:
        names = ", ".join(display_name(d) for d in sorted(s.mixed))
        parts += [
            f"†: the rows share no question of {names}: those cells, and the Avg of a row with "
            "one, are over different questions and do not compare.",
            "",
        ]
    for metric in s.metrics():
        parts += [f"## {METRIC_TITLES.get(metric, metric)}", "", markdown_table(s, metric), ""]
    parts += ["## Questions per cell (failed)", ""]
    head = [*s.head(), *(s.column_title(d) for d in s.datasets)]
    parts += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r, first in _grouped_rows(s):
        cells = []
        for d in s.datasets:
            c = s.cells.get(((r.label, r.method), d))
            want = (expected or {}).get(d)
            cells.append(
                "–"
                if c is None
                else f"{c['n']}"
                + (f" of {c['ran']} run" if c["ran"] != c["n"] else "")
                + (f"/{want}" if want and want != c["ran"] else "")
                + (f" ({c['failed']})" if c["failed"] else "")
            )
        parts.append("| " + " | ".join([*s.row_cells(r, first_of_group=first), *cells]) + " |")
    parts.append("")
    return "\n".join(parts)


def chart_figure(s: Summary, metric: str) -> Any:
    """Grouped bar chart: one group per dataset (+ Avg), one bar per row. A missing cell (and
    the Avg of a row lacking a dataset) has no bar, only a "–" mark: never a bar at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = s.columns(metric)
    groups = [*(s.column_title(d) for d in cols), "Avg"]
    width = 0.8 / max(1, len(s.rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(groups)), 4.0))
    for i, r in enumerate(s.rows):
        avg, complete = s.avg(r, metric)
        whole = complete and s.comparable(r, metric)
        vals = [s.value(r, d, metric) for d in cols] + [avg if whole else None]
        xs = [g + (i - (len(s.rows) - 1) / 2) * width for g in range(len(groups))]
        drawn = [(x, v) for x, v in zip(xs, vals, strict=True) if v is not None]
        bars = ax.bar(
            [x for x, _ in drawn], [v for _, v in drawn], width=width, label=s.series_name(r)
        )
        color = bars.patches[0].get_facecolor() if bars.patches else None
        for x, v in zip(xs, vals, strict=True):
            if v is None:
                ax.text(x, 1.0, "–", ha="center", va="bottom", fontsize="small", color=color)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(f"{metric} ×100")
    ax.set_ylim(0, 100)
    title = METRIC_TITLES.get(metric, metric)
    if s.compared:
        title += "\n(each dataset: the questions every row ran)"
    if s.mixed:
        title += "\n(†: rows ran different questions; no Avg bar over them)"
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot(s: Summary, metric: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = chart_figure(s, metric)
    try:
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


def write_report(out_dir: str | Path, *, chart_metric: str = "recall") -> dict[str, Path]:
    """Render summary.md, table_<metric>.csv, scores.csv and <metric>.png from results.jsonl.

    Every file is replaced atomically, and its bytes depend only on the rows (not on the order
    in which questions finished)."""
    out_dir = Path(out_dir)
    rows = read_results(out_dir)
    if not rows:
        raise InputError("no results to report", path=str(out_dir / RESULTS))
    s = summarize(rows.values())
    if chart_metric not in s.metrics():
        known = ", ".join(s.metrics())
        raise InputError(
            f"unknown chart metric {chart_metric!r}; this directory has: {known}",
            field="--chart-metric",
        )
    expected = _expected_sizes(out_dir)
    subset = answerable_subset(rows.values())
    written = {"markdown": out_dir / "summary.md"}
    with atomic_write(written["markdown"]) as fh:
        fh.write(render_markdown(s, expected))
        if subset is not None:
            fh.write(render_subset(subset))
    for metric in s.metrics():
        p = out_dir / f"table_{metric}.csv"
        with atomic_write(p) as fh:
            csv.writer(fh).writerows(table_rows(s, metric))
        written[f"table_{metric}"] = p
    p = out_dir / "scores.csv"
    with atomic_write(p) as fh:
        w = csv.writer(fh)
        w.writerow(["label", "method", "dataset", "metric", "value", "n", "failed"])
        for r in s.rows:
            for d in s.datasets:
                cell = s.cells.get(((r.label, r.method), d))
                if cell is None:
                    continue
                for metric in s.metrics():
                    if metric in cell:
                        w.writerow(
                            [
                                r.label,
                                r.method,
                                d,
                                metric,
                                f"{cell[metric]:.4f}",
                                cell["n"],
                                cell["failed"],
                            ]
                        )
        sub_rows = subset.rows if subset is not None else []
        for r in sub_rows:  # dataset "NAME:answerable"
            assert subset is not None
            for d in subset.datasets:
                sub_cell = subset.cells.get(((r.label, r.method), d))
                if sub_cell is None:
                    continue
                cell = sub_cell
                for metric in subset.metrics():
                    if metric in cell:
                        w.writerow(
                            [
                                r.label,
                                r.method,
                                f"{d}:answerable",
                                metric,
                                f"{cell[metric]:.4f}",
                                cell["n"],
                                cell["failed"],
                            ]
                        )
    written["scores"] = p
    written["chart"] = plot(s, chart_metric, out_dir / f"{chart_metric}.png")
    return written


def _expected_sizes(out_dir: Path) -> dict[str, int]:
    p = out_dir / "run.json"
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return {k: int(v["n"]) for k, v in data.get("datasets", {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
