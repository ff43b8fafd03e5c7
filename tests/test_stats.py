"""The report's statistics against known values: DeLong's test from its definition, the patient
bootstrap against scipy's, t intervals against scipy's."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from prcrs.metrics import auprc, auroc
from prcrs.report import stats


def _two_scores(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p1 = np.round(rng.normal(y * 1.0, 1.0), 1)  # rounded: ties, as lab-driven scores have
    p2 = np.round(0.6 * p1 + rng.normal(y * 0.5, 1.0), 1)
    return y, p1, p2


def _delong_by_definition(y, p1, p2):
    """DeLong, DeLong & Clarke-Pearson (1988) written out pair by pair: the placement values
    V10 (each severe row against every other) and V01, their covariances, a z test."""
    pos, neg = y == 1, y == 0
    m, n = pos.sum(), neg.sum()
    v10, v01, aucs = [], [], []
    for p in (p1, p2):
        psi = (p[pos][:, None] > p[neg][None, :]) + 0.5 * (p[pos][:, None] == p[neg][None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    s10, s01 = np.cov(v10), np.cov(v01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (aucs[0] - aucs[1]) / np.sqrt(var)
    return aucs[0] - aucs[1], 2 * scipy_stats.norm.sf(abs(z))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_equals_its_pairwise_definition(seed):
    y, p1, p2 = _two_scores(seed=seed)
    diff, p = stats.delong_test(y, p1, p2)
    want_diff, want_p = _delong_by_definition(y, p1, p2)
    assert diff == pytest.approx(want_diff, abs=1e-12) and p == pytest.approx(want_p, rel=1e-9)
    assert diff == pytest.approx(roc_auc_score(y, p1) - roc_auc_score(y, p2), abs=1e-12)
    assert 0 < p < 1


def test_delong_of_a_score_against_itself_is_no_difference():
    y, p1, _ = _two_scores()
    assert stats.delong_test(y, p1, p1) == (0.0, 1.0)


def test_the_patient_bootstrap_of_one_row_patients_matches_scipys():
    rng = np.random.default_rng(3)
    values = rng.lognormal(0, 1, 150)  # skewed: the percentile interval is not symmetric
    low, high = stats.patient_bootstrap(np.arange(150), lambda w: w @ values / w.sum(1), n_boot=4000, seed=0)
    ref = scipy_stats.bootstrap((values,), np.mean, n_resamples=4000, method="percentile",
                                random_state=np.random.default_rng(0)).confidence_interval
    width = ref.high - ref.low
    assert abs(low - ref.low) < 0.05 * width and abs(high - ref.high) < 0.05 * width


def test_a_patients_rows_weigh_alike_and_a_resample_draws_as_many_patients_as_there_are():
    patient = np.repeat([10, 20, 30, 40], [1, 2, 3, 4])
    weights = stats.PatientBootstrap.of(patient, n_boot=50, seed=1).weights
    for w in weights:
        assert all(len(np.unique(w[patient == p])) == 1 for p in (10, 20, 30, 40))
        assert sum(w[patient == p][0] for p in (10, 20, 30, 40)) == 4


def test_weighted_statistics_are_the_statistics_of_the_resampled_rows():
    """Each vectorised statistic at a resample's weights equals the library's statistic on that
    resample's rows, repeated as drawn."""
    from sklearn.metrics import average_precision_score

    from prcrs.clinical import alarms, calibration, decision
    from prcrs.metrics import weighted_auprc, weighted_auroc

    y, p1, _ = _two_scores(n=240, seed=6)
    p1 = np.round(p1, 1)  # ties
    patient = np.repeat(np.arange(60), 4)
    weights = stats.PatientBootstrap.of(patient, n_boot=20, seed=3).weights
    lp = calibration.logit(p1)
    a, b = calibration.logistic_fit(lp, y, weights)
    citl = calibration.logistic_fit(lp, y, weights, slope=False)[0]
    nb = decision.net_benefit(y, p1, decision.REPORTED, weights)
    for k, w in enumerate(weights):
        rows = np.repeat(np.arange(len(y)), w.astype(int))
        assert weighted_auroc(y, p1, w)[0] == pytest.approx(roc_auc_score(y[rows], p1[rows]), abs=1e-12)
        assert weighted_auprc(y, p1, w)[0] == pytest.approx(average_precision_score(y[rows], p1[rows]), abs=1e-12)
        cal = calibration.calibration_stats(p1[rows], y[rows])
        assert (citl[k], b[k]) == pytest.approx((cal["citl"], cal["slope"]), abs=1e-8)
        assert nb[k] == pytest.approx(decision.net_benefit(y[rows], p1[rows], decision.REPORTED), abs=1e-12)
    outcomes = pd.DataFrame({"first_severe_day": [np.nan, 0, 2, 3, 5], "warning_days": [np.nan, np.nan, 1, 0, 3],
                             "alarms": [2, 1, 3, 1, 4], "days": [9, 4, 6, 8, 10]})
    weights = np.array([[1, 1, 1, 1, 1], [0, 2, 1, 0, 3], [3, 0, 0, 2, 0]])
    resampled = alarms.warning_summary(outcomes, weights)
    for k, w in enumerate(weights):
        repeated = alarms.warning_summary(outcomes.loc[np.repeat(outcomes.index, w)].reset_index(drop=True))
        assert {key: v[k] for key, v in resampled.items()} == pytest.approx(repeated, nan_ok=True)


