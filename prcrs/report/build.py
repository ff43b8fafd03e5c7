"""`prcrs report`: every table and figure of the reproduction, from the MLflow runs, into reports/.

The sections are those registered in `prcrs.report.sections`, written in their order. Tables put
the paper's published number, ours under `protocol=paper` and ours under `protocol=honest` side
by side; spreads are 95 % t intervals over the CV folds.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pandas as pd

from prcrs.clinical.subgroups import patient_covariates
from prcrs.errors import PrcrsError
from prcrs.progress import Steps
from prcrs.report import sections
from prcrs.report.tables import N_BOOT, SYNTHETIC_BANNER, Report
from prcrs.tracking.results import parent_runs, select


def _cohort_of(run: pd.Series):
    """The cohort a run was fitted on, reloaded and checked against the run's data hash."""
    import warnings

    from prcrs.data.sources import load_cohort

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a missing real sheet is named below instead
        patients = run.get("data_patients")  # absent from runs logged before it was recorded: the default
        cohort = (load_cohort("synthetic", **({"n_patients": int(patients)} if isinstance(patients, str) else {}))
                  if run["data_source"] == "synthetic" else load_cohort("cart"))
    expected = run.get("data_content")  # absent from runs logged before it was recorded
    if isinstance(expected, str) and cohort.content_id != expected:
        raise PrcrsError(f"the runs were fitted on {run['data_source']} data ({run['data_file']}) that is not "
                         "found here: set PRCRS_DATA_DIR to the folder holding it")
    return cohort


def choose_cohort(table2: pd.DataFrame, what: str = "Table 2", any_seed: bool = False) -> tuple[dict[str, str], str]:
    """The one cohort and CV design a report is built from, and a sentence naming the runs it
    leaves out. Real data first, then the cohort with most runs of `table2` (`what`: the study
    they are, as the sentence names it), then the latest. `any_seed`: the cohort only, every CV
    design kept (a search study cross-validates its chosen configs at several seeds)."""
    keys = ["data_source", "data_content"] + ([] if any_seed else ["design"])
    sizes = table2.assign(order=range(len(table2))).groupby(keys).agg(runs=("run_id", "size"), latest=("order", "min"),
                                     patients=("data_patients", "first")).reset_index()
    sizes["rank"] = list(zip(sizes["data_source"] != "real", -sizes["runs"], sizes["latest"], strict=True))
    sizes = sizes.sort_values("rank")
    chosen = sizes.iloc[0]
    others = [f"{r.runs} {what} run(s) on {r.data_source} data {r.data_content} ({r.patients} patients, {r.design})"
              for r in sizes.iloc[1:].itertuples()]
    left_out = f" Left out: {'; '.join(others)}." if others else ""
    return {k: chosen[k] for k in keys}, left_out


def check_artifacts(runs: pd.DataFrame) -> None:
    """Before any file is written: every run the report reads still has its out-of-fold
    predictions in the store; PrcrsError naming the first that does not."""
    import mlflow

    client = mlflow.MlflowClient()
    for run in runs.drop_duplicates("run_id").itertuples():
        if "oof_predictions.csv" not in {a.path for a in client.list_artifacts(run.run_id)}:
            raise PrcrsError(f"run {run.run_id} ({run.model}, study {run.study}, horizon {run.horizon}, "
                             f"{run.protocol}) has no oof_predictions.csv in the store (deleted, or logged with "
                             "logger.log_predictions=false): rerun its config with resume=never, or delete the run; "
                             "nothing was written")


def build_report(out: str | Path = "reports", tracking_uri: str | None = None,
                 before_uri: str | None = None, n_boot: int = N_BOOT, only: tuple[str, ...] = ()) -> list[Path]:
    """Write every registered section's tables (Markdown) and figures (PNG) and reports/README.md;
    return the files.

    `before_uri`: a second store (an earlier version's runs) whose honest results are set beside
    these in a "what moved" section. `n_boot`: patient-bootstrap resamples of every interval.
    `only`: the names of the sections to write (default: all); the cohort is then the one of
    their first study with runs, not Table 2's."""
    from prcrs.audit import audit

    if before_uri and before_uri.startswith("sqlite:///") and not Path(before_uri.removeprefix("sqlite:///")).is_file():
        raise PrcrsError(f"--before {before_uri}: no such store (give the sqlite:/// URI of an existing mlflow.db)")
    out = Path(out)
    registered = sections.registered()
    unknown = [name for name in only if name not in {s.name for s in registered}]
    if unknown:
        raise PrcrsError(f"--only {', '.join(unknown)}: no such section; the sections are "
                         f"{', '.join(repr(s.name) for s in registered)}")
    registered = [s for s in registered if not only or s.name in only]
    studies = tuple(dict.fromkeys(study for s in registered for study in s.studies))
    before = {s: parent_runs(s, before_uri) for s in studies} if before_uri else {}  # read first: the store
    runs = {s: parent_runs(s, tracking_uri) for s in studies}
    primary = "table2" if not only else next((s for s in studies if not runs[s].empty), studies[0] if studies else "")
    if primary not in runs or runs[primary].empty:
        raise PrcrsError(f"no finished {primary or 'section'} runs in the MLflow store: run `make reproduce` first")
    cohort, left_out = choose_cohort(runs[primary], "Table 2" if primary == "table2" else f"{primary} study",
                                     any_seed=primary != "table2")
    runs = {s: f if f.empty else select(f, **cohort) for s, f in runs.items()}
    every = select(parent_runs(None, tracking_uri), **cohort)
    check_artifacts(pd.concat([*runs.values(), every]))  # before any file is written
    first = runs[primary].iloc[0]
    data = _cohort_of(first)
    summary = audit(data)  # before any file is written: the runs' data must be here
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, banner=SYNTHETIC_BANNER if first["data_source"] == "synthetic" else "", n_boot=n_boot)
    summary["source_name"] = Path(summary["source"]).name
    inputs = sections.ReportInputs(runs, every, summary, data, patient_covariates(data.frame), before)
    shown = [s for s in registered if before or not s.needs_before]
    steps = Steps(len(shown), "report sections")
    for section in shown:
        start = time.perf_counter()
        section.write(report, inputs)
        steps.done(f"report: {section.name} ({time.perf_counter() - start:.1f} s)")
    # the synthetic cohort has no file: its name is its source
    named = "" if first["data_file"] == first["data_source"] else f", {first['data_file']}"
    design = first["design"] if "design" in cohort else "the designs of its runs"
    intro = (f"# Reproduction of PrCRS (Wei et al. 2024): results as measured\n\nData: **{first['data_source']}**"
             f"{named} (content id {first['data_content']}, {first['data_patients']} patients); "
             f"CV: {design}; git {first['git_sha']}.{left_out} Each claim of the paper, checked under the "
             "honest protocol (patient-grouped folds, label-imputation fill values masked, preprocessing and "
             "thresholds fitted on training folds only) beside the paper's own protocol. Ranges are 95 % "
             "intervals.\n\n")
    report.write("README.md", intro + "\n".join(f"{i}. {c}" for i, c in enumerate(report.claims, 1))
                 + "\n\n" + "\n\n".join(report.sections) + "\n")
    for overlap in report.overlaps:
        warnings.warn(f"texts drawn over each other in {overlap}", stacklevel=2)
    return report.files
