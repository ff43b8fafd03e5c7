"""History features: only a patient's days up to t, by day (not row order), masked first."""

import numpy as np
import pandas as pd
import pytest

from prcrs import engine, run_config, schema
from prcrs.data.cohort import Cohort
from prcrs.data.history import HistorySpec, history_features
from prcrs.data.synthetic import synthetic_cart
from prcrs.data.targets import make_horizon

ALL = HistorySpec(window=2, changes=True, extremes=True, since_infusion=True, baseline=True)


def _keyed(frame: pd.DataFrame, spec: HistorySpec = ALL) -> pd.DataFrame:
    out = history_features(frame, schema.FEATURE_KEYS, spec)
    return out.set_index(pd.MultiIndex.from_arrays([frame["patient"].to_numpy(), frame["day"].to_numpy()]))


def test_day_t_features_do_not_change_when_later_days_are_deleted_or_shuffled():
    frame = synthetic_cart(seed=0, n_patients=30).frame
    full = _keyed(frame)
    rng = np.random.default_rng(0)
    for patient in rng.choice(frame["patient"].unique(), 5, replace=False):
        days = frame.loc[frame["patient"] == patient, "day"].to_numpy()
        t = int(rng.choice(days[:-1]))
        later = (frame["patient"] == patient) & (frame["day"] > t)
        shuffled = frame.copy()
        shuffled.loc[later, schema.FEATURE_KEYS] = rng.permutation(shuffled.loc[later, schema.FEATURE_KEYS].to_numpy())
        shuffled = shuffled.sample(frac=1, random_state=1)  # row order means nothing either
        for changed in (frame[~later], shuffled):
            got = _keyed(changed)
            pd.testing.assert_series_equal(got.loc[(patient, t)], full.loc[(patient, t)])


def test_no_grade_enters():
    frame = synthetic_cart(seed=0, n_patients=20).frame
    other = frame.assign(grade=4 - frame["grade"])
    pd.testing.assert_frame_equal(history_features(frame, schema.FEATURE_KEYS, ALL),
                                  history_features(other, schema.FEATURE_KEYS, ALL))


def test_baseline_covariates_absent_from_the_file_are_one_line():
    from prcrs.errors import DataError

    frame = synthetic_cart(seed=0, n_patients=5).frame.drop(columns=["dose"])
    with pytest.raises(DataError, match="needs the columns dose"):
        history_features(frame, schema.FEATURE_KEYS, ALL)
    assert len(history_features(frame, schema.FEATURE_KEYS, HistorySpec(window=1)))  # lags need no covariates


def test_gaps_in_the_record_are_days_not_rows():
    frame = pd.DataFrame({"patient": [0, 0, 0, 0], "day": [0, 1, 3, 4], "il6": [1.0, 2.0, 8.0, 4.0]})
    out = history_features(frame, ("il6",), HistorySpec(window=2, changes=True, extremes=True))
    assert out["il6@lag1"].isna().tolist() == [True, False, True, False]  # day 3: day 2 was not recorded
    assert out["il6@lag2"].tolist()[2] == 2.0  # day 3 - 2 = day 1
    assert np.isnan(out["il6@change"][2]) and out["il6@change"][3] == pytest.approx(np.log1p(4) - np.log1p(8))
    assert out["il6@max"].tolist() == [1.0, 2.0, 8.0, 8.0] and out["il6@min"].tolist() == [1.0, 1.0, 1.0, 1.0]


def test_the_honest_protocol_masks_fill_values_before_any_history_is_computed():
    cohort = synthetic_cart(seed=0, n_patients=80)  # it carries the published fingerprint (label_fill)
    data = make_horizon(cohort, 1, schema.FEATURE_KEYS, ALL, mask_history=True)
    leaky = make_horizon(cohort, 1, schema.FEATURE_KEYS, ALL, mask_history=False)
    found = 0
    for key, fills in cohort.fill_values.items():
        for suffix in ("@lag1", "@lag2", "@max", "@min"):
            assert not data.X[key + suffix].isin(fills).any(), key + suffix
            found += int(leaky.X[key + suffix].isin(fills).sum())
    assert found > 0  # without masking they are there: the check can fail


