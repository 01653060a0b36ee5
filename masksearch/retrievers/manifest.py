"""Index directory manifest (`manifest.json`): what was indexed, how, and when."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from masksearch import __version__
from masksearch.errors import InputError, MaskSearchError

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
    except (UnicodeDecodeError, OSError) as e:
        raise InputError(f"unreadable manifest ({_first_line(e)})", path=str(path)) from None
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


REBUILD = "rebuild the index with `masksearch index`"


@contextlib.contextmanager
def loading_index(directory: str | Path) -> Iterator[None]:
    """Turn any failure while loading an index's files (a truncated bm25s JSON or `.npy`, an
    empty or shortened `passages.jsonl`, a damaged FAISS file) into one `InputError` naming
    the damaged file (found by `find_damaged_file`, else the folder)."""
    try:
        yield
    except MaskSearchError:
        raise
    except (ValueError, OSError, EOFError, KeyError, TypeError, RuntimeError, AttributeError) as e:
        bad = find_damaged_file(directory)
        where, why = bad if bad else (str(directory), _first_line(e))
        raise InputError(f"damaged index file ({why}); {REBUILD}", path=where) from None


def find_damaged_file(directory: str | Path) -> tuple[str, str] | None:
    """(path, reason) of the first index file under `directory` that does not load: a JSON file
    that does not parse, a `.npy` whose data is shorter than its header says, `passages.jsonl`
    whose size differs from the end its offsets record; None when all of them load."""
    import numpy as np

    root = Path(directory)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:  # each file on its own first
        try:
            if path.suffix == ".json":
                json.loads(path.read_bytes())
            elif path.suffix == ".npy":
                np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError, UnicodeDecodeError) as e:
            return str(path), _first_line(e)
    for path in files:  # then passages against their offsets
        offsets = path.with_suffix(".offsets.npy")
        if path.suffix == ".jsonl" and offsets.is_file():
            loaded = np.load(offsets, mmap_mode="r")
            end, size = (int(loaded[-1]) if len(loaded) else 0), path.stat().st_size
            if size != end:
                return str(path), f"{size:,} bytes where the offsets end at {end:,}"
    return None


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."
