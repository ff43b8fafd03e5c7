"""The data audit: what the label-imputation fingerprint buys, and the leak probe."""

from __future__ import annotations

import pandas as pd

from prcrs.report.sections import ReportInputs, section
from prcrs.report.tables import Report, ci_cell, md_table, one


def audit_section(report: Report, t2: pd.DataFrame, au: pd.DataFrame, audit: dict | None) -> None:
    rows = [["paper (rows, data as published)", ci_cell(one(t2, model="forest", protocol="paper"), "auroc")],
            ["paper, fill values masked", ci_cell(one(au, protocol="paper"), "auroc")],
            ["honest (patients, fill values masked, preprocessing fitted on training folds)",
             ci_cell(one(t2, model="forest", protocol="honest"), "auroc")]]
    head = probe = ""
    if audit is not None:
        fp = audit["fingerprint"]
        head = (f"Data: {audit['source_name']} ({audit['patients']} patients, {audit['days']} days, "
                f"{audit['severe_days']} severe days). Label-imputation fingerprint: {fp['cells']} cells "
                f"({audit['fingerprint_fraction']:.1%} of the factor cells, in {fp['columns']} columns) hold their "
                f"own grade's fill value, the grade's median; the honest protocol masks {fp['masked_cells']} cells, "
                "every cell equal to any fill value of its column, whatever its grade.\n\n")
        table = audit.get("leak_probe") or {}
        if "skipped" not in table and table:
            probe = ("\n\n### Leak probe\n\nSame-day AUROC of a gradient-boosted tree that sees only which exact "
                     "value each factor holds (indicators of its 5 most frequent values on the training rows), "
                     "5 folds x 3 seeds (`prcrs/leakprobe.py`). 0.5 = nothing of the label; real labs repeat "
                     "values too (rounding, detection limits), so a clean sheet scores a little above it.\n\n"
                     + md_table(["features", "folds", "un-imputation", "probe AUROC (mean ± sd)"],
                                [[label, row["split"], row["unimpute"], f"{row['auroc']:.3f} ± {row['sd']:.3f}"]
                                 for label, row in table.items()]))
    text = ("## Data audit: what the fingerprint buys\n\n" + head
            + md_table(["random forest, same day", "AUROC"], rows) + probe)
    report.write("audit.md", text + "\n")
    report.sections.append(text)


@section("audit", order=70, experiments=("table2", "audit"), files=("audit.md",))
def write(report: Report, inputs: ReportInputs) -> None:
    audit_section(report, inputs.study("table2"), inputs.study("audit"), inputs.audit)
