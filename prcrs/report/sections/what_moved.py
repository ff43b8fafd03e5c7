"""What moved: honest results beside those of an earlier store (`prcrs report --before`)."""

from __future__ import annotations

import pandas as pd

from prcrs.report.sections import ReportInputs, section
from prcrs.report.tables import Report, ci_cell, md_table, one
from prcrs.tracking.results import select

MOVED = ("table2", "table3", "transfer", "fig8")  # studies compared by `what_moved`


RUN_KEY = ("model", "ablation", "factors", "horizon", "transfer")


def what_moved(report: Report, before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame]) -> None:
    """Honest results before and after (e.g. a store made by an earlier version): the same configs,
    matched by study and tags on the same data; Fig. 8 rows with all factors only."""
    rows = []
    for study in MOVED:
        old, new = before.get(study, pd.DataFrame()), after.get(study, pd.DataFrame())
        if old.empty or new.empty:
            continue
        for _, run in select(new, protocol="honest").iterrows():
            if study == "fig8" and run["factors"] != "1234":
                continue
            match = one(old, protocol="honest", data_content=run["data_content"], **{k: run[k] for k in RUN_KEY})
            if match is None:
                continue
            label = f"{study}: {run['model']}, {run['ablation']}, h{run['horizon']}, transfer {run['transfer']}"
            rows.append([label, ci_cell(match, "auroc"), ci_cell(run, "auroc"),
                         f"{run['mean_test_auroc'] - match['mean_test_auroc']:+.3f}", ci_cell(match, "auprc"),
                         ci_cell(run, "auprc")])
    if not rows:
        return
    text = ("## What moved: honest results before and after\n\n"
            + md_table(["honest run", "AUROC before", "AUROC after", "Δ", "AUPRC before", "AUPRC after"], rows))
    report.write("what_moved.md", text + "\n")
    report.sections.insert(0, text)


@section("what moved", order=1000, experiments=(), files=("what_moved.md",), needs_before=True)
def write(report: Report, inputs: ReportInputs) -> None:
    what_moved(report, inputs.before, {study: inputs.study(study) for study in MOVED})
