"""A second site: its export in long, wide and MEDS form, read by a mapping file; external
validation, recalibration, training on the site's data and leave-one-site-out CV."""

import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from prcrs.data.example_site import write_example_site
from prcrs.data.exports import DAY, PATIENT, PatientDays, read_export
from prcrs.data.mapping import SiteMapping, load_mapping
from prcrs.errors import DataError


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The made-up site (300 patients) in three forms, and its mapping."""
    return write_example_site(tmp_path_factory.mktemp("site"), n_patients=300, seed=11)


@pytest.fixture(scope="module")
def exports(site):
    mapping = load_mapping(site["mapping"])
    return {form: read_export(site[form], mapping) for form in ("long", "wide", "meds")}


@pytest.fixture(scope="module")
def platform(platform_store):
    from prcrs.serving.registry import load_platform

    return load_platform(platform_store)


def _part(export: PatientDays, keep) -> PatientDays:
    """The export restricted to the patients `keep(number)` selects (numbered from 0 by first appearance)."""
    number = pd.factorize(export.table[PATIENT])[0]
    rows = export.table[[bool(keep(n)) for n in number]].reset_index(drop=True)
    return PatientDays(rows, export.form, export.source, [], export.synthetic, export.site)


@pytest.mark.parametrize("mapping,message", [
    ({"labz": {}}, "unknown key 'labz'"),
    ({"labs": {"IL6": "il_six"}}, "labs.IL6: unknown factor 'il_six'"),
    ({"labs": {"IL6": {"factor": "il6", "unit": "furlongs"}}}, "labs.IL6: unknown unit 'furlongs'"),
    ({"same_day": {"loudest": ["il6"]}}, "same_day.loudest must be one of"),
    ({"synthetic": "maybe"}, "synthetic='maybe' must be true or false"),
])
def test_a_bad_mapping_is_one_line_naming_the_key(mapping, message):
    with pytest.raises(DataError, match=message) as caught:
        SiteMapping.from_dict(mapping, "site.yaml")
    assert "\n" not in str(caught.value)


def test_the_three_forms_of_one_export_give_the_same_patient_days_and_predictions(exports, platform):
    """MEDS numbers subjects, the files name them: everything else is identical, predictions included."""
    frames = {form: e.cohort().frame for form, e in exports.items()}
    pd.testing.assert_frame_equal(frames["long"], frames["wide"])
    pd.testing.assert_frame_equal(frames["long"], frames["meds"])
    assert exports["long"].synthetic and exports["long"].cohort().data_source == "synthetic"
    predicted = {form: platform.predict_table(e.table.drop(columns=[PATIENT]).assign(
        patient=pd.factorize(e.table[PATIENT])[0]), (1,), explain_rows=False)[0] for form, e in exports.items()}
    columns = ["row", "patient", "day", "combination", "probability", "calibrated_probability", "risk_band"]
    assert predicted["long"]["calibrated_probability"].notna().mean() > 0.8
    for form in ("wide", "meds"):
        pd.testing.assert_frame_equal(predicted[form][columns], predicted["long"][columns])


def test_units_are_converted_by_the_unit_table_and_an_unknown_one_refused(exports, site, tmp_path):
    """The site writes CRP in mg/dL and IL-6 in ng/mL: the patient-days hold mg/L and pg/mL."""
    long = pd.read_csv(site["long"])
    first = long[(long["test"] == "LAB//CRP")].iloc[0]
    table = exports["long"].table
    day = table[(table[PATIENT] == first["subject"]) & (table[DAY] == first["day"])]
    same_day = long[(long["subject"] == first["subject"]) & (long["day"] == first["day"])
                    & (long["test"] == "LAB//CRP")]
    assert day["crp (mg/L)"].iloc[0] == pytest.approx(10 * same_day["result"].max())  # mg/dL x 10, the day's max
    long.loc[long["test"] == "LAB//IL6", "unit"] = "furlongs"
    long.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="furlongs") as caught:
        read_export(tmp_path / "bad.csv", load_mapping(site["mapping"]))
    assert "\n" not in str(caught.value)


def test_several_values_on_a_day_follow_the_stated_rule(tmp_path):
    rows = pd.DataFrame({"patient": ["a"] * 5, "day": [0, 0, 0, 0, 1],
                         "lab": ["IL-6", "IL-6", "sodium", "sodium", "CRS"], "value": ["20", "80", "140", "136", "3"]})
    rows.loc[len(rows)] = ["a", 0, "CRS", "1"]
    rows.to_csv(tmp_path / "long.csv", index=False)
    default = read_export(tmp_path / "long.csv").table
    assert default.loc[0, "il6 (pg/mL)"] == 80 and default.loc[0, "sodium (mmol/L)"] == 136  # max; last
    assert default["CRS"].tolist() == [1, 3]
    mean = read_export(tmp_path / "long.csv", SiteMapping.from_dict({"same_day": {"mean": ["il6"]}})).table
    assert mean.loc[0, "il6 (pg/mL)"] == 50
    assert any("same_day rule" in n for n in read_export(tmp_path / "long.csv").notes)


def test_factors_auto_takes_the_largest_combination_the_site_measures(exports):
    from prcrs import schema
    from prcrs.data.reading import cohort_combinations

    frame = exports["long"].cohort().frame[list(schema.FEATURE_KEYS)]
    assert cohort_combinations(frame)[0] == "23"  # cytokines drawn on too few days, group 1 half absent
    cytokines = frame.assign(il6=1.0, il10=1.0, ifn_gamma=1.0, tnf_alpha=1.0)
    assert cohort_combinations(cytokines)[0] == "4"  # the platform's order: 4 before 23
    assert cohort_combinations(cytokines.assign(bnp=1.0, prealbumin=1.0))[0] == "1234"


def test_a_site_cohort_is_not_label_imputed_so_no_value_is_masked(exports):
    cohort = exports["long"].cohort()
    assert not cohort.label_imputed and cohort.fill_values == {}
    from prcrs.preprocessing import FoldPreprocessor

    X = cohort.frame[["il6", "crp"]]
    pre = FoldPreprocessor(unimpute="sheet", fill_values=cohort.fill_values).fit(X)
    assert np.array_equal(np.isnan(pre.masker_.transform(X).to_numpy()), np.isnan(X.to_numpy()))


def test_validate_reports_what_scikit_learn_computes_and_logs_no_row_or_name(exports, platform, platform_store,
                                                                             tmp_path):
    import mlflow

    from prcrs.report.external import FILES
    from prcrs.serving.validation import validate

    validation = validate(exports["long"], platform, tmp_path / "report", n_boot=40, tracking_uri=platform_store,
                          bedside=False)
    frame = validation.predictions.frame
    for result in validation.results:
        rows = frame[frame["horizon"] == result.horizon]
        assert result.metrics["auroc"] == pytest.approx(roc_auc_score(rows["label"], rows["risk"]), abs=1e-12)
        assert result.metrics["auprc"] == pytest.approx(average_precision_score(rows["label"], rows["risk"]), abs=1e-12)
        assert result.metrics["auroc_low"] < result.metrics["auroc"] < result.metrics["auroc_high"]
        left_out = sum(validation.predictions.unusable[result.horizon].values())
        assert result.rows == len(rows) and result.rows + left_out == len(exports["long"].table)
    for name in FILES:
        assert (tmp_path / "report" / name).is_file()
    run = mlflow.search_runs(search_all_experiments=True, filter_string="tags.role = 'external_validation'",
                             output_format="list")[0]
    assert run.data.tags["data_content"] == validation.content_id and run.data.tags["data_source"] == "synthetic"
    logged = " ".join([*run.data.tags.values(), *run.data.params.values()])
    assert exports["long"].source not in logged and "S0001" not in logged  # neither the file's name nor an id
    text = (tmp_path / "report" / FILES[0]).read_text()
    assert "S0001" not in text and exports["long"].source not in text and "synthetic" in text


def test_recalibration_fixes_calibration_in_the_large_on_held_out_patients(exports, platform):
    """Fitted on a random half of the site's patients, applied to the other half: calibration-in-
    the-large within 0.1 of 0, averaged over 20 halves (one half's own value varies by about 0.5
    at this size: a few long severe courses weigh a lot), from above 0.3 before."""
    from scipy.special import expit, logit

    from prcrs.clinical.calibration import calibration_stats, choose_recalibration, fit_recalibration
    from prcrs.serving.validation import site_predictions

    frame = site_predictions(exports["long"], platform).frame
    rng = np.random.default_rng(0)
    for h in platform.horizons:
        rows = frame[frame["horizon"] == h]
        y, p, g = rows["label"].to_numpy(int), rows["risk"].to_numpy(float), rows["patient"].to_numpy()
        before, after = [], []
        for _ in range(20):
            half = np.isin(g, rng.permutation(np.unique(g))[: len(np.unique(g)) // 2])
            method, _ = choose_recalibration(p[half], y[half], g[half])
            a, b = fit_recalibration(p[half], y[half], method)
            updated = expit(a + b * logit(np.clip(p[~half], 1e-6, 1 - 1e-6)))
            before.append(calibration_stats(p[~half], y[~half])["citl"])
            after.append(calibration_stats(updated, y[~half])["citl"])
            assert roc_auc_score(y[~half], updated) == pytest.approx(roc_auc_score(y[~half], p[~half]), abs=1e-12)
        assert np.mean(before) > 0.3 and abs(np.mean(after)) <= 0.1, (h, np.mean(before), np.mean(after))


@pytest.mark.slow  # over 7 s: a second release registered
def test_recalibrate_registers_a_release_for_the_site_that_serves_the_update(exports, platform_store, tmp_path):
    from prcrs.serving.recalibration import recalibrated_release
    from prcrs.serving.registry import load_platform
    from prcrs.serving.validation import horizon_result, site_predictions

    db = tmp_path / "mlflow.db"  # a copy: the session's store keeps serving its own release
    shutil.copy(platform_store.removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    served = load_platform(uri)
    before = site_predictions(exports["long"], served).frame
    release, updates = recalibrated_release(exports["long"], served, uri)
    assert release.endswith("-example-site") and all(u.method in ("intercept", "logistic") for u in updates)
    updated = load_platform(uri)
    assert updated.release == release and updated.models[("1234", 1)].info["site"] == "example-site"
    after = site_predictions(exports["long"], updated).frame
    for h in served.horizons:
        b, a = (horizon_result(f, h, {}, n_boot=1).metrics for f in (before, after))
        assert abs(b["citl"]) > 0.3 and abs(a["citl"]) <= 0.1, (h, b["citl"], a["citl"])
        assert a["auroc"] == pytest.approx(b["auroc"], abs=1e-12)
        assert a["band_coverage"] >= 0.9  # the band refitted on the site keeps its promise there


def test_leave_one_site_out_never_puts_a_site_on_both_sides(tmp_path):
    from prcrs.data.targets import make_horizon
    from prcrs.splits import make_folds

    paths = write_example_site(tmp_path / "sites", n_patients=60, seed=3, sites=3)
    data = make_horizon(read_export(paths["long"], load_mapping(paths["mapping"])).cohort(), 1)
    folds = make_folds("patient", data.y, data.grade_target, data.patient, site=data.site)
    assert len(folds) == 3
    tested = []
    for fold in folds:
        train, test = set(data.site[fold.train]), set(data.site[fold.test])
        assert len(test) == 1 and not train & test and train | test == {"site-1", "site-2", "site-3"}
        tested += test
    assert sorted(tested) == ["site-1", "site-2", "site-3"]


def test_a_site_export_trains_through_the_experiment_path_with_its_mapping(tmp_path, monkeypatch):
    from prcrs import run_config
    from prcrs.evaluate import evaluate

    paths = write_example_site(tmp_path / "sites", n_patients=80, seed=5, sites=2)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    overrides = [f"data.path={paths['long']}", f"data.mapping={paths['mapping']}", "factors=auto", "model=logreg",
                 "cv.group=site", "cv.n_jobs=1", f"hydra.run.dir={tmp_path}"]
    result = evaluate(run_config.compose_config(overrides[:-1]), overrides[:-1])
    assert np.isfinite(result.score("mean_test_auroc")) and result.summary["n_finite_folds"] == 2


def test_rows_go_to_the_combinations_the_release_has():
    """A site's release holds only the combinations its labs allow: a full row goes to the first
    of those, not to a combination the release lacks."""
    from prcrs import schema
    from prcrs.data.reading import check_row, choose_combination

    full = set(schema.FEATURE_KEYS)
    assert choose_combination(full) == "1234" and choose_combination(full, ("23", "3", "2")) == "23"
    assert check_row({k: 1.0 for k in schema.select_features("none", "3")}, combinations=("23", "3")).combination == "3"


def _long(tmp_path, rows, **mapping):
    """A small long export from `rows` (patient, day, lab, value[, unit]) and its reading."""
    columns = ["patient", "day", "lab", "value", "unit"][:len(rows[0])]
    pd.DataFrame(rows, columns=columns).to_csv(tmp_path / "long.csv", index=False)
    return read_export(tmp_path / "long.csv", SiteMapping.from_dict(mapping))


@pytest.mark.parametrize("rows,mapping,message", [
    ([["a", 0, "IL-6", "35", "ng/mL"], ["a", 1, "IL-6", "40", ""]], {}, "gives a unit on some rows and none"),
    ([["", 0, "IL-6", "35"]], {}, "the patient column 'patient' is blank on row"),
    ([["a", 0, "IL-6", "35"], ["a", 1, "CRS", "2.5"]], {}, "CRS grade must be a whole number 0-4"),
    ([["a", 9999, "IL-6", "35"]], {}, "more than 365 days"),
    ([["a", 0, "IL-6", "35", "furlongs"]], {}, "furlongs"),
])
def test_a_doubtful_export_is_refused_in_one_line(tmp_path, rows, mapping, message):
    with pytest.raises(DataError, match=message) as caught:
        _long(tmp_path, rows, **mapping)
    assert "\n" not in str(caught.value)


def test_the_mappings_names_are_compared_as_column_names_and_bring_their_unit(tmp_path):
    """'il6' in the export is the mapping's 'IL6' (ng/mL): 0.035 ng/mL is 35 pg/mL, not 0.035."""
    read = _long(tmp_path, [["a", 0, "il6", "0.035"], ["a", 0, "Crp", "2.5"]],
                 labs={"IL6": {"factor": "il6", "unit": "ng/mL"}, "CRP": {"factor": "crp", "unit": "mg/dL"}})
    assert read.table.loc[0, "il6 (pg/mL)"] == pytest.approx(35) and read.table.loc[0, "crp (mg/L)"] == 25


