"""Reading sheets (xlsx, csv, parquet) into raw frames, with one-line errors for bad files.

A workbook with more than one sheet holding rows needs the sheet named (`sheet`, a name or a
0-based index). A text file's separator (comma, semicolon, tab or '|') is sniffed and its
encoding is UTF-8, else Windows-1252 (a superset of Latin-1 for text), said in the frame's notes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from prcrs.errors import DataError

MISSING_TOKENS = {"", "na", "n/a", "nan", "none", "null", "-"}
HEADER_SEARCH_ROWS = 5


def read_table(path: str | Path, header_markers: tuple[tuple[str, ...], ...],
               normalize: Callable[[str], str] = str.lower, sheet: str | int | None = None) -> pd.DataFrame:
    """Read a sheet whose header row holds, for each marker, one of its accepted names (compared
    after `normalize`, lower case by default).

    The published sheets have a title row above the header; plain files may not. The header
    is searched in the first rows. Returns the frame (all cells as objects) indexed by the
    1-based file row number, as a spreadsheet shows it, so that errors can point at rows;
    `frame.attrs["notes"]` says how a text file was read when it was not plain UTF-8 with commas.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder: give a .xlsx, .csv or .parquet file")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    notes: list[str] = []
    if sheet is not None and suffix not in {".xlsx", ".xlsm", ".xls"}:
        raise DataError(f"{path.name}: --sheet is for workbooks (.xlsx); this is a {suffix or 'plain'} file")
    try:
        if suffix in {".xlsx", ".xlsm", ".xls"}:
            raw = _workbook_sheet(path, sheet)
        elif suffix in {".csv", ".txt", ".tsv"}:
            raw = _text_table(path, notes)
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
            frame.attrs["notes"] = notes
            return frame
    wanted = " and ".join(_some(marker) for marker in header_markers)
    raise DataError(f"{path.name}: wrong sheet layout: no header row with {wanted} in the first "
                    f"{HEADER_SEARCH_ROWS} rows")


def _workbook_sheet(path: Path, sheet: str | int | None) -> pd.DataFrame:
    """The sheet of a workbook to read: `sheet` (a name, or a 0-based index as int or digits), or
    the only sheet holding rows; DataError listing the sheets otherwise."""
    book = pd.read_excel(path, sheet_name=None, header=None, dtype=object)
    names = list(book)
    if sheet is not None:
        if str(sheet) in book:
            return book[str(sheet)]
        if str(sheet).isdigit() and int(sheet) < len(names):
            return book[names[int(sheet)]]
        raise DataError(f"{path.name}: no sheet {sheet!r}; its sheets: {', '.join(repr(n) for n in names)}")
    full = [n for n in names if not book[n].dropna(how="all").empty]
    if len(full) > 1:
        raise DataError(f"{path.name}: {len(full)} sheets hold rows ({', '.join(repr(n) for n in full)}): name the one "
                        "to read with --sheet NAME or --sheet INDEX (0 = the first)")
    return book[full[0] if full else names[0]]


def _text_table(path: Path, notes: list[str]) -> pd.DataFrame:
    """A delimited text file: UTF-8 (or Windows-1252), its separator sniffed; `notes` say what
    was not the default. DataError when it is a binary file under a text name."""
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16, as a spreadsheet's "Unicode text" export
        notes.append(f"{path.name}: read as UTF-16")
        data = data.decode("utf-16").encode("utf-8")
    if data[:4] == b"PK\x03\x04" or b"\x00" in data[:4096]:
        kind = "an xlsx workbook (zip)" if data[:2] == b"PK" else "a binary file"
        raise DataError(f"{path.name}: this is {kind}, not a text table: save it as .xlsx or export it as CSV")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
        notes.append(f"{path.name}: not UTF-8; read as Windows-1252 (Latin-1)")
    try:
        sep = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
    except csv.Error:
        sep = ","
    if sep != ",":
        notes.append(f"{path.name}: columns separated by {'a tab' if sep == chr(9) else repr(sep)}")
    return pd.read_csv(io.StringIO(text), header=None, dtype=object, keep_default_na=False, sep=sep)


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
