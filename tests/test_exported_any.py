"""No ``Any`` in the signatures our packages export to each other (issue 14, acceptance).

A name is *exported* when another of our packages imports it: ``rules`` → agent/index/appliance,
``index`` → appliance (the layering of tests/test_layering.py). For each one this test reads the
definition with ``ast`` and fails when ``Any`` appears in its signature: a function's parameter
and return annotations; a class's annotated fields and the signatures of its public methods
(``__init__`` included). ``Any`` hides the contract exactly where two packages meet; use the
concrete type, a ``Protocol``, ``object`` or a JSON alias instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSUMERS = {"rules": ("agent", "index", "appliance"), "index": ("appliance",)}

# Exports still typed with Any (none left: ClickHouse.rows/.scalar return ``Cell``). This list
# may only shrink: every entry must still be exported and still use Any.
ALLOWED: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Export:
    module: str  # where the definition lives, e.g. "rules.engine"
    name: str  # "Engine" or "Engine.match"
    consumer: str  # the importing package


def _module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _package_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1])


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    if not node.level:
        return node.module or ""
    base = _package_of(path).split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _dotted(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


@cache
def _nodes(path: Path) -> tuple[list[ast.Import | ast.ImportFrom], list[ast.Attribute]]:
    """The import statements and the attribute reads of a file (one walk per file)."""
    imports: list[ast.Import | ast.ImportFrom] = []
    attributes: list[ast.Attribute] = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports.append(node)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
            attributes.append(node)
    return imports, attributes


def _bindings(package: str, path: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Local names bound to modules of ``package`` in ``path``, and the names imported."""
    modules: dict[str, str] = {}
    names: list[tuple[str, str]] = []
    for node in _nodes(path)[0]:
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node, path)
            if module.split(".")[0] != package:
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                if _module_path(sub) is not None:
                    modules[alias.asname or alias.name] = sub
                else:
                    names.append((module, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package:
                    modules[alias.asname or package] = alias.name if alias.asname else package
    return modules, names


def _imports(package: str) -> Iterator[tuple[str, str, str]]:
    """(module, name, consumer) for each use of ``package`` by another of our packages.

    ``from rules.x import a`` gives ``("rules.x", "a")``; a module bound by an import
    (``import rules``, ``from rules import wire``) gives each attribute read through it
    (``rules.Engine``, ``wire.Ioc``).
    """
    for consumer in CONSUMERS[package]:
        for path in sorted((ROOT / consumer).rglob("*.py")):
            modules, names = _bindings(package, path)
            for module, name in names:
                yield module, name, consumer
            for node in _nodes(path)[1]:
                parts = _dotted(node)
                if parts is None or parts[0] not in modules:
                    continue
                dotted = [*modules[parts[0]].split("."), *parts[1:]]
                # the longest prefix that is a module; the next part is the name used
                for cut in range(len(dotted) - 1, 0, -1):
                    module = ".".join(dotted[:cut])
                    if _module_path(module) is not None:
                        yield module, dotted[cut], consumer
                        break


@cache
def _definition(module: str, name: str, depth: int = 0) -> tuple[str, ast.AST] | None:
    """The top-level def/class ``name`` of ``module``, following re-exports."""
    path = _module_path(module)
    if path is None or depth > 5:
        return None
    tree = _tree(path)
    for node in tree.body:
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and node.name == name
        ):
            return module, node
    for node in _nodes(path)[0]:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _definition(_absolute(node, path), alias.name, depth + 1)
    return None


@cache
def _alias(module: str, name: str, depth: int = 0) -> tuple[str, ast.expr] | None:
    """The value of a module-level type alias ``name`` (``X = dict[str, Any]``), if any."""
    path = _module_path(module)
    if path is None or depth > 5:
        return None
    tree = _tree(path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.value is not None:
            if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return module, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            if isinstance(node.target, ast.Name) and node.target.id == name:
                return module, node.value
    for node in _nodes(path)[0]:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _alias(_absolute(node, path), alias.name, depth + 1)
    return None


def _uses_any(annotation: ast.expr | None, module: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether ``Any`` appears in ``annotation``, also through our type aliases."""
    if annotation is None:
        return False
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return _uses_any(ast.parse(annotation.value, mode="eval").body, module, seen)
    for node in ast.walk(annotation):
        if (
            isinstance(node, ast.Name | ast.Attribute)
            and (node.id if isinstance(node, ast.Name) else node.attr) == "Any"
        ):
            return True
        if isinstance(node, ast.Name) and node.id not in seen:
            found = _alias(module, node.id)
            if found is not None and _uses_any(found[1], found[0], seen | {node.id}):
                return True
    return False


def _signature_any(fn: ast.FunctionDef | ast.AsyncFunctionDef, module: str) -> bool:
    a = fn.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
    return _uses_any(fn.returns, module) or any(
        p is not None and _uses_any(p.annotation, module) for p in params
    )


def _offenders(module: str, node: ast.AST, name: str) -> Iterator[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        if _signature_any(node, module):
            yield f"{module}.{name}"
        return
    assert isinstance(node, ast.ClassDef)
    for base in node.bases:  # inherited members are exported too (wire's _Message mixin)
        if isinstance(base, ast.Name) and (hit := _definition(module, base.id)) is not None:
            yield from _offenders(hit[0], hit[1], base.id)
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            if not item.target.id.startswith("_") and _uses_any(item.annotation, module):
                yield f"{module}.{name}.{item.target.id}"
        elif isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            public = not item.name.startswith("_") or item.name == "__init__"
            if public and _signature_any(item, module):
                yield f"{module}.{name}.{item.name}"


@cache
def exported_with_any() -> dict[str, set[str]]:
    """``{"rules.engine.Engine.match": {"agent", ...}}``: exported names whose signature has Any."""
    found: dict[str, set[str]] = {}
    for package in CONSUMERS:
        for module, name, consumer in _imports(package):
            hit = _definition(module, name)
            if hit is None:
                continue  # a constant, a type alias or a module
            for offender in _offenders(hit[0], hit[1], name):
                found.setdefault(offender, set()).add(consumer)
    return found


def test_the_scan_sees_the_imports() -> None:
    """Guards the test itself: it must find known cross-package imports."""
    names = {(m, n) for p in CONSUMERS for m, n, _ in _imports(p)}
    assert ("rules", "Engine") in names  # `import rules` ... `rules.Engine(...)` (agent)
    assert ("rules.iocs", "merge_detection") in names  # `from rules.iocs import ...`
    assert ("rules.wire", "Ioc") in names  # `from rules import wire` ... `wire.Ioc`
    assert ("index", "EventStore") in names
    # Any behind one of our aliases counts (RuleFn = Callable[[dict[str, Any], ...], bool])
    assert _uses_any(ast.parse("list[RuleFn]", mode="eval").body, "rules.compiler")
    assert not _uses_any(ast.parse("JsonValue", mode="eval").body, "rules.wire")


def test_no_any_in_exported_signatures() -> None:
    found = exported_with_any()
    unexpected = sorted(k for k in found if k not in ALLOWED)
    assert not unexpected, "Any in signatures used across packages:\n" + "\n".join(
        f"  {k} (imported by {', '.join(sorted(found[k]))})" for k in unexpected
    )


def test_allow_list_only_shrinks() -> None:
    found = exported_with_any()
    stale = sorted((ALLOWED) - set(found))
    assert not stale, f"fixed or no longer exported: remove from ALLOWED: {stale}"
    outside = sorted(k for k in ALLOWED if found[k] != {"appliance"})
    assert not outside, f"ALLOWED is for appliance-side imports only: {outside}"