def test_a_days_last_value_is_the_last_in_time_and_censored_values_are_counted(tmp_path):
    rows = pd.DataFrame({"patient": ["a"] * 3, "time": ["2026-01-02T20:00", "2026-01-02T10:00", "2026-01-03T09:00"],
                         "infusion": "2026-01-01T08:00", "lab": ["sodium", "sodium", "IL-6"],
                         "value": ["139", "131", "<5"]})
    rows.to_csv(tmp_path / "timed.csv", index=False)
    read = read_export(tmp_path / "timed.csv", SiteMapping.from_dict({"time": "time", "infusion": "infusion"}))
    assert read.table["Relative date"].tolist() == [1, 2] and read.table.loc[0, "sodium (mmol/L)"] == 139  # 20:00
    assert any("1 censored value(s) read at their bound" in n for n in read.notes)
    rows.assign(time="02/01/2026 10:00").to_csv(tmp_path / "dmy.csv", index=False)
    with pytest.raises(DataError, match="not a date-time in ISO8601.*time_format"):
        read_export(tmp_path / "dmy.csv", SiteMapping.from_dict({"time": "time", "infusion": "infusion"}))


def test_two_wide_columns_for_one_factor_are_refused(tmp_path):
    pd.DataFrame({"patient": ["a"], "day": [0], "IL-6": [30], "IL6 (ng/mL)": [0.03]}).to_csv(tmp_path / "w.csv",
                                                                                            index=False)
    with pytest.raises(DataError, match="both give il6"):
        read_export(tmp_path / "w.csv")


def test_validate_logs_only_the_files_it_writes(exports, platform, platform_store, tmp_path):
    import mlflow

    from prcrs.serving.validation import validate

    out = tmp_path / "report"
    out.mkdir()
    (out / "S0001_export.csv").write_text("a file the user keeps in the same folder\n")
    validate(exports["wide"], platform, out, n_boot=5, tracking_uri=platform_store, bedside=False)
    run = mlflow.search_runs(search_all_experiments=True, filter_string="tags.data_form = 'wide'",
                             output_format="list")[0]
    logged = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "report")]
    assert "report/external_validation.md" in logged and not any("S0001" in p for p in logged)


def test_too_few_severe_patients_keep_the_release_calibration_said(exports, platform):
    from prcrs.serving.recalibration import site_updates

    few = _part(exports["long"], lambda n: n < 8)
    updates = site_updates(few, platform)
    assert all(u.method is None and "patients with a severe day" in u.reason for u in updates)
