"""Turning model scores into probabilities (the paper's windowed conversion, isotonic, Platt)
and checking how right probabilities are (Steyerberg: calibration-in-the-large, slope; ECE).

Conversions are fitted on out-of-fold predictions (`scores`, `labels`) and applied to new scores.

    >>> stats = calibration_stats([0.2] * 5 + [0.8] * 5, [1, 0, 0, 0, 0, 1, 1, 1, 1, 0])
    >>> abs(round(stats["citl"], 3)), round(stats["slope"], 3), round(stats["ece"], 3)
    (0.0, 1.0, 0.0)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import rankdata
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss


class WindowConversion:
    """The paper's "actual probability": sort the baseline predictions, find the position nearest
    the new prediction, and average the severe labels in a window around it. The half-window is
    `high` positions above 0.8, `low` below 0.3 and `mid` in between (the paper: about 10, 20, 15)."""

    def __init__(self, high: int = 10, mid: int = 15, low: int = 20):
        self.high, self.mid, self.low = high, mid, low

    def fit(self, scores, labels) -> WindowConversion:
        order = np.argsort(scores, kind="stable")
        self.scores_ = np.asarray(scores, float)[order]
        self.labels_ = np.asarray(labels, float)[order]
        return self

    def predict(self, scores) -> np.ndarray:
        scores = np.asarray(scores, float)
        pos = np.clip(np.searchsorted(self.scores_, scores), 0, len(self.scores_) - 1)
        half = np.where(scores > 0.8, self.high, np.where(scores < 0.3, self.low, self.mid))
        lo, hi = np.maximum(pos - half, 0), np.minimum(pos + half + 1, len(self.scores_))
        cumulative = np.r_[0.0, np.cumsum(self.labels_)]
        return (cumulative[hi] - cumulative[lo]) / (hi - lo)


class EvidenceBounds:
    """The floor and ceiling of a calibrated risk: the severe share among the lowest- and the
    highest-scoring out-of-fold rows (`BIN_SHARE` of them, at least `BIN_ROWS`). A calibrator
    clipped to them is never more extreme than the out-of-fold evidence behind it: no '> 99 %'
    from a top bin where 80 % of days were severe. Where the two cross (a score that does not
    rank), both are the overall share."""

    BIN_SHARE, BIN_ROWS = 0.05, 30

    def fit(self, scores, labels) -> EvidenceBounds:
        order = np.argsort(np.asarray(scores, float), kind="stable")
        labels = np.asarray(labels, float)[order]
        n = min(len(labels), max(self.BIN_ROWS, int(np.ceil(self.BIN_SHARE * len(labels)))))
        self.floor_, self.ceiling_ = float(labels[:n].mean()), float(labels[-n:].mean())
        if self.floor_ > self.ceiling_:
            self.floor_ = self.ceiling_ = float(labels.mean())
        return self

    def clip(self, probabilities) -> np.ndarray:
        return np.clip(probabilities, self.floor_, self.ceiling_)


class IsotonicConversion:
    """Isotonic regression, clipped to its `EvidenceBounds`."""

    def fit(self, scores, labels) -> IsotonicConversion:
        self.model_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, labels)
        self.bounds_ = EvidenceBounds().fit(scores, labels)
        return self

    def predict(self, scores) -> np.ndarray:
        return self.bounds_.clip(self.model_.predict(np.asarray(scores, float)))


class PlattConversion:
    """Logistic regression on the score's log-odds, clipped to its `EvidenceBounds`."""

    def fit(self, scores, labels) -> PlattConversion:
        self.model_ = LogisticRegression().fit(logit(scores).reshape(-1, 1), labels)
        self.bounds_ = EvidenceBounds().fit(scores, labels)
        return self

    def predict(self, scores) -> np.ndarray:
        return self.bounds_.clip(self.model_.predict_proba(logit(scores).reshape(-1, 1))[:, 1])


