"""Summary tables in the paper's layout (rows = methods, columns = datasets + Avg) and a bar chart.

Cells are means ×100 over the questions of a (method, dataset); Avg is the unweighted mean
over datasets, as in the MaskSearch table. Everything is re-rendered from `results.jsonl`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masksearch.errors import InputError
from masksearch.eval.datasets import column_order, display_name
from masksearch.eval.runner import RESULTS, read_results

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


@dataclass
class Summary:
    methods: list[str]
    datasets: list[str]
    cells: dict[
        tuple[str, str], dict[str, Any]
    ]  # (method, dataset) -> {metric: mean, n, failed, ...}

    def value(self, method: str, dataset: str, metric: str) -> float | None:
        cell = self.cells.get((method, dataset))
        return None if cell is None else cell.get(metric)

    def columns(self, metric: str) -> list[str]:
        """Datasets shown for a metric: all for the main metrics, else those where it applies."""
        if metric in TABLE_METRICS:
            return list(self.datasets)
        return [
            d
            for d in self.datasets
            if any(metric in c for (_, cd), c in self.cells.items() if cd == d)
        ]

    def avg(self, method: str, metric: str) -> tuple[float | None, bool]:
        """(unweighted mean over datasets with a value, whether every dataset had one)."""
        vals = [self.value(method, d, metric) for d in self.columns(metric)]
        have = [v for v in vals if v is not None]
        return (sum(have) / len(have) if have else None), len(have) == len(vals)

    def metrics(self) -> list[str]:
        present = {m for cell in self.cells.values() for m in cell if m in EXTRA_METRICS}
        return [*TABLE_METRICS, *(m for m in EXTRA_METRICS if m in present)]


def summarize(rows: Iterable[Mapping[str, Any]]) -> Summary:
    sums: dict[tuple[str, str], dict[str, list[float]]] = {}
    counts: dict[tuple[str, str], dict[str, int]] = {}
    methods: list[str] = []
    datasets: list[str] = []
    for row in rows:
        key = (str(row["method"]), str(row["dataset"]))
        if key[0] not in methods:
            methods.append(key[0])
        datasets.append(key[1])
        acc = sums.setdefault(key, {})
        cnt = counts.setdefault(key, {"n": 0, "failed": 0, "latency_s": 0.0, "turns": 0})
        cnt["n"] += 1
        cnt["failed"] += row.get("status") == "failed"
        cnt["latency_s"] += float(row.get("latency_s") or 0.0)
        cnt["turns"] += int(row.get("turns") or 0)
        for metric, value in (row.get("scores") or {}).items():
            if value is not None:
                acc.setdefault(metric, []).append(float(value))
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for key, metric_values in sums.items():
        cnt = counts[key]
        cell: dict[str, Any] = {m: 100.0 * sum(v) / len(v) for m, v in metric_values.items() if v}
        cell.update(
            n=cnt["n"],
            failed=cnt["failed"],
            mean_latency_s=cnt["latency_s"] / cnt["n"],
            mean_turns=cnt["turns"] / cnt["n"],
        )
        if "judge" in metric_values:
            cell["judged"] = len(metric_values["judge"])
        cells[key] = cell
    return Summary(methods, column_order(datasets), cells)


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def markdown_table(s: Summary, metric: str) -> str:
    cols = s.columns(metric)
    head = ["Method", *(display_name(d) for d in cols), "Avg"]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for m in s.methods:
        avg, complete = s.avg(m, metric)
        cells = [_fmt(s.value(m, d, metric)) for d in cols]
        lines.append(
            "| "
            + " | ".join([m, *cells, _fmt(avg) + ("" if complete or avg is None else "*")])
            + " |"
        )
    return "\n".join(lines)


def table_rows(s: Summary, metric: str) -> list[list[str]]:
    """CSV rows (header first); Avg is empty when a method lacks a dataset."""
    cols = s.columns(metric)
    rows = [["method", *(display_name(d) for d in cols), "Avg"]]
    for m in s.methods:
        avg, complete = s.avg(m, metric)
        vals = [s.value(m, d, metric) for d in cols]
        rows.append(
            [
                m,
                *("" if v is None else f"{v:.2f}" for v in vals),
                "" if avg is None or not complete else f"{avg:.2f}",
            ]
        )
    return rows


def render_markdown(s: Summary, expected: Mapping[str, int] | None = None) -> str:
    parts = [
        "# Evaluation summary",
        "",
        "Scores are means ×100 per (method, dataset); Avg is the unweighted mean over datasets "
        "(`*`: over the datasets this method has). Failed questions count as 0.",
        "",
    ]
    for metric in s.metrics():
        parts += [f"## {METRIC_TITLES.get(metric, metric)}", "", markdown_table(s, metric), ""]
    parts += ["## Questions per cell (failed)", ""]
    head = ["Method", *(display_name(d) for d in s.datasets)]
    parts += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for m in s.methods:
        cells = []
        for d in s.datasets:
            c = s.cells.get((m, d))
            want = (expected or {}).get(d)
            cells.append(
                "–"
                if c is None
                else f"{c['n']}"
                + (f"/{want}" if want and want != c["n"] else "")
                + (f" ({c['failed']})" if c["failed"] else "")
            )
        parts.append("| " + " | ".join([m, *cells]) + " |")
    parts.append("")
    return "\n".join(parts)


def plot(s: Summary, metric: str, path: Path) -> Path:
    """Grouped bar chart: one group per dataset (+ Avg), one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = s.columns(metric)
    groups = [*(display_name(d) for d in cols), "Avg"]
    width = 0.8 / max(1, len(s.methods))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(groups)), 4.0))
    for i, m in enumerate(s.methods):
        vals = [s.value(m, d, metric) or 0.0 for d in cols] + [s.avg(m, metric)[0] or 0.0]
        xs = [g + (i - (len(s.methods) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, vals, width=width, label=m)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(f"{metric} ×100")
    ax.set_ylim(0, 100)
    ax.set_title(METRIC_TITLES.get(metric, metric))
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(out_dir: str | Path, *, chart_metric: str = "recall") -> dict[str, Path]:
    """Render summary.md, table_<metric>.csv, scores.csv and <metric>.png from results.jsonl."""
    out_dir = Path(out_dir)
    rows = read_results(out_dir)
    if not rows:
        raise InputError("no results to report", path=str(out_dir / RESULTS))
    s = summarize(rows.values())
    expected = _expected_sizes(out_dir)
    written = {"markdown": out_dir / "summary.md"}
    written["markdown"].write_text(render_markdown(s, expected), encoding="utf-8")
    for metric in s.metrics():
        p = out_dir / f"table_{metric}.csv"
        with open(p, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(table_rows(s, metric))
        written[f"table_{metric}"] = p
    p = out_dir / "scores.csv"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "dataset", "metric", "value", "n", "failed"])
        for (m, d), cell in s.cells.items():
            for metric in s.metrics():
                if metric in cell:
                    w.writerow([m, d, metric, f"{cell[metric]:.4f}", cell["n"], cell["failed"]])
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
