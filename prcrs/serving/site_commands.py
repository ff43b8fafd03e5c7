"""The site commands of `prcrs`: `validate` and `recalibrate` the served release on a site's
labelled export, and `example-site` (a made-up site's export and mapping, to try them on)."""

from __future__ import annotations

import sys
from pathlib import Path

from prcrs.errors import DataError


def read_site(path: str, mapping: str | None, sheet: str | None = None):
    """A site's export (`prcrs.data.exports.read_export`) by its mapping file (None: the names
    `prcrs predict` accepts); its reading notes said on stderr."""
    from prcrs.data.exports import read_export
    from prcrs.data.mapping import load_mapping
    from prcrs.progress import stage

    with stage(f"reading {Path(path).name}"):
        export = read_export(path, load_mapping(mapping), sheet)
    for note in export.notes:
        print(f"note: {note}", file=sys.stderr)
    if export.synthetic:
        print("warning: the export is SYNTHETIC (made up): its numbers say nothing about real patients",
              file=sys.stderr)
    return export


def _platform(args):
    from prcrs.progress import stage
    from prcrs.serving.registry import load_platform

    with stage("loading the platform's registered models"):
        platform = load_platform(args.tracking_uri, release=args.release)
    if "synthetic" in platform.data_sources:
        print("warning: the release was trained on SYNTHETIC data: its numbers are not risks of real patients",
              file=sys.stderr)
    return platform


def cmd_validate(args) -> int:
    from prcrs.serving.validation import validate

    export = read_site(args.input, args.mapping, args.sheet)
    validation = validate(export, _platform(args), Path(args.out), n_boot=args.n_boot,
                          tracking_uri=args.tracking_uri, bedside=not args.no_bedside)
    for r in validation.results:
        m = r.metrics
        print(f"horizon {r.horizon}: {r.rows} patient-days of {r.patients} patients, {r.severe_rows} severe; AUROC "
              f"{m['auroc']:.3f} ({m['auroc_low']:.3f}-{m['auroc_high']:.3f}), calibration-in-the-large "
              f"{m['citl']:+.2f}, slope {m['slope']:.2f}")
    print(f"wrote {Path(args.out) / 'external_validation.md'} and its figures; logged to MLflow "
          "(experiment external_validation)")
    return 0


def cmd_recalibrate(args) -> int:
    from prcrs.serving.recalibration import recalibrated_release

    export = read_site(args.input, args.mapping, args.sheet)
    release, updates = recalibrated_release(export, _platform(args), args.tracking_uri)
    for u in updates:
        if u.method is None:
            print(f"horizon {u.horizon}: not recalibrated ({u.reason}): the release's calibration kept")
            continue
        print(f"horizon {u.horizon}: {u.method} (a {u.a:+.3f}, b {u.b:.3f}); calibration-in-the-large "
              f"{u.before['citl']:+.2f} -> {u.after['citl']:+.2f}, slope {u.before['slope']:.2f} -> "
              f"{u.after['slope']:.2f} (after: cross-fitted by patient); AUROC {u.auroc_before:.3f} -> "
              f"{u.auroc_after:.3f}")
    print(f"release {release}: served from now on by predict, serve and the pyfunc (earlier releases stay "
          "available with --release)")
    return 0


def cmd_example_site(args) -> int:
    from prcrs.data.example_site import write_example_site

    out = Path(args.folder)
    if args.patients < 10 or args.sites < 1:
        raise DataError(f"--patients {args.patients}, --sites {args.sites}: at least 10 patients and 1 site")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} is not empty: give a new folder")
    paths = write_example_site(out, n_patients=args.patients, seed=args.seed, sites=args.sites)
    for form, path in paths.items():
        print(f"{form}: {path}")
    print("a made-up site (synthetic): try `prcrs validate " + str(paths["long"]) + " --mapping "
          + str(paths["mapping"]) + "`")
    return 0


def _site_input(parser, uri_help: str) -> None:
    """The arguments of a command that reads a site's export against a release."""
    parser.add_argument("input", help="the export: csv/xlsx/parquet (wide or long) or a MEDS folder")
    parser.add_argument("--mapping", default=None, help="the site's mapping file (YAML: its column or lab names -> "
                                                        "factor and unit, the same-day rule); without one, the "
                                                        "names `prcrs predict` accepts")
    parser.add_argument("--sheet", default=None, help="the sheet of a workbook")
    parser.add_argument("--release", default=None, help="the release to use (default: the newest recorded)")
    parser.add_argument("--tracking-uri", default=None, help=uri_help)


def add_commands(sub, command, uri_help: str) -> None:
    """Register the site commands on `sub` (`command`: the CLI's subcommand maker)."""
    p = command(sub, "validate", "validate the served release on a site's labelled export",
                "Predicts every patient-day as `prcrs predict` does, pairs it with the CRS grade of the day "
                "predicted and writes a TRIPOD+AI external-validation report: discrimination and calibration with "
                "patient-bootstrap intervals, reliability diagrams, net benefit against treat-all and the bedside "
                "scores, warning time, the paper's Fig. 7, and what could not be used. Logs an MLflow run "
                "(role=external_validation) with the export's content id, never its rows or name.",
                ["prcrs validate site/site_long.csv --mapping site/mapping.yaml",
                 "prcrs validate site/meds --mapping site/mapping.yaml --out reports/site-b",
                 "prcrs validate ward.xlsx                 # the published sheet's or prcrs's column names"])
    _site_input(p, uri_help)
    p.add_argument("--out", default="reports/external", help="report folder (default: reports/external)")
    p.add_argument("--n-boot", type=int, default=500, help="patient-bootstrap resamples (default: 500)")
    p.add_argument("--no-bedside", action="store_true", help="skip the bedside scores' cross-validation")
    p.set_defaults(func=cmd_validate)
    p = command(sub, "recalibrate", "update the served release's calibration for a site (a new release)",
                "On the site's labelled export: the intercept only (calibration-in-the-large) or intercept and "
                "slope, whichever has the lower patient-cross-fitted log loss, per horizon. The models rank days as "
                "before (discrimination unchanged). Registers a new release that names the site and its numbers "
                "before and after.",
                ["prcrs recalibrate site/site_long.csv --mapping site/mapping.yaml"])
    _site_input(p, uri_help)
    p.set_defaults(func=cmd_recalibrate)
    p = command(sub, "example-site", "write a made-up site's lab export (long, wide, MEDS) and its mapping file",
                "Synthetic patients of a hospital unlike the embedded cohort (more severe CRS, other assays and "
                "units, some factors never measured), to try `validate`, `recalibrate` and `run.py data.mapping=...` "
                "on. Marked synthetic: what is trained on it says so.",
                ["prcrs example-site site/"])
    p.add_argument("folder", help="a new (or empty) folder")
    p.add_argument("--patients", type=int, default=120, help="default: 120")
    p.add_argument("--seed", type=int, default=7, help="default: 7")
    p.add_argument("--sites", type=int, default=1,
                   help="hospitals its patients come from (a site column, for cv.group=site; default: 1)")
    p.set_defaults(func=cmd_example_site)