def logit(p) -> np.ndarray:
    """log(p / (1 - p)) of probabilities (n,), clipped to [1e-6, 1 - 1e-6] first: (n,)."""
    p = np.clip(np.asarray(p, float).ravel(), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


CONVERSIONS = {"paper_window": WindowConversion, "isotonic": IsotonicConversion, "platt": PlattConversion}


def cross_fitted(name: str, scores, labels, groups, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Converted probabilities for every row from a conversion fitted on the other groups' rows."""
    from sklearn.model_selection import GroupKFold

    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    out = np.empty(len(scores))
    for train, test in GroupKFold(folds, shuffle=True, random_state=seed).split(scores, labels, groups):
        out[test] = CONVERSIONS[name]().fit(scores[train], labels[train]).predict(scores[test])
    return out


def cross_fitted_all(scores, labels, groups, seed: int = 0) -> dict[str, np.ndarray]:
    """Every conversion's cross-fitted probabilities (see `cross_fitted`), by name."""
    return {name: cross_fitted(name, scores, labels, groups, seed=seed) for name in CONVERSIONS}


def choose_calibrator(scores, labels, groups, seed: int = 0) -> tuple[str, dict[str, np.ndarray], dict[str, float]]:
    """The standard calibrator the platform serves: of isotonic and Platt (Platt only when its
    slope is positive, so that risk never falls as the score rises), the one with the lower
    patient-cross-fitted Brier score. Returns (its name, every conversion's cross-fitted
    probabilities by name, their Brier scores)."""
    converted = cross_fitted_all(scores, labels, groups, seed)
    scores_ = {name: brier_score_loss(labels, q, pos_label=1) for name, q in converted.items()}
    monotone = ["isotonic"] + (["platt"] if PlattConversion().fit(scores, labels).model_.coef_[0, 0] > 0 else [])
    return min(monotone, key=scores_.get), converted, scores_


MAX_NEWTON_STEPS, STEP_MAX = 100, 5.0  # a Newton step is clipped to STEP_MAX (log-odds)


def logistic_fit(lp, labels, weights=None, slope: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood (a, b) of logit P(y) = a + b lp, unpenalised, for each row of `weights`
    (k, n) (a patient bootstrap's multiplicities; default one row of ones) at once: Newton's
    method from the fit without `lp`, each a and b (k,). `slope=False` fixes b = 1 and solves the
    intercept's score equation, sum w (y - expit(a + lp)) = 0 (calibration-in-the-large). NaN where a row weighs
    one class only, or where the fit does not converge (separated rows)."""
    lp, y = np.asarray(lp, float).ravel(), np.asarray(labels, float).ravel()
    w = np.ones((1, len(y))) if weights is None else np.atleast_2d(np.asarray(weights, float))
    if slope:  # from the fit without the score (Newton's usual start); b = 1 fixed otherwise
        with np.errstate(invalid="ignore", divide="ignore"):
            a, b = logit((w @ y) / w.sum(1)), np.zeros(len(w))
    else:
        a, b = np.zeros(len(w)), np.ones(len(w))
    for _ in range(MAX_NEWTON_STEPS):
        p = expit(a[:, None] + b[:, None] * lp)
        r, s = w * (y - p), w * p * (1 - p)
        g0, h00 = r.sum(1), s.sum(1)
        if slope:
            g1, h01, h11 = r @ lp, s @ lp, s @ (lp * lp)
            with np.errstate(invalid="ignore", divide="ignore"):
                det = h00 * h11 - h01 ** 2
                da, db = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                da, db = g0 / h00, np.zeros(len(w))
        da, db = np.clip(da, -STEP_MAX, STEP_MAX), np.clip(db, -STEP_MAX, STEP_MAX)  # damped far from the root
        a, b = a + da, b + db
        if np.all((np.abs(da) < 1e-10) & (np.abs(db) < 1e-10) | ~np.isfinite(da)):
            break
    both = ((w * y).sum(1) > 0) & ((w * (1 - y)).sum(1) > 0)
    done = both & (np.abs(da) < 1e-8) & (np.abs(db) < 1e-8)
    return np.where(done, a, np.nan), np.where(done, b, np.nan)


def calibration_stats(probabilities, labels, bins: int = 10) -> dict[str, float]:
    """How right probabilities are, the Steyerberg way.

    citl: calibration-in-the-large, the intercept a of logit P(y) = a + logit(p) (0 = right on
    average; > 0: risks too low). slope: b of logit P(y) = a + b logit(p) (1 = right spread; < 1:
    too extreme); both `logistic_fit`. ece: expected calibration error, the row-weighted mean
    |mean p - frequency| over `bins` equal-count bins. oe: observed / expected events. brier: the
    Brier score. NaN (Brier excepted) where the labels hold one class; all NaN without rows.
    """
    p, y = np.clip(np.asarray(probabilities, float), 1e-6, 1 - 1e-6), np.asarray(labels, int)
    if len(y) == 0:  # an empty subgroup (no covariate known, say): nothing to measure
        return dict.fromkeys(("citl", "slope", "ece", "oe", "brier"), float("nan"))
    brier = float(brier_score_loss(y, p, pos_label=1))
    if len(np.unique(y)) < 2:
        return {**dict.fromkeys(("citl", "slope", "ece", "oe"), float("nan")), "brier": brier}
    lp = logit(p)
    citl = logistic_fit(lp, y, slope=False)[0][0]
    slope = logistic_fit(lp, y)[1][0]
    bin_of = np.floor(rankdata(p, method="min") - 1) * bins // len(p)  # equal-count bins; ties stay together
    ece = sum(np.sum(bin_of == b) * abs(p[bin_of == b].mean() - y[bin_of == b].mean())
              for b in np.unique(bin_of)) / len(p)
    return {"citl": float(citl), "slope": float(slope), "ece": float(ece), "oe": float(y.sum() / p.sum()),
            "brier": brier}


RECALIBRATIONS = ("intercept", "logistic")  # Steyerberg's order: calibration-in-the-large, then intercept and slope


def fit_recalibration(risks, labels, method: str) -> tuple[float, float]:
    """(a, b) of logit(updated risk) = a + b logit(risk), fitted to a site's labels: `intercept`
    fixes b = 1 and solves for the calibration-in-the-large a; `logistic` fits both."""
    a, b = logistic_fit(logit(risks), labels, slope=method == "logistic")
    return float(a[0]), float(b[0])


def choose_recalibration(risks, labels, groups, folds: int = 5, seed: int = 0) -> tuple[str, dict[str, np.ndarray]]:
    """Of `RECALIBRATIONS`, the one with the lower patient-cross-fitted log loss on a site's
    risks and labels (logistic only with a positive slope, so the update keeps the ranking);
    returns its name and each method's cross-fitted updated risks."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedGroupKFold

    risks, labels, groups = np.asarray(risks, float), np.asarray(labels, int), np.asarray(groups)
    severe = pd.Series(labels).groupby(groups).transform("max").to_numpy()  # the patient's: folds keep both kinds
    folds = min(folds, len(np.unique(groups[severe == 1])), len(np.unique(groups[severe == 0])))
    if folds < 2:
        raise ValueError("recalibration needs at least two patients with a severe day and two without")
    crossed = {m: np.empty(len(risks)) for m in RECALIBRATIONS}
    for train, test in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(risks, severe, groups):
        for method in RECALIBRATIONS:
            a, b = fit_recalibration(risks[train], labels[train], method)
            crossed[method][test] = expit(a + b * logit(risks[test]))
    losses = {m: log_loss(labels, q, labels=[0, 1]) for m, q in crossed.items()}
    allowed = [m for m in RECALIBRATIONS if m == "intercept" or fit_recalibration(risks, labels, m)[1] > 0]
    return min(allowed, key=losses.get), crossed


class SiteRecalibration:
    """A release's calibrator updated for one site: the served risk, then logit(risk') = `a` + `b`
    logit(risk) (`fit_recalibration`). The update is increasing (b > 0), so it ranks days as the
    release did: discrimination is unchanged."""

    def __init__(self, base, method: str, a: float, b: float, site: str | None):
        self.base, self.method, self.a, self.b, self.site = base, method, a, b, site

    def predict(self, scores) -> np.ndarray:
        return expit(self.a + self.b * logit(self.base.predict(scores)))
