"""Entry point of the main job. Until the experiment engine lands it audits the data and runs
a 5-fold honest cross-validation of an L2 logistic regression at horizon 1."""

from __future__ import annotations

import sys
import warnings

import numpy as np

from prcrs.audit import audit, format_audit
from prcrs.data import load_cohort
from prcrs.data.targets import make_horizon
from prcrs.errors import PrcrsError
from prcrs.metrics import fold_metrics
from prcrs.preprocessing import FoldPreprocessor
from prcrs.splits import make_folds


def main() -> float:
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        cohort = load_cohort("cart")
    for w in caught:
        print(f"warning: {w.message}")
    print(format_audit(audit(cohort)).split("\nvalues outside")[0])
    data = make_horizon(cohort, 1)
    aucs = []
    for fold in make_folds("patient", data.y, data.grade_target, data.patient, folds=5):
        pre = FoldPreprocessor(missing_indicators=True).fit(data.X.iloc[fold.train], data.grade_today[fold.train])
        model = LogisticRegression(C=0.1, max_iter=5000).fit(pre.transform(data.X.iloc[fold.train]), data.y[fold.train])
        proba = model.predict_proba(pre.transform(data.X.iloc[fold.test]))[:, 1]
        aucs.append(fold_metrics(data.y[fold.test], proba, 0.5)["auroc"])
    print(f"logistic regression, honest 5-fold CV, horizon 1: AUROC {np.mean(aucs):.3f} ± {np.std(aucs):.3f}")
    return float(np.mean(aucs))


if __name__ == "__main__":
    try:
        main()
    except PrcrsError as exc:
        sys.exit(f"error: {exc}")
