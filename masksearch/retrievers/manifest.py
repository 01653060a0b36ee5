"""Index directory manifest (`manifest.json`): what was indexed, how, and when."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from masksearch import __version__
from masksearch.errors import InputError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def write_manifest(
    directory: str | Path, *, kind: str, corpus: str, count: int, **settings: Any
) -> dict[str, Any]:
    """Write `manifest.json` atomically; returns the manifest."""
    d = Path(directory)
    manifest = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "corpus": corpus,
        "count": count,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "masksearch_version": __version__,
        **settings,
    }
    tmp = d / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, d / MANIFEST)
    return manifest


def read_manifest(directory: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """Read and check `manifest.json` (and its `kind` when given)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(
            "no manifest.json here; build an index with `masksearch index`",
            path=str(Path(directory)),
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", path=str(path), line=e.lineno) from None
    if not isinstance(manifest, dict) or "kind" not in manifest:
        raise InputError("missing required field", path=str(path), field="kind")
    if kind is not None and manifest["kind"] != kind:
        raise InputError(
            f"expected a {kind} index, found {manifest['kind']!r}", path=str(path), field="kind"
        )
    return manifest


def resolve_index_dir(directory: str | Path, kind: str) -> Path:
    """`directory` itself if it holds a `kind` index, else its `kind` sub-directory (`--kind both`)."""
    d = Path(directory)
    if (d / MANIFEST).is_file() and read_manifest(d).get("kind") == kind:
        return d
    if (d / kind / MANIFEST).is_file():
        return d / kind
    raise InputError(f"no {kind} index (manifest.json) here or in ./{kind}", path=str(d))


def update_manifest(directory: str | Path, **settings: Any) -> dict[str, Any]:
    """Add or replace top-level fields of an existing manifest (atomic rewrite)."""
    d = Path(directory)
    manifest = read_manifest(d)
    manifest.update(settings)
    tmp = d / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, d / MANIFEST)
    return manifest
