"""No import cycles inside sl_scaling: every module can be understood (and imported) after what it uses.

Every import counts, lazy ones inside functions and TYPE_CHECKING ones included: a lazy import that
closes a cycle is still two modules that each need the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sl_scaling

PACKAGE = Path(sl_scaling.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["sl_scaling", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The sl_scaling modules `name` imports (`from package import submodule` counts the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                cycles.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycle_inside_sl_scaling() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_the_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _importers_of(prefix: str) -> set[str]:
    modules = _modules()
    return {
        name
        for name, path in modules.items()
        if any(t.startswith(prefix) for t in _imports(name, path, modules))
    }


def test_imports_run_one_way() -> None:
    """The CLI sits on top and the bench beside the product: the product imports neither."""
    assert {m for m in _importers_of("sl_scaling.cli") if not m.startswith("sl_scaling.cli")} == set()
    bench_users = _importers_of("sl_scaling.bench")
    assert {m for m in bench_users if not m.startswith(("sl_scaling.bench", "sl_scaling.cli"))} == set()
    lower = ("sl_scaling.stages", "sl_scaling.engines", "sl_scaling.training", "sl_scaling.evaluation")
    assert {m for m in _importers_of("sl_scaling.pipeline") if m.startswith(lower)} == set()
    assert {m for m in _importers_of("sl_scaling.executors") if m.startswith(lower)} == set()
