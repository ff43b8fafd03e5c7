import numpy as np
import pandas as pd
import pytest

from prcrs import schema, units
from prcrs.data import load_cart, load_cohort, load_covid
from prcrs.data.cohort import segment_patients
from prcrs.data.synthetic import synthetic_cart, to_sheet
from prcrs.data.targets import make_horizon
from prcrs.errors import DataError

# --- real sheets (skipped without PRCRS_DATA_DIR) -------------------------------------------

def test_real_cart_has_202_patients_1496_days_72_severe_days_45_severe_patients(real_cart):
    f = real_cart.frame
    assert real_cart.n_patients == 202 and len(f) == 1496
    severe = f["grade"] >= 3
    assert severe.sum() == 72 and f.loc[severe, "patient"].nunique() == 45
    assert list(f.columns[-43:-1]) == list(schema.FEATURE_KEYS)


def test_real_covid_has_1801_subjects_2318_samples_in_cart_units(real_covid):
    f = real_covid.frame
    assert real_covid.n_patients == 1801 and len(f) == 2318
    assert set(f["severity"]) == {0, 1, 2}
    assert f[list(schema.COVID_SHARED)].notna().all().all()
    others = [k for k in schema.FEATURE_KEYS if k not in schema.COVID_SHARED]
    assert f[others].isna().all().all()
    assert 1.5 < f["calcium"].median() < 3  # mmol/L, not mg/dL
    assert 20 < f["albumin"].median() < 50  # g/L, not g/dL


def test_real_alignment_every_shared_column_consistent_only_after_conversion(real_dir, real_cart):
    from prcrs.data.alignment import alignment_report

    report = alignment_report(real_cart, load_covid(real_dir / "COVID-19.xlsx", convert_units=False))
    assert len(report) == 27 and report["consistent"].all()
    for key in units.COVID_UNITS:
        assert report.at[key, "in_range_raw"] < 0.5, key  # unconverted US units would not fit