def _trend_only_cohort(n_patients: int = 300, seed: int = 0) -> Cohort:
    """Two days per patient. Day 1 is severe iff IL-6 rose from day 0 to day 1; day 1's IL-6 itself
    (and every other value) is independent of it, and day 0's grade is a coin."""
    rng = np.random.default_rng(seed)
    base = synthetic_cart(seed=seed, n_patients=n_patients).frame
    frame = base[base["day"] <= 1].copy()
    frame = frame[frame.groupby("patient")["day"].transform("size") == 2].copy()  # days 0 and 1 both there
    n_patients = frame["patient"].nunique()
    frame[list(schema.FEATURE_KEYS)] = rng.normal(10, 1, (len(frame), len(schema.FEATURE_KEYS)))
    rose = rng.random(n_patients) < 0.5
    for i, patient in enumerate(frame["patient"].unique()):
        rows = frame.index[frame["patient"] == patient]
        today = frame.loc[rows[1], "il6"]
        frame.loc[rows[0], "il6"] = today - (2.0 if rose[i] else -2.0)
        frame.loc[rows, "grade"] = [3 if rng.random() < 0.5 else 0, 3 if rose[i] else 0]
    return Cohort(frame.reset_index(drop=True), "cart", "synthetic")


def test_only_history_models_see_a_signal_carried_by_the_trend_alone():
    cohort = _trend_only_cohort()
    cfg = run_config.compose_config(["data=synthetic", "model=hgb", "cv.folds=3", "cv.n_jobs=1"])
    scores = {}
    for name, spec in (("none", HistorySpec()), ("lags", HistorySpec(window=1, changes=True))):
        data = make_horizon(cohort, 0, schema.FEATURE_KEYS, spec, mask_history=True)
        run = run_config.run_spec(cfg, data.fill_values)
        scores[name] = engine.cross_validate(run, data).summary()["mean_test_auroc"]
    assert scores["none"] < 0.6 and scores["lags"] > scores["none"] + 0.15, scores


@pytest.mark.parametrize("override,message", [("history.window=9", "history.window=9 must be"),
                                              ("history.changes=maybe", "history.changes=maybe must be true"),
                                              ("+history.future=true", "history.future is not a history option"),
                                              ("history=lags protocol.unimpute=fold", "history needs"),
                                              ("history=lags transfer=covid", "only a sequence network"),
                                              ("model=gru history=lags", "reads whole days"),
                                              ("model=rcmnet history=days model.missing_indicators=true",
                                               "reads whole days")])
def test_bad_history_options_are_one_line_errors(override, message):
    from prcrs.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        run_config.history_spec(run_config.compose_config(override.split()))


def test_history_runs_hash_apart_and_one_day_runs_keep_their_old_hash():
    cohort = synthetic_cart(seed=0, n_patients=30)
    one_day = run_config.compose_config(["data=synthetic"])
    base = run_config.config_hash(one_day, cohort)
    from omegaconf import open_dict

    with open_dict(one_day):
        del one_day["history"]  # a config from before the group
    assert run_config.config_hash(one_day, cohort) == base
    assert run_config.config_hash(run_config.compose_config(["data=synthetic", "history=lags"]), cohort) != base


@pytest.mark.slow  # over 7 s: the inner loop stays under 3 minutes
def test_every_model_fits_history_features():
    cohort = synthetic_cart(seed=0, n_patients=40)
    for model in ("logreg", "cnn"):
        cfg = run_config.compose_config(["data=synthetic", f"model={model}", "history=trends", "cv.folds=2",
                                     "cv.n_jobs=1", "trainer.max_epochs=1", "cv.explain_rows=20"])
        data = run_config.horizon_data(cfg, cohort)
        assert data.X.shape[1] > len(schema.FEATURE_KEYS) * 4
        result = engine.cross_validate(run_config.run_spec(cfg, data.fill_values), data)
        assert np.isfinite(result.oof["probability"]).all()


def test_a_sequence_network_takes_covid_pretraining_on_single_days(tmp_path):
    """The per-day encoder learns from single COVID-19 samples (a window of one day); it is what
    the published freezing policy keeps fixed."""
    cfg = run_config.compose_config(["data=synthetic", "model=gru", "history=days", "transfer=covid", "cv.folds=2",
                                 "cv.n_jobs=1", "trainer.max_epochs=1", f"paths.cache_dir={tmp_path}"])
    data = run_config.horizon_data(cfg, synthetic_cart(seed=0, n_patients=40))
    model = engine.fit_rows(run_config.run_spec(cfg, data.fill_values), data, np.arange(len(data)), 0,
                            run_config.load_covid_for(cfg)).model
    frozen = {n for n, p in model.module_.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("backbone.embedding.") for n in frozen)
    assert list(tmp_path.glob("pretrain/*.pt"))
