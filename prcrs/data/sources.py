"""Which CAR-T or COVID-19 cohort a run uses: the real sheets where they are found, else the
embedded synthetic cohort (with a warning saying so). Files are read, and synthetic cohorts
made, once per process."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

from prcrs import paths
from prcrs.data.cohort import CART_FILE, COVID_FILE, DATA_ENV, Cohort, load_cart, load_covid
from prcrs.data.synthetic import PATIENTS, synthetic_cart, synthetic_covid
from prcrs.errors import DataError


def resolve_data_dir(path: str | Path | None = None, raw_dir: str | Path | None = None) -> Path | None:
    """First folder holding the real sheets: `path`, then $PRCRS_DATA_DIR, then `raw_dir`
    (`paths.data_dir`; default `prcrs.paths.raw_data_dir()`, <home>/data/raw).

    An explicit `path` (or $PRCRS_DATA_DIR) that does not exist is an error, not a silent
    fall-back: the user asked for that data.
    """
    for candidate, explicit in ((path, True), (os.environ.get(DATA_ENV), True),
                                (raw_dir or paths.raw_data_dir(), False)):
        if not candidate:
            continue
        folder = Path(candidate).expanduser()
        if folder.is_file():
            folder = folder.parent
        if folder.is_dir() and (folder / CART_FILE).is_file():
            return folder
        if explicit:
            raise DataError(f"no {CART_FILE} in {folder} (from {'data.path' if candidate is path else DATA_ENV})")
    return None


_READ: dict[tuple, Cohort] = {}


def _read_once(loader, path: Path) -> Cohort:
    """`loader(path)`, read once per process while the file is unchanged (sweeps load it per run);
    each caller gets its own copy of the frame."""
    stat = path.stat()
    key = (loader.__name__, str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _READ:
        _READ[key] = loader(path)
    return _copy(_READ[key])


def _made_once(maker, *args, **kwargs) -> Cohort:
    """`maker(*args, **kwargs)` (a synthetic cohort: the same numbers for the same arguments),
    made once per process (about a second each; a sweep loads one per run); each caller gets its
    own copy of the frame."""
    key = (maker.__name__, args, tuple(sorted(kwargs.items())))
    if key not in _READ:
        _READ[key] = maker(*args, **kwargs)
    return _copy(_READ[key])


def _copy(cohort: Cohort) -> Cohort:
    return dataclasses.replace(cohort, frame=cohort.frame.copy())


def load_cohort(kind: str = "cart", path: str | Path | None = None, seed: int = 0, n_patients: int = PATIENTS,
                raw_dir: str | Path | None = None, mapping: str | Path | None = None) -> Cohort:
    """The cohort for `kind` ('cart', 'covid' or 'synthetic'), real when found.

    `path` may be a data folder or a CAR-T file (the COVID-19 sheet is then looked for beside
    it); `raw_dir` is the last folder searched (`resolve_data_dir`). Without real data the synthetic cohort (of
    `n_patients`) is used and a warning says so; `Cohort.source` records which data was used.
    """
    if kind not in {"cart", "covid", "synthetic"}:
        raise DataError(f"unknown data kind {kind!r}; use cart, covid or synthetic")
    if mapping is not None and kind == "cart":  # a site's export: its own names, units and form
        from prcrs.data.exports import read_export
        from prcrs.data.mapping import load_mapping

        if path is None:
            raise DataError("data.mapping names a site's mapping file: give its export as data.path")
        export = read_export(path, load_mapping(mapping))
        cohort = export.cohort()
        for note in export.notes:  # said once, as each run's warnings are (no file name: it may name a patient)
            warnings.warn(f"site export: {note}", stacklevel=2)
        return cohort
    if kind == "synthetic":
        return _made_once(synthetic_cart, n_patients, seed=seed)
    if kind == "cart" and path is not None and Path(path).is_file():  # a CAR-T file of any name
        return _read_once(load_cart, Path(path))
    folder = resolve_data_dir(path, raw_dir)  # a file's folder holds the COVID-19 sheet beside it
    if folder is None:
        warnings.warn(
            f"real {kind} data not found (data.path, ${DATA_ENV}, data/raw/): using the synthetic cohort",
            stacklevel=2,
        )
        return _made_once(synthetic_cart, n_patients, seed=seed) if kind == "cart" else _made_once(synthetic_covid,
                                                                                                   seed=seed)
    if kind == "cart":
        return _read_once(load_cart, folder / CART_FILE)
    covid = folder / COVID_FILE
    if not covid.is_file():
        raise DataError(f"no {COVID_FILE} in {folder}")
    return _read_once(load_covid, covid)