def test_lookup_order_prefers_data_path_then_env(real_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("PRCRS_DATA_DIR", str(real_dir))
    assert load_cohort("cart").source.endswith("CAR-T.xlsx")
    with pytest.raises(DataError, match="no CAR-T.xlsx"):
        load_cohort("cart", path=tmp_path)


# --- loaders on files written from the synthetic cohort -------------------------------------

@pytest.mark.parametrize("suffix", [".xlsx", ".csv", ".parquet"])
def test_files_with_published_column_names_load(synthetic, tmp_path, suffix):
    sheet = to_sheet(synthetic.frame)
    path = tmp_path / f"cart{suffix}"
    if suffix == ".xlsx":
        with pd.ExcelWriter(path) as w:  # a title row above the header, as published
            pd.DataFrame([["CAR-T patient data"]]).to_excel(w, header=False, index=False)
            sheet.to_excel(w, startrow=1, index=False)
    elif suffix == ".csv":
        sheet.to_csv(path, index=False)
    else:
        sheet.to_parquet(path)
    loaded = load_cart(path)
    assert loaded.n_patients == synthetic.n_patients
    pd.testing.assert_frame_equal(loaded.frame[list(schema.FEATURE_KEYS)],
                                  synthetic.frame[list(schema.FEATURE_KEYS)], check_dtype=False)
    assert (loaded.frame["grade"].to_numpy() == synthetic.frame["grade"].to_numpy()).all()


def test_project_column_names_are_accepted(synthetic, tmp_path):
    path = tmp_path / "own.csv"
    synthetic.frame.to_csv(path, index=False)
    assert load_cart(path).n_patients == synthetic.n_patients


def test_an_explicit_patient_column_sorts_each_patients_days(synthetic, tmp_path):
    sheet = to_sheet(synthetic.frame).assign(patient=synthetic.frame["patient"].map(lambda p: f"P{p:03d}"))
    path = tmp_path / "shuffled.csv"
    sheet.sample(frac=1, random_state=0).to_csv(path, index=False)
    loaded = load_cart(path)
    assert loaded.n_patients == synthetic.n_patients and loaded.frame.attrs["patients_from"] == "patient column"
    assert (loaded.frame.groupby("patient")["day"].diff().dropna() > 0).all()
    shuffled = tmp_path / "no_id.csv"
    sheet.drop(columns="patient").sample(frac=1, random_state=0).to_csv(shuffled, index=False)
    with pytest.raises(DataError, match="add a patient column"):  # not 1000 false patients
        load_cart(shuffled)


def test_two_columns_for_one_factor_are_refused(synthetic, tmp_path):
    sheet = to_sheet(synthetic.frame)
    path = tmp_path / "twice.csv"
    sheet.assign(il6=sheet["IL6"] * 2).to_csv(path, index=False)
    with pytest.raises(DataError, match="columns 'IL6' and 'il6' both give il6"):
        load_cart(path)


def test_patient_starts_where_relative_date_does_not_increase():
    assert segment_patients(pd.Series([0, 1, 2, 0, 1, 5, 0])).tolist() == [0, 0, 0, 1, 1, 1, 2]
    for days in ([0, 1, 1, 2], [0, 2, 1, 3]):  # a repeated day, unsorted days: refused, not cut into patients
        with pytest.raises(DataError, match="row 2.*start at day 1.*add a patient column"):
            segment_patients(pd.Series(days, index=range(0, 4)), "f.csv")


def test_horizon_pairs_day_t_with_grade_t_plus_h():
    frame = synthetic_cart(n_patients=3, seed=1).frame
    cohort = type(synthetic_cart(n_patients=1))(frame, "cart", "synthetic")
    for h in range(4):
        d = make_horizon(cohort, h)
        lengths = frame.groupby("patient").size()
        assert len(d) == sum(max(n - h, 0) for n in lengths)  # each patient's last h days drop out
        for i in range(len(d)):
            later = frame[(frame.patient == d.patient[i]) & (frame.day == d.day[i] + h)]
            today = frame[(frame.patient == d.patient[i]) & (frame.day == d.day[i])]
            np.testing.assert_array_equal(d.X.iloc[i].to_numpy(), today[list(d.X.columns)].to_numpy()[0])  # day t
            assert d.grade_today[i] == today["grade"].item()
            assert d.grade_target[i] == later["grade"].item()
            assert d.y[i] == int(later["grade"].item() >= 3)


def test_synthetic_cohort_shape_and_signal():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from prcrs.preprocessing import FoldPreprocessor
    from prcrs.splits import make_folds

    cohort = synthetic_cart(seed=3)
    f = cohort.frame
    sizes = f.groupby("patient").size()
    assert sizes.min() >= 1 and sizes.max() <= 18
    assert 0.03 < (f["grade"] >= 3).mean() < 0.08
    assert 0.05 < f[list(schema.FEATURE_KEYS)].isna().to_numpy().mean() < 0.3
    assert synthetic_cart(seed=3).frame.equals(f)  # seeded
    d = make_horizon(cohort, 1)
    fold = make_folds("patient", d.y, d.grade_target, d.patient, folds=3)[0]
    pre = FoldPreprocessor().fit(d.X.iloc[fold.train], d.grade_today[fold.train])
    model = LogisticRegression(max_iter=2000).fit(pre.transform(d.X.iloc[fold.train]), d.y[fold.train])
    auc = roc_auc_score(d.y[fold.test], model.predict_proba(pre.transform(d.X.iloc[fold.test]))[:, 1])
    assert auc > 0.8


def test_without_real_data_the_synthetic_cohort_is_used_with_a_warning():
    with pytest.warns(UserWarning, match="synthetic"):
        cohort = load_cohort("cart")
    assert cohort.source == "synthetic" and cohort.data_source == "synthetic"


# --- bad input: one line naming what is wrong ------------------------------------------------

def _write(tmp_path, sheet: pd.DataFrame, name="bad.csv"):
    path = tmp_path / name
    sheet.to_csv(path, index=False)
    return path


@pytest.fixture
def small_sheet():
    return to_sheet(synthetic_cart(n_patients=4, seed=2).frame)


def _one_line_error(path, match):
    with pytest.raises(DataError, match=match) as info:
        load_cart(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_file_is_named(tmp_path):
    _one_line_error(tmp_path / "nope.xlsx", "not found.*nope.xlsx")


def test_wrong_sheet_layout(tmp_path):
    path = tmp_path / "layout.csv"
    path.write_text("a,b,c\n1,2,3\n")
    _one_line_error(path, "wrong sheet layout")


def test_missing_columns_are_listed(tmp_path, small_sheet):
    msg = _one_line_error(_write(tmp_path, small_sheet.drop(columns=["IL6", "ferritin"])), "missing required")
    assert "IL6" in msg and "ferritin" in msg


def test_non_numeric_cell_gives_row_and_column(tmp_path, small_sheet):
    sheet = small_sheet.astype(object)
    sheet.loc[2, "IL6"] = "high"
    _one_line_error(_write(tmp_path, sheet), r"non-numeric value 'high' in column 'IL6' at row 4")


def test_negative_lab_value(tmp_path, small_sheet):
    sheet = small_sheet.copy()
    sheet.loc[1, "ferritin"] = -3
    _one_line_error(_write(tmp_path, sheet), r"negative value -3.0 in column 'ferritin' at row 3")


def test_empty_patient(tmp_path, small_sheet):
    sheet = small_sheet.copy()
    first = sheet.index[: (sheet["Relative date"].diff().fillna(-1) <= 0).to_numpy()[1:].argmax() + 1]
    sheet.loc[first, [f.column for f in schema.FEATURES]] = np.nan
    _one_line_error(_write(tmp_path, sheet), "empty patient")


def test_horizon_beyond_the_data(synthetic):
    with pytest.raises(DataError, match="beyond the data"):
        make_horizon(synthetic, 30)
    with pytest.raises(DataError, match="must be a whole number of days"):
        make_horizon(synthetic, -1)


def test_cli_prints_one_line_error_and_exit_2(tmp_path, capsys):
    from prcrs.cli import main

    assert main(["audit", "--data", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


@pytest.mark.slow  # over 7 s: the inner loop stays under 3 minutes
def test_cli_audits_a_cart_file_by_path(tmp_path, capsys):
    import json

    from prcrs.cli import main

    synthetic = synthetic_cart(n_patients=80, seed=0)
    path = tmp_path / "cart.csv"
    to_sheet(synthetic.frame).to_csv(path, index=False)
    assert main(["audit", "--data", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "cart" and report["patients"] == synthetic.n_patients
    assert list(report["leak_probe"]) == ["raw sheet", "paper protocol", "honest protocol"]
    assert all(0.3 < row["auroc"] < 0.7 for row in report["leak_probe"].values())  # no label fill here


def test_cli_audits_the_covid_file_by_path(real_dir, capsys):
    import json

    from prcrs.cli import main

    assert main(["audit", "--data", str(real_dir / "COVID-19.xlsx"), "--json", "--no-probe"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["kind"], report["patients"], report["days"]) == ("covid", 1801, 2318)


def test_a_cart_file_path_finds_the_covid_sheet_beside_it(real_dir):
    assert load_cohort("covid", real_dir / "CAR-T.xlsx").kind == "covid"
    cart = load_cohort("cart", real_dir / "CAR-T.xlsx")
    assert cart.kind == "cart" and cart.content_id == load_cohort("cart", real_dir).content_id
