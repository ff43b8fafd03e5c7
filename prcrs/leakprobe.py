"""The leak probe: how much of the same-day CRS label can be read off exact repeated values.

A label-imputation fill value is an exact value repeated on many days of one grade; a tree
isolates it in one split. The probe keeps only that channel: for each factor, indicators of its
`top` most frequent exact values (chosen by frequency among the training rows, label-free), and
nothing about magnitude. A gradient-boosted tree on these indicators is cross-validated for
severe CRS on the same day (grade >= 3; COVID-19: severity 2), after a protocol's un-imputation, with the protocol's
split. Real labs repeat values too (rounding, detection limits), so a clean cohort does not
score 0.5: compare with the same cohort's honest number, and the synthetic cohort with and without
label fill (`synthetic_cart(label_fill=True)`), where the answer is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from prcrs import schema
from prcrs.data.cohort import Cohort
from prcrs.data.fingerprint import FillValueMasker
from prcrs.splits import make_folds

# (label, un-imputation, split): the rows of the audit's probe table
PROTOCOLS = (("raw sheet", "none", "patient"), ("paper protocol", "none", "row"),
             ("honest protocol", "sheet", "patient"))


@dataclass(frozen=True)
class ProbeResult:
    auroc: float  # mean over folds x seeds
    sd: float
    aurocs: tuple[float, ...]  # one per fold x seed

    def to_dict(self) -> dict:
        return {"auroc": self.auroc, "sd": self.sd, "n": len(self.aurocs)}


def value_indicators(X: pd.DataFrame, top_values: dict[str, np.ndarray]) -> np.ndarray:
    """(n, sum of len(values)) uint8: 1 where a cell equals one of its column's `top_values`."""
    return np.hstack([X[c].to_numpy(float)[:, None] == v[None, :] for c, v in top_values.items()]).astype(np.uint8)


def most_frequent(X: pd.DataFrame, top: int) -> dict[str, np.ndarray]:
    """Each column's `top` most frequent non-missing exact values (ties: the smaller value)."""
    out = {}
    for column in X.columns:
        counts = X[column].dropna().value_counts()
        counts = counts.iloc[np.lexsort((counts.index.to_numpy(), -counts.to_numpy()))]
        out[column] = counts.index.to_numpy(float)[:top]
    return out


def leak_probe(cohort: Cohort, unimpute: str = "sheet", split: str = "patient", folds: int = 5,
               seeds: int = 3, top: int = 5) -> ProbeResult:
    """Same-day AUROC of the exact-value probe after `unimpute` (sheet, fold or none), `folds`-fold
    CV on `split` (patient or row) repeated over `seeds` seeds."""
    frame = cohort.frame
    X = frame[list(schema.FEATURE_KEYS)].dropna(axis=1, how="all")
    grade = frame[cohort.target].to_numpy(int)
    y = cohort.severe.astype(int)
    patient = frame["patient"].to_numpy()
    aurocs = []
    for seed in range(seeds):
        for fold in make_folds(split, y, grade, patient, folds, 1, seed):
            train, test = X.iloc[fold.train], X.iloc[fold.test]
            if unimpute != "none":
                masker = FillValueMasker(cohort.fill_values if unimpute == "sheet" else None)
                masker.fit(train, grade[fold.train])
                train, test = masker.transform(train), masker.transform(test)
            values = most_frequent(train, top)
            # the probe's own fixed tree (conf/model/hgb.yaml's values when it was written): an instrument,
            # so tuning the hgb model never moves the probe or its tested bound
            tree = HistGradientBoostingClassifier(learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
                                                  random_state=seed)
            tree.fit(value_indicators(train, values), y[fold.train])
            aurocs.append(roc_auc_score(y[fold.test], tree.predict_proba(value_indicators(test, values))[:, 1]))
    return ProbeResult(float(np.mean(aurocs)), float(np.std(aurocs)), tuple(float(a) for a in aurocs))


def probe_table(cohort: Cohort, **kwargs) -> dict[str, dict]:
    """The probe for the raw sheet, the paper protocol and the honest protocol (audit rows)."""
    return {label: {"unimpute": unimpute, "split": split, **leak_probe(cohort, unimpute, split, **kwargs).to_dict()}
            for label, unimpute, split in PROTOCOLS}
