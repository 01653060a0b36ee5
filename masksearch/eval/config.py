"""What a results directory's rows were run with: one `Variant` per (label, method), its
configuration fingerprint, and `run.json`.

Rows of `results.jsonl` are keyed by (label, method, dataset, id). The label names the model
configuration (by default the model spec; with `--base-model`/`--pre-train`/`--post-train` the
paper table's row; or `--label`), so several models and methods share one directory. Every row
carries the fingerprint of the settings it ran with; a rerun into the same directory with the
same label but other settings is refused (`check_compatible`), so rows of different
configurations never mix and `run.json` only records settings that its rows ran with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masksearch.context import Context
from masksearch.errors import ConfigError, InputError

MANIFEST = "run.json"
MANIFEST_VERSION = 2
# Context fields that do not change what a question's run produces.
NOT_FINGERPRINTED = ("llm_timeout_s", "recall_threshold", "judge_model", "agent_mode")


@dataclass(frozen=True)
class Variant:
    """One method under one model configuration: the unit whose rows must share settings."""

    method: str
    label: str
    settings: Mapping[str, Any]
    tags: Mapping[str, str] = field(default_factory=dict)  # base_model, pre_train, post_train

    @property
    def key(self) -> str:
        return f"{self.label}|{self.method}"

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"method": self.method, **self.settings}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_manifest(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "method": self.method,
            "fingerprint": self.fingerprint,
            **dict(self.tags),
            "settings": dict(self.settings),
        }


def context_settings(context: Context, *, judge_model: str | None = None) -> dict[str, Any]:
    """The settings of a method's `Context` that change its rows (+ the eval judge), with the
    decoding of every model call (`Context.decoding()`: temperature, top-p, repetition penalty,
    stop strings — the RL rollouts' `Decoding`)."""
    data = {k: v for k, v in context.to_dict().items() if k not in NOT_FINGERPRINTED}
    data = {k: v for k, v in data.items() if not k.endswith("_model")}
    data["decoding"] = context.decoding().to_dict()
    data["models"] = dict(context.models())
    data["judge_model"] = judge_model
    return data


def make_label(
    model: str,
    *,
    label: str | None = None,
    base_model: str | None = None,
    pre_train: str | None = None,
    post_train: str | None = None,
) -> tuple[str, dict[str, str]]:
    """(label, tags): `--label` if given, else `base/pre/post` with `--base-model`, else the spec."""
    tags = {
        k: v.strip()
        for k, v in (
            ("base_model", base_model),
            ("pre_train", pre_train),
            ("post_train", post_train),
        )
        if v is not None and v.strip()
    }
    if (pre_train or post_train) and "base_model" not in tags:
        raise ConfigError("--pre-train/--post-train need --base-model (the table's row group)")
    for name, value in tags.items():
        if "|" in value or "\n" in value:
            raise ConfigError(f"--{name.replace('_', '-')} must not contain '|' or a newline")
    if label is not None:
        if not label.strip() or "|" in label or "\n" in label:
            raise ConfigError("--label must be non-empty without '|' or a newline")
        return label.strip(), tags
    if "base_model" in tags:
        stages = [tags.get("pre_train", "-"), tags.get("post_train", "-")]
        return "/".join([tags["base_model"], *stages]), tags
    return model, tags


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:16]


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(
            f"unreadable run manifest ({e}); restore it or use another --out", path=str(path)
        ) from None
    if not isinstance(data, dict):
        raise InputError("run manifest is not a JSON object", path=str(path))
    return data


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    parts = [f"{k} {old.get(k)!r} → {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return ", ".join(parts[:6]) or "settings differ"


def check_compatible(
    out_dir: str | Path,
    variants: Sequence[Variant],
    datasets: Mapping[str, Mapping[str, Any]],
    rows: Iterable[Mapping[str, Any]],
) -> None:
    """Refuse a run whose rows would mix with rows of another configuration in `out_dir`."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    known = manifest.get("variants") or {}
    hint = "use another --out, or --label to keep this configuration's rows apart"
    for v in variants:
        old = known.get(v.key)
        if isinstance(old, dict) and old.get("fingerprint") != v.fingerprint:
            raise ConfigError(
                f"{out_dir}: {v.method} [{v.label}] already has results run with other settings "
                f"({_diff(old.get('settings') or {}, v.settings)}); {hint}"
            )
    by_key = {v.key: v for v in variants}
    for row in rows:
        match = by_key.get(f"{row_label(row)}|{row.get('method')}")
        if match is not None and row.get("config") != match.fingerprint:
            what = (
                "an older version without a configuration record"
                if "config" not in row
                else ("other settings")
            )
            raise ConfigError(
                f"{out_dir / 'results.jsonl'}: {match.method} [{match.label}] has rows run with {what} "
                f"(e.g. {row.get('dataset')}/{row.get('id')}); {hint}"
            )
    old_sets = manifest.get("datasets") or {}
    for name, info in datasets.items():
        old = old_sets.get(name)
        if isinstance(old, dict) and old.get("sha256") not in (None, info["sha256"]):
            raise ConfigError(
                f"{out_dir}: dataset {name} was run from another file ({old.get('path')}, "
                f"now {info['path']}); use another --out or another dataset name"
            )
        if isinstance(old, dict) and old.get("split") != info.get("split"):
            raise ConfigError(
                f"{out_dir}: dataset {name} was run with split {old.get('split')!r}, "
                f"now {info.get('split')!r}; use another --out or another dataset name"
            )


def merged_manifest(
    out_dir: str | Path, variants: Sequence[Variant], datasets: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """`run.json` after this run: earlier variants and datasets kept, this run's added."""
    data = read_manifest(out_dir)
    if data.get("version") != MANIFEST_VERSION:  # an older layout: keep only what it proves
        data = {"datasets": data.get("datasets") or {}}
    data["version"] = MANIFEST_VERSION
    sets = data.setdefault("datasets", {})
    for name, info in datasets.items():
        n = max(int(info["n"]), int((sets.get(name) or {}).get("n") or 0))
        sets[name] = {**info, "n": n}
    data.setdefault("variants", {}).update({v.key: v.to_manifest() for v in variants})
    data["variants"] = dict(sorted(data["variants"].items()))
    data["datasets"] = dict(sorted(sets.items()))
    return data


def row_label(row: Mapping[str, Any]) -> str:
    """A row's configuration label (older rows without one: their model spec)."""
    return str(row.get("label") or row.get("model") or "")
