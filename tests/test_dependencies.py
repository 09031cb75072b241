"""Every third-party module the code imports is declared by a dependency that the README installs.

A green CI once hid a missing `hypothesis` because the machine had it installed by hand. This test reads
the imports of `sl_scaling/` and `tests/` and the extras named in the README's install command, and fails
when an import is provided only by something installed by hand or pulled in transitively. Optional GPU
backends (the `gpu` extra) may be imported only inside functions, so a CPU install never needs them.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("sl_scaling", "tests")
LAZY_ONLY_EXTRA = "gpu"


@dataclass(frozen=True)
class Import:
    module: str  # top-level name, e.g. "transformers"
    where: str  # "path:line"
    lazy: bool  # inside a function body (or under `if TYPE_CHECKING:`)


def canonical(name: str) -> str:
    """PEP 503 normalisation, so `pydantic_settings`, `Pydantic-Settings` and `pydantic.settings` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.split(r"[\s<>=!~;\[(@]", requirement.strip(), maxsplit=1)[0])


def readme_extras() -> list[str]:
    """The extras of the README's install command (`pip install … -e '.[dev,cluster]'`)."""
    found = re.search(r"pip install [^\n]*-e '\.\[([a-z,_-]+)\]'", (ROOT / "README.md").read_text())
    assert found, "README.md no longer shows `pip install … -e '.[extras]'`: update this test with it"
    return found.group(1).split(",")


def declared(extras: list[str]) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {requirement_name(r) for r in requirements}


def local_modules() -> set[str]:
    """Names importable from the checkout itself: the package and the tests' own helper modules."""
    names = {"sl_scaling"}
    for folder in (ROOT / "tests", *(p for p in (ROOT / "tests").iterdir() if p.is_dir())):
        names |= {p.stem for p in folder.glob("*.py")}
    return names


def is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_in(path: Path, root: Path = ROOT) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_lazy = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            child_lazy = child_lazy or is_type_checking_block(child)
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            else:
                names = []
            for name in names:
                where = f"{path.relative_to(root)}:{child.lineno}"
                found.append(Import(name.split(".")[0], where, lazy))
            visit(child, child_lazy)

    visit(tree, lazy=False)
    return found


def third_party_imports() -> list[Import]:
    skip = set(sys.stdlib_module_names) | local_modules() | {"__future__"}
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += [i for i in imports_in(path) if i.module not in skip]
    return found


@cache
def installed_providers() -> dict[str, list[str]]:
    return packages_distributions()


def providers(module: str) -> set[str]:
    """The distributions that install `module` here; for one not installed (a GPU backend on a CPU
    machine), the distribution of the same name."""
    return {canonical(d) for d in installed_providers().get(module, [module])}


def test_every_import_is_declared_by_the_readme_install() -> None:
    installed = declared(readme_extras())
    gpu_only = declared([LAZY_ONLY_EXTRA]) - installed
    problems = []
    for imp in third_party_imports():
        dists = providers(imp.module)
        if dists & installed:
            continue
        if dists & gpu_only:
            if not imp.lazy:
                problems.append(f"{imp.where}: `{imp.module}` (gpu extra) is imported at module level")
            continue
        problems.append(f"{imp.where}: `{imp.module}` is not provided by any dependency the README installs")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_an_undeclared_import(tmp_path: Path) -> None:
    """The scan itself works: a module that imports an undeclared package is reported, a lazy one is lazy."""
    source = tmp_path / "example.py"
    source.write_text("import yaml\n\ndef load():\n    import vllm\n")
    imports = {(i.module, i.lazy) for i in imports_in(source, root=tmp_path)}
    assert imports == {("yaml", False), ("vllm", True)}
    assert "hypothesis" in declared(["dev"])
