"""Modules that moved into the `clinical` and `tracking` subpackages, still importable under
their old names: a model pickled before the move (a registered platform model, a fold's
`model.joblib`) or a stored Hydra config's `_target_` names the old module and must still load.
Only a name no module of the package has is aliased.

    >>> import importlib
    >>> importlib.import_module("prcrs.calibration") is importlib.import_module("prcrs.clinical.calibration")
    True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {**{f"prcrs.{name}": f"prcrs.clinical.{name}"
            for name in ("alarms", "calibration", "conformal", "decision", "explain", "subgroups")},
         **{f"prcrs.{name}": f"prcrs.tracking.{name}" for name in ("cv_logging", "results", "sweep_summary")}}


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name after every other finder missed it; its module is the new one."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        """The module is already executed under its new name."""


def install() -> None:
    """Append the old-name finder to `sys.meta_path` (once)."""
    if not any(isinstance(finder, _OldNames) for finder in sys.meta_path):
        sys.meta_path.append(_OldNames())
