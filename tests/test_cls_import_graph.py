"""No import circle in lt_detectron.classification: the graph of every import of its modules, module-level and
function-level alike, is acyclic (a function-level import must not hide a circle)."""

from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "lt_detectron.classification"


def _modules() -> dict[str, str]:
    """Module name -> file, for every module of the package (a package is its __init__.py)."""
    root = os.path.join(REPO, *PACKAGE.split("."))
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), os.path.dirname(os.path.dirname(root)))
                parts = rel[: -len(".py")].split(os.sep)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = os.path.join(folder, name)
    return out


def _imports(module: str, path: str, modules: dict[str, str]) -> set[str]:
    """The package's modules that `module` imports anywhere in its file."""
    is_package = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = module if is_package else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = ".".join(p for p in (base if node.level else "", node.module or "") if p)
            # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself.
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import a.b.c` of a non-module name: its closest module
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):  # an ancestor is already importing
                found.add(name)
    return found


def test_classification_imports_have_no_circle():
    modules = _modules()
    assert {f"{PACKAGE}.methods.base", f"{PACKAGE}.trainer", f"{PACKAGE}.train"} <= set(modules)
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            pytest.fail("import circle: " + " -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    # The layers run one way: the command line, then the trainer, then the methods.
    assert f"{PACKAGE}.trainer" in graph[f"{PACKAGE}.train"]
    assert not any(m.startswith(f"{PACKAGE}.train") for t in graph if ".methods" in t for m in graph[t])
