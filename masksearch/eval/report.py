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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from masksearch.errors import InputError
from masksearch.eval.aggregate import (
    METRIC_TITLES,
    RowInfo,
    Summary,
    answerable_subset,
    summarize,
)
from masksearch.eval.datasets import display_name
from masksearch.eval.runner import RESULTS, read_results
from masksearch.fileio import atomic_write


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