def test_the_auroc_difference_bootstrap_is_the_bootstrap_of_the_difference():
    y, p1, p2 = _two_scores(n=240, seed=4)
    patient = np.repeat(np.arange(60), 4)
    diff, low, high, p = stats.patient_bootstrap_auroc_diff(y, p1, p2, patient, n_boot=300, seed=2)
    boot = stats.PatientBootstrap.of(patient, n_boot=300, seed=2)
    rows = [np.repeat(np.arange(len(y)), w.astype(int)) for w in boot.weights]
    diffs = [auroc(y[r], p1[r]) - auroc(y[r], p2[r]) for r in rows]  # the library's AUROC on each resample
    assert (low, high) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])), abs=1e-12)
    assert diff == pytest.approx(roc_auc_score(y, p1) - roc_auc_score(y, p2)) and low < diff < high and 0 <= p <= 1


def test_compare_oof_pools_the_rows_both_runs_predicted():
    y, p1, p2 = _two_scores(n=200, seed=5)
    keys = {"repeat": 0, "fold": np.arange(200) % 5, "patient": np.arange(200) // 4, "day": np.arange(200) % 4}
    a = pd.DataFrame({**keys, "label": y, "probability": p1})
    b = pd.DataFrame({**keys, "label": y, "probability": p2}).iloc[::-1]  # row order does not matter
    test = stats.compare_oof(a, b.assign(probability=b["probability"].where(b["fold"] != 0)), n_boot=200)
    kept = keys["fold"] != 0  # fold 0 of b diverged: no probability, left out of both
    assert test.difference == pytest.approx(roc_auc_score(y[kept], p1[kept]) - roc_auc_score(y[kept], p2[kept]))
    assert test.p_delong == pytest.approx(stats.delong_test(y[kept], p1[kept], p2[kept])[1])
    assert stats.compare_oof(a.assign(label=0), b.assign(label=0), n_boot=10) is None


def test_t_interval_is_scipys():
    values = [0.81, 0.77, 0.85, np.nan, 0.79, 0.83]
    mean, low, high = stats.t_interval(values)
    finite = [v for v in values if v == v]
    ref = scipy_stats.t.interval(0.95, len(finite) - 1, loc=np.mean(finite), scale=scipy_stats.sem(finite))
    assert mean == pytest.approx(np.mean(finite)) and (low, high) == pytest.approx(ref)
    assert np.isnan(stats.t_interval([0.8])[1])


def test_auroc_and_auprc_are_nan_with_one_class():
    assert np.isnan(auroc([0, 0, 0], [0.1, 0.2, 0.3])) and np.isnan(auprc([1, 1], [0.1, 0.2]))
    assert auroc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == 1.0
