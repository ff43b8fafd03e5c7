"""Transfer learning: PrCRS with and without COVID-19 pretraining."""

from __future__ import annotations

import pandas as pd

from prcrs.report import stats
from prcrs.report.sections import ReportInputs, section
from prcrs.report.tables import PROTOCOLS, Report, ci_cell, md_table, one, p_cell
from prcrs.tracking.results import oof


def transfer_table(report: Report, t2: pd.DataFrame, tr: pd.DataFrame) -> None:
    rows = []
    for protocol in PROTOCOLS:
        base, covid = one(t2, model="prcrs", protocol=protocol), one(tr, protocol=protocol)
        if base is None or covid is None:
            continue
        test = stats.compare_oof(oof(covid.run_id), oof(base.run_id), report.n_boot)
        if test is None:  # every fold of one of them diverged: nothing to compare
            difference, p = "no test row predicted by both (diverged folds)", "–"
        else:
            difference = f"{test.difference:+.3f} ({test.low:+.3f}–{test.high:+.3f})"
            p = p_cell(test.p_bootstrap, report.n_boot)
        rows.append([protocol, ci_cell(base, "auroc"), ci_cell(covid, "auroc"), ci_cell(base, "f1_macro"),
                     ci_cell(covid, "f1_macro"), difference, p])
    if not rows:
        return
    text = ("## Transfer learning: PrCRS with and without COVID-19 pretraining (same day)\n\n"
            + md_table(["protocol", "AUROC without", "AUROC with COVID", "F1 without", "F1 with COVID",
                        "ΔAUROC with − without (patient bootstrap 95 % CI)", "p"], rows)
            + "\n\nPretraining: 3-class COVID-19 severity over the shared factors (aligned by name and unit), "
              "then fine-tuning with the published freezing (Conv1d embedding frozen).")
    report.write("transfer.md", text + "\n")
    report.sections.append(text)
    honest = next((r for r in rows if r[0] == "honest"), None)  # never another protocol's numbers under its name
    report.claims.append("**COVID-19 pretraining improves PrCRS (the central claim).** " + (
        "No honest run with and without pretraining in this store." if honest is None else
        f"Honest protocol: AUROC {honest[1]} without, {honest[2]} with; difference {honest[5]} (p {honest[6]})."))


@section("transfer", order=60, experiments=("table2", "transfer"), files=("transfer.md",))
def write(report: Report, inputs: ReportInputs) -> None:
    transfer_table(report, inputs.study("table2"), inputs.study("transfer"))
