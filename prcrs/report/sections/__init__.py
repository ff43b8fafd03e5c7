"""The report's sections, one module each. A module registers its section with `@section`: its
name, the experiment configs whose runs it reads (the studies follow from them), the files it
writes. `prcrs report` writes them in order, `make reproduce` runs their experiments
(`experiments()`), and the tests expect their files (`files()`): none of them lists a section
by hand.

    >>> [s.name for s in registered()][:3]
    ['Table 2 and Fig. 3', 'Table 3 and Fig. 4', 'Fig. 5']
    >>> experiments()[:3]
    ('table2', 'table3', 'fig8')
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from prcrs.report.tables import Report


@dataclass
class ReportInputs:
    """What sections read: finished parent runs of the report's cohort and design, by study and
    all together; the data audit; the cohort and its patients' covariates; an earlier store's
    runs by study (`prcrs report --before`, else empty)."""

    runs: dict[str, pd.DataFrame]
    every: pd.DataFrame
    audit: dict
    cohort: object  # prcrs.data.cohort.Cohort
    covariates: pd.DataFrame
    before: dict[str, pd.DataFrame] = field(default_factory=dict)

    def study(self, name: str) -> pd.DataFrame:
        return self.runs.get(name, pd.DataFrame())


@dataclass(frozen=True)
class Section:
    name: str  # as progress lines name it
    order: int  # its place in the report, lowest first
    experiments: tuple[str, ...]  # conf/experiment/<name>.yaml whose runs it reads
    files: tuple[str, ...]  # what it writes into the report folder
    write: Callable[[Report, ReportInputs], None]
    needs_before: bool = False  # writes only beside an earlier store (`--before`)

    @property
    def studies(self) -> tuple[str, ...]:
        """The MLflow studies of its experiments (their `study:` keys)."""
        from prcrs import paths

        return tuple(dict.fromkeys(str(OmegaConf.load(Path(paths.CONFIG_DIR, "experiment", f"{e}.yaml")).study)
                                   for e in self.experiments))


_REGISTRY: dict[str, Section] = {}


def section(name: str, order: int, experiments: tuple[str, ...], files: tuple[str, ...],
            needs_before: bool = False) -> Callable:
    """Register the decorated `write(report, inputs)` as a report section."""
    def register(write: Callable[[Report, ReportInputs], None]) -> Callable:
        _REGISTRY[name] = Section(name, order, experiments, files, write, needs_before)
        return write
    return register


def registered() -> list[Section]:
    """Every section of this package's modules, in report order."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted(_REGISTRY.values(), key=lambda s: s.order)


def experiments() -> tuple[str, ...]:
    """The experiment configs behind the report, in section order: what `make reproduce` runs."""
    return tuple(dict.fromkeys(e for s in registered() for e in s.experiments))


def files(with_before: bool = False) -> tuple[str, ...]:
    """The files the sections write (those that need an earlier store only `with_before`)."""
    return tuple(f for s in registered() if with_before or not s.needs_before for f in s.files)
