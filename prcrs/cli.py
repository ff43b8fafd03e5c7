"""The `prcrs` command: one-line errors for anything the user can fix."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from prcrs.errors import DataError, say


def _load_for_audit(data: str):
    from prcrs.data.cohort import load_file
    from prcrs.data.sources import load_cohort

    if data in {"cart", "covid", "synthetic"}:
        return load_cohort(data)
    return load_file(data)  # a missing path or an unknown kind gets the loader's one-line error


def cmd_audit(args) -> int:
    from prcrs.audit import audit, format_audit

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = _load_for_audit(args.data)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    report = audit(cohort, probe=not args.no_probe)
    print(json.dumps(report, indent=2) if args.json else format_audit(report))
    return 0


def cmd_report(args) -> int:
    from prcrs.report.build import build_report

    files = build_report(args.out, args.tracking_uri, args.before, only=tuple(args.only or ()))
    print(f"wrote {len(files)} files to {args.out}/ (start with {args.out}/README.md)")
    return 0


def cmd_train_final(args) -> int:
    from prcrs.serving.train_final import train_final

    release, trained = train_final(args.overrides, horizons=args.horizon, combinations=args.combinations,
                                   tracking_uri=args.tracking_uri)
    for name, version, model in trained:
        print(f"registered {name} version {version}: {model.info['model']}, CV AUROC "
              f"{model.info['mean_test_auroc']:.3f}, calibrator {model.calibrator_name}")
    print(f"release {release}: {len(trained)} model(s), served from now on by predict, serve and the pyfunc")
    return 0


def read_input(path: str, sheet: str | None = None):
    """A csv/xlsx/parquet file of patient-days; the header row is the first with a factor name
    (any accepted name: `prcrs.data.reading.name_lookup`); `sheet` of a workbook."""
    from prcrs.data.io import read_table
    from prcrs.data.reading import name_lookup, normal_name

    return read_table(path, header_markers=(tuple(name_lookup()),), normalize=normal_name, sheet=sheet)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP: what a spreadsheet may run as a formula


def spreadsheet_safe(table):
    """`table` with every text cell that a spreadsheet would read as a formula prefixed with "'"
    (OWASP's rule for CSV injection): a patient id '=HYPERLINK(...)' stays text."""
    def safe(value):
        return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value

    text = table.select_dtypes(include=["object", "string"]).columns
    return table.assign(**{c: table[c].map(safe) for c in text})


def write_template(path: Path) -> None:
    """An empty CSV whose header holds every factor the platform reads, as the page labels it, with
    its unit, and the patient and day columns a history model needs."""
    from prcrs import schema
    from prcrs.data.reading import IGNORED, PERCENT_KEYS

    def unit(f):
        return "%" if f.key in PERCENT_KEYS else f.unit

    header = ["patient", "Relative date"] + [f"{f.name} ({unit(f)})" for f in schema.FEATURES if f.key not in IGNORED]
    # percentages in %: 0.8 is then 0.8 %, said by the header, not guessed
    path.write_text(",".join(f'"{h}"' if "," in h else h for h in header) + "\n")


def notes_lines(reading: list[str] = ()) -> list[str]:
    """The '# ' lines above the predictions: what each number means, then how the input was read
    (`reading`: units, percentages, encoding); read with pandas.read_csv(path, comment='#')."""
    from prcrs.serving.platform import MEANINGS

    return ["# prcrs predictions: one row per input row and horizon. Read with pandas.read_csv(path, comment='#')."] + [
        f"# {column}: {meaning}" for column, meaning in MEANINGS.items()] + [
        f"# input read: {note}".replace("\n", " ") for note in reading]


def check_writable(out: Path, source: Path) -> None:
    """Before any work: `out` may be written and is not the input file."""
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise DataError(f"--out {out} is the input file: the patient's file would be overwritten; choose another")
    if not out.parent.is_dir():
        raise DataError(f"output folder not found: {out.parent}")
    if out.is_dir():
        raise DataError(f"--out {out} is a folder: give a file name (.csv or .xlsx)")
    if out.suffix.lower() not in {".csv", ".xlsx"}:
        raise DataError(f"--out {out}: write .csv or .xlsx (the suffix says the format)")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise DataError(f"--out {out} cannot be written (permission denied)")


def cmd_predict(args) -> int:
    import pandas as pd

    from prcrs.data.cohort import check_one_name_per_factor
    from prcrs.data.reading import name_lookup, normal_name, read_columns, resolve_columns
    from prcrs.progress import stage
    from prcrs.serving.platform import patients_and_days
    from prcrs.serving.registry import load_platform

    if args.template:
        out = Path(args.template)
        check_writable(out, Path(args.input or out.with_suffix(".none")))
        write_template(out)
        print(f"wrote the input template to {out}: one row per patient-day, blank = not measured", file=sys.stderr)
        return 0
    if args.input is None:
        raise DataError("give the input file (csv, xlsx or parquet), or --template PATH for an empty one")
    if args.out:
        check_writable(Path(args.out), Path(args.input))
    if args.mapping:  # a site's export (long, wide or MEDS) by its mapping: read as patient-days first
        from prcrs.data.exports import read_export
        from prcrs.data.mapping import load_mapping

        with stage(f"reading {Path(args.input).name}"):
            export = read_export(args.input, load_mapping(args.mapping), args.sheet)
        raw = export.table.set_axis(export.table.index + 1)  # numbered as patient-day rows, from 1
        raw.attrs["notes"] = [*export.notes, "rows are the export's patient-days, numbered from 1 in patient and "
                              "day order"]
    else:
        with stage(f"reading {Path(args.input).name}"):
            raw = read_input(args.input, args.sheet)
    check_one_name_per_factor(resolve_columns(raw.columns)[0], Path(args.input).name)  # before any model loads
    columns = read_columns(raw.columns, {c: raw[c].tolist() for c in raw.columns})  # a unit it cannot read: stop
    patients_and_days(raw, {name_lookup().get(normal_name(c)): c for c in raw.columns}, history=False)
    with stage("loading the platform's registered models"):
        platform = load_platform(args.tracking_uri, horizons=None if args.horizon is None else
                                 tuple(sorted(set(args.horizon))), release=args.release)
    if "synthetic" in platform.data_sources:
        print("warning: the platform's models were trained on SYNTHETIC data: their numbers are not risks of real "
              "patients", file=sys.stderr)
    reading = [*raw.attrs.get("notes", []), *columns.notes]
    for note in reading:
        print(f"note: {note}", file=sys.stderr)
    table, _ = platform.predict_table(raw, args.horizon or platform.horizons, strict=args.strict, columns=columns,
                                      explain_rows=not args.no_explain)
    if columns.unknown:
        print(f"warning: unknown column(s) ignored: {', '.join(columns.unknown)}", file=sys.stderr)
    failed = table.drop_duplicates("row").dropna(subset=["error"])
    for row in failed.itertuples():
        print(f"error: row {row.row}: {row.error}", file=sys.stderr)
    table = spreadsheet_safe(table)
    lines = notes_lines(reading)
    if args.out:
        out = Path(args.out)
        partial = out.with_name(f".{out.name}.{os.getpid()}.partial{out.suffix}")  # no half-written file, ever
        try:
            if out.suffix.lower() == ".xlsx":
                with pd.ExcelWriter(partial) as book:
                    table.to_excel(book, sheet_name="predictions", index=False)
                    pd.DataFrame({"notes": [line[2:] for line in lines]}).pipe(spreadsheet_safe).to_excel(
                        book, sheet_name="notes", index=False)
            else:
                partial.write_text("\n".join(lines) + "\n" + table.to_csv(index=False))
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
        print(f"wrote {len(table)} predictions for {table['row'].nunique()} rows to {out} "
              f"({len(failed)} row(s) with errors)", file=sys.stderr)
    else:
        sys.stdout.write("\n".join(lines) + "\n" + table.to_csv(index=False))
    if len(failed) == table["row"].nunique():
        print("error: no row could be predicted (see the errors above)", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from prcrs.serving.registry import load_platform
    from prcrs.serving.web import create_app, server_config

    platform = load_platform(args.tracking_uri, horizons=None, release=args.release)
    print(f"serving release {platform.release} on http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.Server(server_config(create_app(platform), args.host, args.port)).run()
    return 0


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be a whole number from 1 to 65535, got {text!r}")
    return int(text)


def _horizons(text: str) -> int:
    if text not in {"1", "2", "3"}:
        raise argparse.ArgumentTypeError(f"horizon must be 1, 2 or 3 (days ahead), got {text!r}")
    return int(text)


def _combination(text: str) -> str:
    from prcrs.schema import COMBINATIONS

    if text not in COMBINATIONS:
        raise argparse.ArgumentTypeError(f"combination must be one of {', '.join(COMBINATIONS)}, got {text!r}")
    return text


def _command(sub, name: str, summary: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand with its one-line summary (in `prcrs --help`), a description and examples."""
    return sub.add_parser(name, help=summary, description=f"{summary}. {description}",
                          epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prcrs", description="The PrCRS reproduction's tools: audit the data, build the report, train and serve "
                                  "the prediction platform. Experiments themselves run with `python run.py` (see "
                                  "`python run.py --help`).",
        epilog="`prcrs <command> --help` describes a command with examples.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    p = _command(sub, "audit", "audit a cohort: counts, missingness, ranges, imputation fingerprint, leak probe",
                 "Prints what the sheet holds and how much of it is the label-imputation fingerprint; the leak probe "
                 "measures how much of the label the exact values still carry.",
                 ["prcrs audit                      # the CAR-T sheet ($PRCRS_DATA_DIR), or the synthetic cohort",
                  "prcrs audit --data covid --json", "prcrs audit --data my_centre.xlsx --no-probe"])
    p.add_argument("--data", default="cart", help="cart | covid | synthetic | PATH (default: cart)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-probe", action="store_true", help="skip the leak probe (about 30 s)")
    p.set_defaults(func=cmd_audit)
    p = _command(sub, "report", "build the paper's tables and figures from the MLflow runs into reports/",
                 "Reads the finished runs of `make reproduce` (one cohort, one CV design) and writes Markdown tables, "
                 "PNG figures, the clinical evaluation and the model card.",
                 ["prcrs report", "prcrs report --out /tmp/reports --tracking-uri sqlite:////tmp/store/mlflow.db",
                  "prcrs report --before sqlite:///old/mlruns/mlflow.db   # adds what_moved.md",
                  "prcrs report --only tuned --out /tmp/tuned   # one section, from its own runs"])
    p.add_argument("--out", default="reports", help="output folder (default: reports)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI or mlruns/)")
    p.add_argument("--before", default=None, metavar="URI",
                   help="an earlier store (e.g. sqlite:///old/mlruns/mlflow.db): adds reports/what_moved.md, "
                        "its honest results beside these")
    p.add_argument("--only", nargs="+", metavar="SECTION", help="write only these sections (e.g. tuned)")
    p.set_defaults(func=cmd_report)
    uri_help = "MLflow store (default: $MLFLOW_TRACKING_URI or mlruns/)"
    p = _command(sub, "train-final", "train, calibrate and register the platform's models (honest protocol)",
                 "For each horizon, the best honest config in the store (or model=...), cross-validated, calibrated "
                 "on its out-of-fold predictions, fitted on every row and registered as "
                 "prcrs-f<combination>-h<horizon>.",
                 ["prcrs train-final", "prcrs train-final model=forest history=lags --horizon 1",
                  "prcrs train-final data=synthetic model=logreg --combinations 1234 --horizon 1 2"])
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=forest data=synthetic")
    p.add_argument("--horizon", nargs="+", type=_horizons, default=[1, 2, 3], help="days ahead (default: 1 2 3)")
    p.add_argument("--combinations", nargs="+", type=_combination, default=None,
                   help="factor combinations (default: all six)")
    p.add_argument("--tracking-uri", default=None, help=uri_help)
    p.set_defaults(func=cmd_train_final)
    p = _command(sub, "predict", "predict severe CRS for the patient-days of a csv/xlsx file",
                 "One output row per input row and horizon: the calibrated risk, the risk band, the factors behind "
                 "it and where the model came from. Exits 1 when no row could be predicted.",
                 ["prcrs predict --template days.csv       # an empty file with the accepted columns and units",
                  "prcrs predict days.csv --horizon 1 2 3 --out predictions.csv",
                  "prcrs predict days.xlsx --strict         # refuse a row with an implausible value"])
    p.add_argument("input", nargs="?", help="csv, xlsx or parquet file: one row per patient-day; column names as "
                                            "the sheet, the page or the project's keys")
    p.add_argument("--horizon", nargs="+", type=_horizons, default=None,
                   help="days ahead (default: every horizon of the release)")
    p.add_argument("--out", default=None, help="output csv or xlsx (default: csv on standard output)")
    p.add_argument("--sheet", default=None, metavar="NAME|INDEX",
                   help="the sheet of a workbook to read (needed when more than one holds rows; 0 = the first)")
    p.add_argument("--release", default=None, help="the platform release to use (default: the newest recorded)")
    p.add_argument("--no-explain", action="store_true",
                   help="leave out the top factors (each row's explanation costs about 350 model evaluations; "
                        "for files of many thousand rows)")
    p.add_argument("--template", default=None, metavar="PATH",
                   help="write an empty input CSV (the accepted columns, with units) to PATH and stop")
    p.add_argument("--strict", action="store_true",
                   help="refuse a row with an implausible value (default: leave that value out, with a warning)")
    p.add_argument("--mapping", default=None, metavar="YAML",
                   help="a site's mapping file: the input is then its lab export (long, wide or a MEDS folder), read "
                        "as patient-days (rows of the output: patient-days, numbered from 1)")
    p.add_argument("--tracking-uri", default=None, help=uri_help)
    p.set_defaults(func=cmd_predict)
    p = _command(sub, "serve", "the web page and JSON API (POST /predict)",
                 "Serves the registered platform models: the page at /, the API at /predict and /health, its docs "
                 "at /docs (offline).",
                 ["prcrs serve", "prcrs serve --host 0.0.0.0 --port 8080   # reachable from other machines"])
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (loopback)")
    p.add_argument("--port", type=_port, default=8000, help="default: 8000")
    p.add_argument("--release", default=None, help="the platform release to serve (default: the newest recorded)")
    p.add_argument("--tracking-uri", default=None, help=uri_help)
    p.set_defaults(func=cmd_serve)
    from prcrs.serving.site_commands import add_commands

    add_commands(sub, _command, uri_help)
    return parser


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever `sys.stderr` is when a line is said."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def _say_progress() -> None:
    """The project's progress lines (`prcrs.progress`) on stderr, without other libraries' INFO."""
    logger = logging.getLogger("prcrs")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _say_progress()
    try:
        return args.func(args)
    except BaseException as exc:  # one line for what the user can fix, as every front door
        code = say(exc)
        if code is None:
            raise
        return code


def command() -> None:
    """The `prcrs` command: `main` on the command line, then the process ends (`exit_with`)."""
    from prcrs.shutdown import exit_with

    exit_with(main())


if __name__ == "__main__":
    command()
