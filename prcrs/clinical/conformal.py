"""A rule-out band with a coverage guarantee: split-conformal p-values of severe CRS (Vovk et al.
2005, by `crepes`, label-conditional), fitted on out-of-fold scores of held-out patients.

The band says one of two things, and neither can contradict the risk beside it:

- "ruled out": severe CRS is ruled out at 90 %. The day's score is below the scores of at least
  90 % of the days that turned out severe, and its calibrated risk is below the base rate (the
  share of severe days in training). A day at or above the base rate is never ruled out.
- "not ruled out": severe CRS cannot be ruled out at 90 %.

The promise, checkable on held-out patients: at least `confidence` (90 %) of the days that turn
out severe are "not ruled out" (if patients are exchangeable with those the scores came from);
the risk condition only makes the band more cautious. Ruling out is about the severe class
alone, which is rare: a plain conformal set would reach 90 % by covering the common class. The
band is no verdict that a day will be severe: most "not ruled out" days are not.

    >>> import numpy as np
    >>> scores = np.r_[np.linspace(0, 0.5, 90), np.linspace(0.4, 1, 10)]
    >>> band = RiskBand(0.9).fit(scores, np.r_[np.zeros(90), np.ones(10)])
    >>> band.predict([0.05, 0.45, 0.95], [0.01, 0.05, 0.6]).tolist()
    ['ruled out', 'not ruled out', 'not ruled out']
"""

from __future__ import annotations

import numpy as np

BAND_CONFIDENCE = 0.9  # the platform's: 90 % of severe days are "not ruled out"
RULED_OUT, NOT_RULED_OUT = "ruled out", "not ruled out"
MEANING = {RULED_OUT: "severe CRS ruled out at 90 %: at least 9 in 10 days that turned severe scored higher, and the "
                      "risk is below the base rate",
           NOT_RULED_OUT: "severe CRS cannot be ruled out at 90 %"}


class RiskBand:
    """Split-conformal p-values of the severe class on P(severe) scores (non-conformity of severe:
    1 - score), not smoothed: deterministic and conservative; `base_rate_` the severe share."""

    def __init__(self, confidence: float = 0.9):
        self.confidence = confidence

    def fit(self, scores, labels) -> RiskBand:
        from crepes import ConformalClassifier

        scores, labels = np.asarray(scores, float), np.asarray(labels, int)
        keep = np.isfinite(scores)
        scores, labels = scores[keep], labels[keep]
        self.classifier_ = ConformalClassifier().fit(np.where(labels == 1, 1 - scores, scores), bins=labels)
        self.base_rate_ = float(labels.mean())
        return self

    def p_severe(self, scores) -> np.ndarray:
        """(n,) conformal p-values of "severe" for each score."""
        scores = np.asarray(scores, float)
        alphas = np.column_stack([scores, 1 - scores])
        return self.classifier_.predict_p(alphas, np.ones(len(scores), int), smoothing=False)[:, 1]

    def ruled_out(self, scores, risks) -> np.ndarray:
        """(n,) bool: severe CRS ruled out (see the module): p-value at most 1 - confidence and the
        calibrated risk below the base rate."""
        level = 1 - self.confidence + 1e-12  # p = (k + 1) / (n + 1) can be 0.1 exactly; 1 - 0.9 is just below it
        return (self.p_severe(scores) <= level) & (np.asarray(risks, float) < self.base_rate_)

    def predict(self, scores, risks) -> np.ndarray:
        """The band of each day from its score and calibrated risk: 'ruled out' or 'not ruled out'."""
        return np.where(self.ruled_out(scores, risks), RULED_OUT, NOT_RULED_OUT)
