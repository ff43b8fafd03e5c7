"""The code that determines a run's numbers, as one fingerprint: part of a run's identity (a
stored run made by other code is run again) and of the pretraining cache's key.

It hashes the source of the modules that shape results (`RESULT_SOURCES`: models, data, the
reading of a config, preprocessing, fitting, splits, metrics, the engine, the clinical analysis,
the schema and its units), each parsed and dumped without its docstrings, so an edit of a comment or a docstring
keeps the fingerprint and an edit of code changes it. Tracking, reports, serving and the CLI
cannot change a stored number and are left out.

A reshape of the code changes the fingerprint without changing a number. `code_lineage.json`
records, for a fingerprint, the earlier ones shown to compute the same out-of-fold predictions
bit for bit (`python benchmarks/equivalence.py --compare BEFORE AFTER --record`), so the runs
they stored still resume, except a run with a diverged fold (`prcrs.evaluate`), which runs again.

    >>> len(code_fingerprint()), code_fingerprint() == code_fingerprint()
    (12, True)
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
RESULT_SOURCES = ("models", "data", "clinical", "schema.py", "units.py", "preprocessing.py", "fitting.py",
                  "splits.py", "metrics.py", "engine.py", "run_config.py")


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body and \
                isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and \
                isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_files(root: Path = PACKAGE) -> list[Path]:
    """The .py files of `RESULT_SOURCES` under `root`, sorted."""
    files = []
    for name in RESULT_SOURCES:
        path = root / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def fingerprint_of(root: Path = PACKAGE) -> str:
    """The fingerprint of the result-shaping sources under `root` (12 hex digits)."""
    digest = hashlib.sha1()
    for path in source_files(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(ast.dump(_without_docstrings(ast.parse(path.read_text()))).encode())
    return digest.hexdigest()[:12]


LINEAGE = PACKAGE / "code_lineage.json"


@functools.cache
def code_fingerprint() -> str:
    """This installation's fingerprint (computed once per process)."""
    return fingerprint_of()


def lineage() -> dict[str, list[str]]:
    """{fingerprint: the earlier fingerprints it was shown to compute the same numbers as}."""
    return json.loads(LINEAGE.read_text()) if LINEAGE.is_file() else {}


def same_numbers(made_by: str, now: str | None = None) -> bool:
    """True when code with fingerprint `made_by` computes what the code of `now` (default: this
    installation's) computes: the same fingerprint, or one linked to it by records, in either
    direction and however many records apart (computing the same numbers is an equivalence: two
    reshapes each shown against one baseline compute each other's numbers)."""
    now = now or code_fingerprint()
    linked: dict[str, set[str]] = {}
    for new, olds in lineage().items():
        for old in olds:
            linked.setdefault(new, set()).add(old)
            linked.setdefault(old, set()).add(new)
    seen, todo = set(), [now]
    while todo:
        fingerprint = todo.pop()
        if fingerprint == made_by:
            return True
        if fingerprint not in seen:
            seen.add(fingerprint)
            todo += linked.get(fingerprint, ())
    return False


def record_equivalent(new: str, old: str) -> None:
    """Record that fingerprint `new` computes the numbers of `old` (after checking it)."""
    records = lineage()
    records[new] = sorted({*records.get(new, []), old})
    LINEAGE.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
