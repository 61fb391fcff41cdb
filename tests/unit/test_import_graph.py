"""No import cycles in ``src/tagwatch``.

The graph is static: every module's ``import`` / ``from ... import`` statements, parsed with ``ast`` and never
executed. What counts as an edge, and why:

- **Function-level (lazy) imports count.** A lazy import only postpones the cycle to the first call; the two
  modules still cannot be understood, tested or moved apart. ``cli.py`` <-> the sub-CLIs importing
  ``build_settings`` back was exactly such a cycle.
- **``if TYPE_CHECKING:`` imports do not count.** They never run, and an annotation naming a type from a higher
  layer is not a dependency on its behaviour.
- ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``. The implicit import of a
  parent package (importing ``a.b.c`` runs ``a/b/__init__.py``) is not an edge: a package ``__init__`` that
  re-exports its own submodules would otherwise always be a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "tagwatch"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool):
    """Yield (imported name, line) for every import that runs, at any depth; skips ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno, tuple(alias.name for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported tagwatch module: line of the first such import}."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        tree = ast.parse(path.read_text(), filename=str(path))
        for target, line, names in _imports(tree, name, path.name == "__init__.py"):
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            chosen = submodules or [target]
            if len(submodules) < len(names) and target in modules:
                chosen.append(target)  # ``from pkg import sub, Thing``: both the submodule and the package
            for dependency in chosen:
                while dependency not in modules and "." in dependency:
                    dependency = dependency.rsplit(".", 1)[0]  # ``import a.b.Thing``-style names
                if dependency != name:
                    edges.setdefault(dependency, line)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    return paths[node] + [start]
                if child in component and child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component of >1 module always has one


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    """``a:12 -> b:40 -> a``: each module with the line of its import of the next one."""
    return " -> ".join(f"{a}:{graph[a][b]}" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_src_tagwatch_has_no_import_cycle():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, ("import cycles in src/tagwatch (module:line of its import of the next; move the shared "
                        "piece into a module both can import):\n" + "\n".join(_describe(graph, c) for c in cycles))


def test_the_walker_sees_lazy_imports_and_reports_a_cycle():
    graph = {"a": {"b": 3}, "b": {"c": 7}, "c": {"a": 12}, "d": {"a": 1}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    tree = ast.parse("def f():\n    from tagwatch.cli import build_settings\n"
                     "if TYPE_CHECKING:\n    from tagwatch.settings import Settings\n")
    assert [t for t, _, _ in _imports(tree, "tagwatch.x", False)] == ["tagwatch.cli"]


def test_relative_imports_resolve_against_the_package():
    tree = ast.parse("from . import sibling\nfrom ..errors import X\n")
    assert sorted(t for t, _, _ in _imports(tree, "tagwatch.stack.triton", False)) == ["tagwatch.errors",
                                                                                       "tagwatch.stack"]
