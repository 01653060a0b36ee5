"""The options shared by the commands that run on `workers.cluster` (generate, mask, eval run):
Ray, and the same option wherever two of them have it; and the Ray settings they ask for."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from masksearch.workers.cluster import EXIT_INTERRUPTED, ClusterSettings

__all__ = [
    "EXIT_INTERRUPTED",
    "ProcessesOption",
    "ProgressOption",
    "RayAddressOption",
    "RayOption",
    "RetryFailedOption",
    "SkipBadOption",
    "SummaryJsonOption",
    "cluster_settings",
]


def _cluster_cpus() -> int:
    """Workers for a bare `--ray`: this machine's CPUs (a joined cluster: set --processes)."""
    return max(1, min(64, os.cpu_count() or 1))


ProcessesOption = Annotated[
    int | None,
    typer.Option(
        "--processes",
        "-p",
        min=1,
        max=4096,
        help="Ray workers (implies --ray): the work is split over them by a stable hash of each item's id and the concurrency is shared among them. Default with --ray: one per CPU of this machine, at most 64.",
    ),
]
RayOption = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Run on Ray workers; starts a local Ray instance (pip install 'masksearch\\[ray]').",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Join this Ray cluster (auto, or ray://host:10001); implies --ray. Every node needs the input files (same paths) and masksearch installed; see docs/scale.md.",
    ),
]

# generate and mask
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
]
SkipBadOption = Annotated[
    bool,
    typer.Option("--skip-bad", help="Skip (and count) bad input records instead of stopping."),
]
SummaryJsonOption = Annotated[
    Path | None, typer.Option("--summary-json", help="Also write the run summary as JSON here.")
]
# generate and eval run
RetryFailedOption = Annotated[
    bool,
    typer.Option(
        "--retry-failed",
        help="Redo the items whose stored result failed (the others already done are skipped).",
    ),
]


def cluster_settings(
    processes: int | None, ray: bool, ray_address: str | None
) -> ClusterSettings | None:
    """The Ray settings the options ask for, or None (run in this process)."""
    if not (ray or ray_address or processes is not None):
        return None
    return ClusterSettings(workers=processes or _cluster_cpus(), address=ray_address)
