"""No import cycles between our modules (rules, index, agent, appliance).

The graph is built with `ast`: every `import` and `from … import` counts, at module level or
inside a function (a lazy import still ties the two modules together); imports under
`if TYPE_CHECKING:` do not (they never run). `importlib.import_module("a.b")` with a literal name
counts as `import a.b`. `from pkg import name` is an edge to `pkg.name` when that is a module,
else to `pkg`.

`KNOWN_CYCLE_EDGES` lists the edges that close cycles other engineers are removing; the graph
without them must be acyclic, and an entry that no longer closes a cycle must be deleted, so the
list only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rules", "index", "agent", "appliance")

# (importer, imported): edges that close a known cycle, to be removed by their owners. Each is a
# lazy import inside a function; delete an entry once its cycle is gone (a test says when).
KNOWN_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports_in(child)
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    elif _is_import_module(node):
        assert isinstance(node, ast.Call)
        name = node.args[0]
        assert isinstance(name, ast.Constant)
        yield ast.Import(names=[ast.alias(name=str(name.value))])
    else:
        yield from _imports(node)


def _is_import_module(node: ast.AST) -> bool:
    """`importlib.import_module("agent.link.cli")` with a literal name is an import too."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    fn = node.func
    named = (isinstance(fn, ast.Attribute) and fn.attr == "import_module") or (
        isinstance(fn, ast.Name) and fn.id == "import_module"
    )
    arg = node.args[0]
    return named and isinstance(arg, ast.Constant) and isinstance(arg.value, str)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    for alias in node.names:
        yield f"{base}.{alias.name}"
        yield base


def import_graph() -> dict[str, set[str]]:
    """module → the modules of ours it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _imports(tree):
            targets = list(_targets(node, name, is_package))
            if isinstance(node, ast.ImportFrom):
                # `from pkg import x`: the submodule pkg.x when it exists, else pkg itself
                pairs = zip(targets[::2], targets[1::2], strict=True)
                targets = [sub if sub in modules else base for sub, base in pairs]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a → … → a) per strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(_path_in(graph, component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:  # shortest way back to `start` inside the component
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return paths[node] + [start]
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    raise AssertionError("a strongly connected component without a cycle")


def _without(graph: dict[str, set[str]], edges: frozenset[tuple[str, str]]) -> dict[str, set[str]]:
    return {a: {b for b in targets if (a, b) not in edges} for a, targets in graph.items()}


def test_the_import_graph_has_no_cycles() -> None:
    found = cycles(_without(import_graph(), KNOWN_CYCLE_EDGES))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_known_cycle_edges_still_close_a_cycle() -> None:
    graph = import_graph()
    stale = []
    for edge in sorted(KNOWN_CYCLE_EDGES):
        rest = _without(graph, KNOWN_CYCLE_EDGES - {edge})
        if not any(edge[0] in c and edge[1] in c for c in cycles(rest)):
            stale.append(edge)
    assert not stale, f"remove from KNOWN_CYCLE_EDGES (no cycle left): {stale}"


def test_the_checker_sees_lazy_imports_and_skips_type_checking() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import agent.config\n"
        "def f():\n    from agent import service\n"
    )
    names = [t for node in _imports(tree) for t in _targets(node, "agent.x", False)]
    assert "agent.config" not in names and "agent.service" in names
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
