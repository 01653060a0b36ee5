"""The docs stay a house a newcomer can read: a short README whose test command is the one CI
runs, no lab diary in the design docs, and every relative link (file and #anchor) resolving."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# Markdown files whose relative links must resolve.
LINKED = [
    README,
    ROOT / "CONTRIBUTING.md",
    ROOT / "benchmarks" / "RESULTS.md",
    *sorted(DOCS.glob("*.md")),
    *sorted((ROOT / "recipes").glob("*/README.md")),
]

# Design docs say what the code does and why; dates of runs, issue numbers and diary belong in git
# and in benchmarks/RESULTS.md.
DIARY = re.compile(r"[0-9]{2}:[0-9]{2} UTC|issue [0-9]+", re.IGNORECASE)
DIARY_PHRASES = ("this round", "this stop", "at this stop", "previous stop", "found preparing")

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
IMAGE = re.compile(r"!\[[^\]]*\]\((?P<target>[^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`]*`")
HEADING = re.compile(r"^(#{1,6})\s+(?P<text>.+?)\s*#*\s*$")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines outside fenced code blocks, with their 1-based numbers."""
    out: list[tuple[int, str]] = []
    fenced = False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, punctuation dropped, spaces
    to hyphens (link markup keeps its text, code spans their content)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in prose_lines(path):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m["text"])
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    for _, line in prose_lines(path):  # explicit HTML anchors
        out.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", line))
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    links: list[tuple[int, str]] = []
    for n, line in prose_lines(path):
        line = INLINE_CODE.sub("", line)
        for m in [*LINK.finditer(line), *IMAGE.finditer(line)]:
            target = m["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, mailto:, ...
                continue
            links.append((n, target))
    return links


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for n, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{n}: {target}"
        if not dest.exists():
            problems.append(f"{where} (no such file)")
            continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(f"{where} (anchor into a non-markdown file)")
            elif anchor not in anchors(dest):
                problems.append(f"{where} (no heading with anchor #{anchor})")
    return problems


def test_readme_is_at_most_150_lines() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 150, f"README.md has {n} lines; move details to docs/ (install: docs/install.md)"


def test_no_clock_times_issue_numbers_or_diary_in_readme_and_docs() -> None:
    files = [README, *sorted(p for p in DOCS.rglob("*") if p.is_file())]
    hits = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if DIARY.search(line) or any(p in line.lower() for p in DIARY_PHRASES):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "diary in the docs (figures go to benchmarks/RESULTS.md):\n" + "\n".join(hits)


def test_readme_test_command_is_the_one_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    command = [line for line in ci if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert len(command) == 1, command
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert command[0] + "\n" in blocks, "README's test command differs from .ci/run's"


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert path.exists(), path
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_link_checker_catches_a_missing_file_and_anchor(tmp_path: Path) -> None:
    # The checker itself must be able to fail: a missing file, a missing anchor, and a good one.
    (tmp_path / "b.md").write_text("# Title here\n\n## `code` — and, more\n", encoding="utf-8")
    doc = tmp_path / "a.md"
    doc.write_text(
        "[ok](b.md#code--and-more) [ok2](b.md#title-here) [gone](c.md) [bad](b.md#nope)\n"
        "```\n[in code](missing.md)\n```\n`[inline](missing.md)` [web](https://x.org/y)\n",
        encoding="utf-8",
    )
    targets = [t for _, t in relative_links(doc)]
    assert targets == ["b.md#code--and-more", "b.md#title-here", "c.md", "b.md#nope"]
    problems = broken_links(doc, root=tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "c.md (no such file)",
        "b.md#nope (no heading with anchor #nope)",
    ]
