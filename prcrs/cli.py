"""The `prcrs` command: one-line errors for anything the user can fix."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from prcrs.errors import PrcrsError


def _load_for_audit(data: str):
    from prcrs.data.cohort import load_cohort, load_file

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
    report = audit(cohort)
    print(json.dumps(report, indent=2) if args.json else format_audit(report))
    return 0


def cmd_report(args) -> int:
    from prcrs.report.build import build_report

    files = build_report(args.out, args.tracking_uri)
    print(f"wrote {len(files)} files to {args.out}/ (start with {args.out}/README.md)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prcrs", description="PrCRS reproduction toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("audit", help="audit a cohort: counts, missingness, ranges, imputation fingerprint")
    p.add_argument("--data", default="cart", help="cart | covid | synthetic | PATH (default: cart)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("report", help="build the paper's tables and figures from the MLflow runs into reports/")
    p.add_argument("--out", default="reports", help="output folder (default: reports)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI or mlruns/)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PrcrsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
