"""Clinical evaluation: calibration measures, net benefit, warning time, subgroups, explanations
(checked against shap and against the synthetic cohort's known signal) and the conformal band's
coverage on held-out patients."""

import numpy as np
import pandas as pd
import pytest

from prcrs.clinical import alarms, calibration, decision, explain
from prcrs.clinical.conformal import RiskBand
from prcrs.engine import cross_validate
from prcrs.run_config import compose_config, horizon_data, load_cart_for, run_spec

FAST = ["data=synthetic", "cv.folds=3", "cv.n_jobs=1", "cv.explain_rows=20"]


def test_calibration_measures_see_risks_too_low_and_too_extreme():
    rng = np.random.default_rng(0)
    p = rng.beta(1, 8, 20_000)
    y = rng.random(len(p)) < p  # outcomes drawn from p: calibrated
    right = calibration.calibration_stats(p, y)
    assert abs(right["citl"]) < 0.05 and abs(right["slope"] - 1) < 0.05 and right["ece"] < 0.01
    logit = np.log(p / (1 - p))
    low = calibration.calibration_stats(1 / (1 + np.exp(-(logit - 1))), y)  # every risk too low
    extreme = calibration.calibration_stats(1 / (1 + np.exp(-2 * logit)), y)  # too spread
    assert low["citl"] > 0.8 and extreme["slope"] < 0.6 and low["ece"] > right["ece"]


def test_net_benefit_is_the_formula_and_a_perfect_model_catches_every_severe_day():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.1, 0.3, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])
    t = np.array([0.2])
    assert decision.net_benefit(y, p, t)[0] == pytest.approx(1 / 10 - 1 / 10 * 0.2 / 0.8)
    assert np.allclose(decision.net_benefit(y, y.astype(float), decision.THRESHOLDS), y.mean())
    assert np.allclose(decision.treat_all(y, decision.THRESHOLDS),
                       decision.net_benefit(y, np.ones(len(y)), decision.THRESHOLDS))


def test_the_alarm_threshold_holds_the_specificity_on_the_rows_it_was_chosen_on():
    rng = np.random.default_rng(1)
    y, p = (rng.random(500) < 0.1).astype(int), rng.random(500)
    t = alarms.specificity_threshold(y, p, 0.9)
    negatives = p[y == 0]
    assert np.mean(negatives < t) >= 0.9 and np.mean(negatives < np.max(negatives[negatives < t])) < 0.9
    assert np.isnan(alarms.specificity_threshold(np.ones(3), [0.1, 0.2, 0.3]))


def test_warning_time_counts_days_before_the_first_severe_day_one_day_ahead():
    # horizon 1: row (patient, day t) predicts day t + 1. Patient 0 first severe on day 3, alarmed on day 1:
    # 2 days of warning. Patient 1 severe on day 0 (not warnable), never alarmed. Patient 2 never severe,
    # alarmed once in 4 days. A diverged fold's row (no threshold) never alarms.
    oof = pd.DataFrame({
        "patient": [0, 0, 0, 0, 1, 1, 2, 2, 2, 2], "day": [0, 1, 2, 3, 0, 1, 0, 1, 2, 3], "horizon": 1,
        "label": [0, 0, 1, 1, 0, 0, 0, 0, 0, 0], "severe_today": [0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
        "probability": [0.1, 0.8, 0.9, 0.9, 0.1, 0.1, 0.1, 0.7, 0.1, 0.9],
        "alarm_threshold": [0.5] * 9 + [np.nan]})
    outcomes = alarms.patient_outcomes(oof)
    assert outcomes["first_severe_day"].tolist()[:2] == [3, 0] and np.isnan(outcomes.loc[2, "first_severe_day"])
    assert outcomes.loc[0, "warning_days"] == 2 and np.isnan(outcomes.loc[1, "warning_days"])
    summary = alarms.warning_summary(outcomes)
    assert summary["severe_patients"] == 2 and summary["warnable_patients"] == 1 and summary["warned_share"] == 1
    assert summary["detected_share"] == 0.5 and summary["median_warning_days"] == 2
    assert summary["false_alarms_per_patient_week"] == pytest.approx(1 / 4 * 7)


@pytest.mark.slow  # shap's import compiles with numba (about 10 s)
def test_factor_shapley_values_equal_shaps_exact_ones():
    shap = pytest.importorskip("shap")
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(6, 5)), columns=["il6", "crp", "ferritin", "ldh", "platelet"])
    reference = pd.Series(rng.normal(size=5), index=X.columns)

    def risk(frame):  # interactions, so that the order of factors matters
        v = frame.to_numpy(float)
        return 1 / (1 + np.exp(-(v[:, 0] * v[:, 1] + np.sin(v[:, 2]) - 0.5 * v[:, 3] * v[:, 4] ** 2)))

    ours = explain.contributions(risk, X, reference)
    masker = shap.maskers.Independent(reference.to_frame().T.to_numpy(), max_samples=1)
    exact = shap.explainers.ExactExplainer(lambda a: risk(pd.DataFrame(a, columns=X.columns)), masker)(X.to_numpy())
    np.testing.assert_allclose(ours.to_numpy(), exact.values, atol=1e-6)  # shap skips changes below ~1e-7
    sampled = explain.contributions(risk, X.assign(il6_extra=0.0).rename(columns={"il6_extra": "il10"}),
                                    reference.reindex([*X.columns, "il10"]).fillna(0.0), n_permutations=4)
    full = risk(X.assign(il10=0.0)[X.columns])  # above 6 factors: sampled orders, still exactly additive
    np.testing.assert_allclose(sampled.sum(axis=1) + risk(reference.to_frame().T[X.columns])[0], full, atol=1e-9)


