"""Reading sheets (xlsx, csv, parquet) into raw frames, with one-line errors for bad files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from prcrs.errors import DataError

MISSING_TOKENS = {"", "na", "n/a", "nan", "none", "null", "-"}
HEADER_SEARCH_ROWS = 5


def read_table(path: str | Path, header_markers: tuple[tuple[str, ...], ...],
               normalize: Callable[[str], str] = str.lower) -> pd.DataFrame:
    """Read a sheet whose header row holds, for each marker, one of its accepted names (compared
    after `normalize`, lower case by default).

    The published sheets have a title row above the header; plain files may not. The header
    is searched in the first rows. Returns the frame (all cells as objects) indexed by the
    1-based file row number, as a spreadsheet shows it, so that errors can point at rows.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder: give a .xlsx, .csv or .parquet file")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in {".xlsx", ".xlsm", ".xls"}:
            raw = pd.read_excel(path, header=None, dtype=object)
        elif suffix in {".csv", ".txt"}:
            raw = pd.read_csv(path, header=None, dtype=object, keep_default_na=False)
        elif suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
            raw = pd.concat(
                [pd.DataFrame([list(frame.columns)]), pd.DataFrame(frame.to_numpy(dtype=object))],
                ignore_index=True,
            )
        else:
            raise DataError(f"{path.name}: unsupported file type {suffix!r} (use .xlsx, .csv or .parquet)")
    except DataError:
        raise
    except Exception as exc:  # a corrupt or mislabelled file: say which and why, in one line
        raise DataError(f"cannot read {path.name}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    for i in range(min(HEADER_SEARCH_ROWS, len(raw))):
        names = [str(v).strip() for v in raw.iloc[i].tolist()]
        lower = {normalize(n) for n in names}
        if all(lower & {normalize(m) for m in marker} for marker in header_markers):
            frame = raw.iloc[i + 1 :].copy()
            frame.index = pd.RangeIndex(i + 2, i + 2 + len(frame), name="row")
            frame.columns = names
            frame = frame.loc[:, [n not in {"", "nan", "None"} for n in names]]
            repeated = frame.columns[frame.columns.duplicated()]
            if len(repeated):
                raise DataError(f"{path.name}: column {repeated[0]!r} appears more than once in the header: "
                                "keep one (two values for one factor cannot both be used)")
            frame = frame.dropna(how="all")
            if frame.empty:
                raise DataError(f"{path.name}: a header row but no data rows")
            return frame
    wanted = " and ".join(_some(marker) for marker in header_markers)
    raise DataError(f"{path.name}: wrong sheet layout: no header row with {wanted} in the first "
                    f"{HEADER_SEARCH_ROWS} rows")


def _some(names: tuple[str, ...], shown: int = 3) -> str:
    """'a', 'b' or 'c' (+ n other accepted names): a marker for an error message, kept short."""
    more = f" (or one of {len(names) - shown} other accepted names)" if len(names) > shown else ""
    return " or ".join(repr(n) for n in names[:shown]) + more


def to_numeric(frame: pd.DataFrame, columns: list[str], source: str,
               display: dict[str, str] | None = None) -> pd.DataFrame:
    """Convert `columns` to float; a cell that is neither a number nor blank is an error.

    The error names the file row (the frame's index, see `read_table`) and the column, as the
    file spells it (`display` maps column -> name in the file).
    """
    out = frame.copy()
    for col in columns:
        values = out[col]
        text = values.astype(str).str.strip().str.lower()
        blank = values.isna() | text.isin(MISSING_TOKENS)
        numbers = pd.to_numeric(values.where(~blank), errors="coerce")
        bad = numbers.isna() & ~blank
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{source}: non-numeric value {values.iloc[i]!r} in column {(display or {}).get(col, col)!r} at row "
                f"{values.index[i]} ({int(bad.sum())} such cell(s) in this column)"
            )
        out[col] = numbers.astype(float)
    return out
