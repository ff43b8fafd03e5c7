"""Spreads and tests for reports: t intervals over folds, DeLong, patient-level bootstrap."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from prcrs.metrics import auroc, weighted_auroc


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its t-based confidence interval over folds: (mean, low, high)."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    mean = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return mean, mean - half, mean + half


def paired_t_test(a, b) -> float:
    """The paper's test: paired t-test of per-fold scores; two-sided p-value."""
    return float(stats.ttest_rel(np.asarray(a, float), np.asarray(b, float)).pvalue)


def delong_test(y: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> tuple[float, float]:
    """DeLong's test for two correlated AUROCs on the same rows: (AUROC1 - AUROC2, p-value)."""
    y = np.asarray(y, int)
    pos, neg = y == 1, y == 0
    m, n = pos.sum(), neg.sum()
    v10, v01, aucs = [], [], []
    for p in (np.asarray(p1, float), np.asarray(p2, float)):
        tx, ty, tz = stats.rankdata(p[pos]), stats.rankdata(p[neg]), stats.rankdata(p)
        aucs.append((tz[pos].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((tz[pos] - tx) / n)
        v01.append(1 - (tz[neg] - ty) / m)
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    diff = aucs[0] - aucs[1]
    if var <= 0:
        return float(diff), 1.0
    return float(diff), float(2 * stats.norm.sf(abs(diff) / np.sqrt(var)))


@dataclass(frozen=True)
class PatientBootstrap:
    """Resamples of patients drawn with replacement, as row weights: `weights` (n_boot, n), a
    row's weight the number of times its patient was drawn in that resample, so a patient's rows
    stay together. One matrix serves every statistic of the same rows; a statistic maps weights
    (k, n) to values (k,) (`prcrs.metrics.weighted_auroc`, say), NaN where a resample gives
    none (one class only), which is left out."""

    weights: np.ndarray

    @classmethod
    def of(cls, patient, n_boot: int = 1000, seed: int = 0) -> PatientBootstrap:
        """`n_boot` resamples of the patients of `patient` ((n,): each row's), seeded by `seed`."""
        ids, inverse = np.unique(np.asarray(patient), return_inverse=True)
        draws = np.random.default_rng(seed).integers(0, len(ids), (n_boot, len(ids)))
        draws += np.arange(n_boot)[:, None] * len(ids)
        counts = np.bincount(draws.ravel(), minlength=n_boot * len(ids)).reshape(n_boot, len(ids))
        return cls(counts[:, inverse].astype(float))

    def values(self, statistic) -> np.ndarray:
        """The finite values of `statistic` over the resamples."""
        values = np.asarray(statistic(self.weights), float)
        return values[np.isfinite(values)]

    def interval(self, statistic) -> tuple[float, float]:
        """`percentile_interval` of `statistic` over the resamples."""
        return percentile_interval(statistic(self.weights), len(self.weights))


def percentile_interval(values, n_boot: int) -> tuple[float, float]:
    """95 % percentile interval of a statistic's values over `n_boot` resamples, its non-finite
    values (resamples that give none) left out; NaN when fewer than half give a value."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) < n_boot / 2:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def patient_bootstrap(patient, statistic, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of `statistic` (row weights (k, n) -> (k,)) over `n_boot`
    resamples of `patient`'s patients (`PatientBootstrap`)."""
    return PatientBootstrap.of(patient, n_boot, seed).interval(statistic)


def patient_bootstrap_auroc_diff(y, p1, p2, patient, n_boot: int = 1000, seed: int = 0
                                 ) -> tuple[float, float, float, float]:
    """AUROC(p1) - AUROC(p2) with a bootstrap over patients (not days).

    Returns (difference, 95 % CI low, high, two-sided p-value = twice the share of resampled
    differences on the other side of zero).
    """
    y, p1, p2 = (np.asarray(a) for a in (y, p1, p2))
    diffs = PatientBootstrap.of(patient, n_boot, seed).values(
        lambda w: weighted_auroc(y, p1, w) - weighted_auroc(y, p2, w))
    low, high = np.quantile(diffs, [0.025, 0.975])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return float(auroc(y, p1) - auroc(y, p2)), float(low), float(high), float(p)


@dataclass(frozen=True)
class Comparison:
    """AUROC of run a minus run b on the test rows both predicted, pooled over folds."""

    difference: float
    low: float  # patient-bootstrap 95 % interval of the difference
    high: float
    p_bootstrap: float  # two-sided, from the bootstrap
    p_delong: float  # DeLong's test on the same rows


OOF_KEYS = ["repeat", "fold", "patient", "day"]  # a test row of an out-of-fold predictions file


def compare_oof(a: pd.DataFrame, b: pd.DataFrame, n_boot: int, seed: int = 0) -> Comparison | None:
    """`Comparison` of two runs' out-of-fold predictions (`label`, `probability` per `OOF_KEYS`
    row), or None when the rows both predicted hold one class (every fold of one diverged, say)."""
    merged = a.merge(b, on=OOF_KEYS, suffixes=("_a", "_b")).dropna(subset=["probability_a", "probability_b"])
    if merged["label_a"].nunique() < 2:
        return None
    y, pa, pb = merged["label_a"], merged["probability_a"], merged["probability_b"]
    diff, low, high, p_boot = patient_bootstrap_auroc_diff(y, pa, pb, merged["patient"], n_boot, seed)
    return Comparison(diff, low, high, p_boot, delong_test(y, pa, pb)[1])