def test_a_history_factors_lags_count_with_it():
    assert [explain.factor_of(c) for c in ("il6", "il6@lag1", "il6@change", "il6@max", "age@infusion",
                                            "days_since_infusion")] == [
        "il6", "il6", "il6", "il6", "age@infusion", "days_since_infusion"]


@pytest.mark.parametrize("model", ["logreg", "hgb"])
def test_explanations_rank_the_synthetic_cohorts_signal_first(model):
    """The synthetic labs respond to inflammation (the latent cause of severe CRS) with the
    strength `synthetic._LABS` gives: IL-6, CRP, IFN-gamma, IL-10, ferritin and D-dimer most, the
    percentages and tumour burden not at all. The importance the CV logs (mean |contribution|
    over 100 test rows per fold, `engine._importance`) must find that order."""
    cfg = compose_config([f"model={model}", "data=synthetic", "cv.n_jobs=1", "horizon=0", "cv.explain_rows=100"])
    data = horizon_data(cfg, load_cart_for(cfg))
    summary = cross_validate(run_spec(cfg, data.fill_values), data).summary()
    importance = {k.removeprefix("mean_importance_"): v for k, v in summary.items()
                  if k.startswith("mean_importance_")}
    ranked = sorted(importance, key=importance.get, reverse=True)
    strong = {"il6", "crp", "ifn_gamma", "il10", "ferritin", "d_dimer"}
    assert ranked[0] == "il6" and set(ranked[:3]) <= strong, ranked[:6]
    assert {"neutrophil_pct", "lymphocyte_pct", "monocyte_pct", "tumor_burden"}.isdisjoint(ranked[:10]), ranked[:10]


def test_the_rule_out_band_keeps_its_promise_on_held_out_patients():
    """Fitted on the out-of-fold scores of half the patients, the 90 % band leaves at least 90 %
    of the other half's severe days "not ruled out" (within sampling error, averaged over 20
    random halves), and it is informative: it rules out a good share of the other days."""
    from prcrs.clinical.calibration import PlattConversion

    cfg = compose_config(["model=logreg", "data=synthetic", "cv.n_jobs=1", "cv.explain_rows=0"])
    data = horizon_data(cfg, load_cart_for(cfg))
    oof = cross_validate(run_spec(cfg, data.fill_values), data).oof
    rng = np.random.default_rng(0)
    patients = oof["patient"].unique()
    covered, ruled_out = [], []
    for _ in range(20):
        half = rng.permutation(patients)[: len(patients) // 2]
        fit, held = oof[oof["patient"].isin(half)], oof[~oof["patient"].isin(half)]
        band = RiskBand(0.9).fit(fit["probability"], fit["label"])
        risk = PlattConversion().fit(fit["probability"], fit["label"]).predict(held["probability"])
        out = band.ruled_out(held["probability"].to_numpy(), risk)
        severe = held["label"].to_numpy() == 1
        covered.append(1 - out[severe].mean())
        ruled_out.append(out[~severe].mean())
    assert np.mean(covered) >= 0.87, np.mean(covered)
    assert np.mean(ruled_out) > 0.3, np.mean(ruled_out)  # the band says something


def test_every_parent_run_logs_the_clinical_metrics(tmp_path, monkeypatch):
    import mlflow

    from prcrs import evaluate

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = evaluate.evaluate(compose_config(["model=logreg", *FAST, "study=clinical_test"]))
    metrics = mlflow.get_run(result.run_id).data.metrics
    for key in ("oof_calibration_raw_citl", "oof_calibration_isotonic_slope", "oof_calibration_paper_window_ece",
                "oof_net_benefit_t10", "oof_net_benefit_treat_all_t10", "oof_median_warning_days", "oof_warned_share",
                "oof_false_alarms_per_patient_week", "oof_subgroup_aged_under_25_auroc", "oof_subgroup_female_citl",
                "mean_importance_il6"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert metrics["oof_net_benefit_t10"] > metrics["oof_net_benefit_treat_all_t10"]
    folds = mlflow.search_runs([mlflow.get_run(result.run_id).info.experiment_id], output_format="list",
                               filter_string="tags.role = 'cv_fold'")
    assert len(folds) == 3 and all(np.isfinite(f.data.metrics["alarm_threshold"]) for f in folds)


def test_a_p_value_of_exactly_one_tenth_is_ruled_out_at_90_percent():
    severe = np.linspace(0.2, 0.9, 29)  # 29 severe calibration days: p = (k + 1) / 30
    band = RiskBand(0.9).fit(np.r_[severe, np.full(100, 0.05)], np.r_[np.ones(29), np.zeros(100)])
    score = (severe[1] + severe[2]) / 2  # two severe days score lower: p = 3 / 30 = 0.1 exactly
    assert band.p_severe([score])[0] == pytest.approx(0.1)
    assert band.ruled_out([score], [0.0])[0] and not band.ruled_out([severe[3]], [0.0])[0]
