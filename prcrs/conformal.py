"""A risk band with a coverage guarantee: label-conditional (Mondrian) split-conformal
classification (Vovk et al. 2005) by `crepes`, fitted on out-of-fold scores of held-out patients.

Why this and not a bootstrap over fold models: the band's promise is checkable. Among days that
turn out severe, at least `confidence` (90 %) get a band that contains "severe"; among days that
do not, at least 90 % get one that contains "not severe" (if patients are exchangeable with those
the scores came from). A bootstrap interval of a probability promises nothing that can be checked
on held-out patients. Each class is covered on its own (Mondrian), as severe days are rare: a
plain conformal set would reach 90 % by covering the common class alone.

The band of a day is its prediction set: {severe} "high", {not severe} "low", both "uncertain",
neither "atypical" (unlike either class at this confidence). The scores are the model's raw
probabilities; a monotone calibration would not change the band.

    >>> import numpy as np
    >>> scores = np.r_[np.linspace(0, 0.5, 90), np.linspace(0.4, 1, 10)]
    >>> band = RiskBand(0.9).fit(scores, np.r_[np.zeros(90), np.ones(10)])
    >>> band.predict([0.05, 0.45, 0.95]).tolist()
    ['low', 'uncertain', 'high']
"""

from __future__ import annotations

import numpy as np

BAND_CONFIDENCE = 0.9  # the platform's: 90 % of severe days get a band containing "severe"
BANDS = {(False, True): "high", (True, False): "low", (True, True): "uncertain", (False, False): "atypical"}
MEANING = {"high": "only severe CRS fits this day at the stated confidence",
           "low": "only no severe CRS fits this day at the stated confidence",
           "uncertain": "both outcomes fit: the model cannot tell at the stated confidence",
           "atypical": "neither outcome fits well: the day is unlike the training days"}


class RiskBand:
    """Label-conditional split-conformal classifier on P(severe) scores. Non-conformity of a
    class: 1 - its probability (hinge), so severe is refused for low scores and not severe for
    high ones. Not smoothed: deterministic and conservative."""

    def __init__(self, confidence: float = 0.9):
        self.confidence = confidence

    def fit(self, scores, labels) -> RiskBand:
        from crepes import ConformalClassifier

        scores, labels = np.asarray(scores, float), np.asarray(labels, int)
        keep = np.isfinite(scores)
        scores, labels = scores[keep], labels[keep]
        self.classifier_ = ConformalClassifier().fit(np.where(labels == 1, 1 - scores, scores), bins=labels)
        return self

    def p_values(self, scores) -> np.ndarray:
        """(n, 2) conformal p-values of "not severe" and "severe" for each score."""
        scores = np.asarray(scores, float)
        alphas = np.column_stack([scores, 1 - scores])
        return np.column_stack([self.classifier_.predict_p(alphas, np.full(len(scores), c), smoothing=False)[:, c]
                                for c in (0, 1)])

    def sets(self, scores) -> np.ndarray:
        """(n, 2) bool: whether "not severe" and "severe" are in each day's prediction set."""
        return self.p_values(scores) > 1 - self.confidence

    def predict(self, scores) -> np.ndarray:
        """The band of each score: 'low', 'uncertain', 'high' or 'atypical' (see `MEANING`)."""
        return np.array([BANDS[bool(a), bool(b)] for a, b in self.sets(scores)])
