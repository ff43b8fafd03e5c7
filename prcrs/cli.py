"""The `prcrs` command: one-line errors for anything the user can fix."""

from __future__ import annotations

import argparse
import json
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

    files = build_report(args.out, args.tracking_uri, args.before)
    print(f"wrote {len(files)} files to {args.out}/ (start with {args.out}/README.md)")
    return 0


def cmd_train_final(args) -> int:
    import logging

    from prcrs.serving.train_final import train_final

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trained = train_final(args.overrides, horizons=args.horizon, combinations=args.combinations,
                          tracking_uri=args.tracking_uri)
    for name, version, model in trained:
        print(f"registered {name} version {version}: {model.info['model']}, CV AUROC "
              f"{model.info['mean_test_auroc']:.3f}, calibrator {model.calibrator_name}")
    return 0


def read_input(path: str):
    """A csv/xlsx/parquet file of patient-days; the header row is the first with a factor name."""
    from prcrs.data.cohort import column_lookup
    from prcrs.data.io import read_table

    return read_table(path, header_markers=(tuple(column_lookup()),))


def check_writable(out: Path, source: Path) -> None:
    """Before any work: `out` may be written and is not the input file."""
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise DataError(f"--out {out} is the input file: the patient's file would be overwritten; choose another")
    if not out.parent.is_dir():
        raise DataError(f"output folder not found: {out.parent}")
    if out.is_dir():
        raise DataError(f"--out {out} is a folder: give a file name (.csv or .xlsx)")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise DataError(f"--out {out} cannot be written (permission denied)")


def cmd_predict(args) -> int:
    from prcrs.data.cohort import check_one_name_per_factor
    from prcrs.serving.inputs import resolve_columns
    from prcrs.serving.registry import load_platform

    if args.out:
        check_writable(Path(args.out), Path(args.input))
    raw = read_input(args.input)
    check_one_name_per_factor(resolve_columns(raw.columns)[0], Path(args.input).name)  # before any model loads
    platform = load_platform(args.tracking_uri, horizons=tuple(sorted(set(args.horizon))))
    table, unknown = platform.predict_table(raw, args.horizon)
    if unknown:
        print(f"warning: unknown column(s) ignored: {', '.join(unknown)}", file=sys.stderr)
    failed = table.drop_duplicates("row").dropna(subset=["error"])
    for row in failed.itertuples():
        print(f"error: row {row.row}: {row.error}", file=sys.stderr)
    if args.out:
        out = Path(args.out)
        partial = out.with_name(f".{out.name}.{os.getpid()}.partial{out.suffix}")  # no half-written file, ever
        try:
            if out.suffix.lower() == ".xlsx":
                table.to_excel(partial, index=False)
            else:
                table.to_csv(partial, index=False)
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
        print(f"wrote {len(table)} predictions for {table['row'].nunique()} rows to {out} "
              f"({len(failed)} row(s) with errors)", file=sys.stderr)
    else:
        table.to_csv(sys.stdout, index=False)
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from prcrs.serving.registry import load_platform
    from prcrs.serving.web import create_app

    app = create_app(load_platform(args.tracking_uri))
    print(f"serving on http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prcrs", description="PrCRS reproduction toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("audit", help="audit a cohort: counts, missingness, ranges, imputation fingerprint, leak probe")
    p.add_argument("--data", default="cart", help="cart | covid | synthetic | PATH (default: cart)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-probe", action="store_true", help="skip the leak probe (about 30 s)")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("report", help="build the paper's tables and figures from the MLflow runs into reports/")
    p.add_argument("--out", default="reports", help="output folder (default: reports)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI or mlruns/)")
    p.add_argument("--before", default=None, metavar="URI",
                   help="an earlier store (e.g. sqlite:///old/mlruns/mlflow.db): adds reports/what_moved.md, "
                        "its honest results beside these")
    p.set_defaults(func=cmd_report)
    uri_help = "MLflow store (default: $MLFLOW_TRACKING_URI or mlruns/)"
    p = sub.add_parser("train-final", help="train, calibrate and register the platform's models (honest protocol)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=forest data=synthetic")
    p.add_argument("--horizon", nargs="+", type=_horizons, default=[1, 2, 3], help="days ahead (default: 1 2 3)")
    p.add_argument("--combinations", nargs="+", type=_combination, default=None,
                   help="factor combinations (default: all six)")
    p.add_argument("--tracking-uri", default=None, help=uri_help)
    p.set_defaults(func=cmd_train_final)
    p = sub.add_parser("predict", help="predict severe CRS for the patient-days of a csv/xlsx file")
    p.add_argument("input", help="csv, xlsx or parquet file: one row per patient-day, sheet or project names")
    p.add_argument("--horizon", nargs="+", type=_horizons, default=[1, 2, 3], help="days ahead (default: 1 2 3)")
    p.add_argument("--out", default=None, help="output csv or xlsx (default: csv on standard output)")
    p.add_argument("--tracking-uri", default=None, help=uri_help)
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("serve", help="the web page and JSON API (POST /predict)")
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (loopback)")
    p.add_argument("--port", type=_port, default=8000, help="default: 8000")
    p.add_argument("--tracking-uri", default=None, help=uri_help)
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BaseException as exc:  # one line for what the user can fix, as every front door
        code = say(exc)
        if code is None:
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
