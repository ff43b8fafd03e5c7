"""The package's shape: no import cycles among its modules; its docstring examples run."""

import ast
import doctest
import importlib
from pathlib import Path

import pytest

import prcrs

PACKAGE = Path(prcrs.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    """{dotted module name: its file} of every module of the package."""
    return {".".join(("prcrs", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def _module_imports() -> dict[str, set[str]]:
    """For each prcrs module, the prcrs modules it imports: at module level and inside functions
    alike (a lazy import still ties two modules together)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level - 1
                    parts = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([node.module] if node.module else []))
                subs = {f"{base}.{a.name}" for a in node.names}
                edges |= (subs & modules.keys()) or ({base} & modules.keys())
        graph[name] = edges - {name}
    return graph


def test_the_import_graph_sees_imports_inside_functions():
    graph = _module_imports()
    assert "prcrs.report.build" in graph["prcrs.cli"]  # imported inside cmd_report only


def test_no_module_imports_itself_back():
    graph, cycles = _module_imports(), []

    def visit(name, stack):
        for nxt in graph[name]:
            if nxt in stack:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in seen:
                seen.add(nxt)
                visit(nxt, [*stack, nxt])

    seen = set()
    for start in graph:
        if start not in seen:
            seen.add(start)
            visit(start, [start])
    assert len(graph) > 30 and not cycles, cycles


DOCTESTED = sorted(name for name, path in _modules().items() if ">>> " in path.read_text())


def test_the_modules_with_examples_are_found():
    assert {"prcrs.clinical.calibration", "prcrs.data.history", "prcrs.moved_modules"} <= set(DOCTESTED)


@pytest.mark.parametrize("module", DOCTESTED)
def test_the_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted and not result.failed
