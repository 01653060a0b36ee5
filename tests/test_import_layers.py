"""The package's import graph points down and has no circles.

Every `import` and `from … import` of a `masksearch` module (at module level, inside functions
and under `TYPE_CHECKING` alike) is an arrow from the importing module to the imported one. Each
module belongs to an area (a top-level module, or a subpackage), and the areas have a declared
order, lowest first: an arrow may stay inside its area or point to a lower one, never up; and the
module graph has no cycles at all (not even inside an area).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "masksearch"

# lowest first; an area may import only areas before it (and itself)
LAYERS = [
    "__init__",  # the package itself (its version)
    "types",
    "errors",
    "settings",  # settings dataclasses from a command's options (no masksearch imports)
    "redact",
    "fileio",
    "jsonl",
    "records",
    "store",  # the trajectory store: below resources (the graph's save node) and pipeline
    "prompts",
    "tagformat",
    "quality",  # data-quality rules of thoughts and rewrites (pure text checks)
    "scoring",
    "grammars",
    "student",
    "corpus",
    "models",
    "retrievers",
    "context",
    "resources",
    "context_options",
    "state",
    "workers",  # Ray sharding and its CLI options: below every stage that runs on it
    "nodes",
    "graph",
    "masking",
    "pipeline",
    "eval",
    "training",
    "offline",  # `masksearch run`: chains corpus → index → mask → generate
    "cli",
]


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _targets(node: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    # `from pkg import mod` imports the module `pkg.mod`; `from mod import name` imports `mod`
    return [
        f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
        for alias in node.names
    ]


def import_graph() -> dict[str, set[str]]:
    """module → the masksearch modules it imports."""
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for target in _targets(node, module, path.name == "__init__.py", known):
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target.startswith("masksearch") and target != module:
                    graph[module].add(target)
    return graph


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    return [
        f"{src} -> {dst}"
        for src, dsts in sorted(graph.items())
        for dst in sorted(dsts)
        if rank[area(dst)] > rank[area(src)]
    ]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> Iterator[None]:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                yield from visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))
        yield None

    for v in sorted(graph):
        if v not in index:
            for _ in visit(v):
                pass
    return found


def test_every_area_has_a_layer():
    areas = {area(m) for m in modules()}
    assert areas - set(LAYERS) == set(), "add the new area to LAYERS"
    assert set(LAYERS) - areas == set(), "LAYERS names an area that no longer exists"


def test_imports_point_down():
    assert upward_arrows(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_checks_can_fail():
    """The checkers see an upward arrow and a circle when there is one."""
    graph = {
        "masksearch.scoring": {"masksearch.graph.builder"},
        "masksearch.graph.builder": {"masksearch.graph.runner"},
        "masksearch.graph.runner": {"masksearch.graph.builder"},
    }
    assert upward_arrows(graph) == ["masksearch.scoring -> masksearch.graph.builder"]
    assert cycles(graph) == [["masksearch.graph.builder", "masksearch.graph.runner"]]
    # the real graph is read: the graph builder imports the nodes
    assert "masksearch.nodes.judge" in import_graph()["masksearch.graph.builder"]
