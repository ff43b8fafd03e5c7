import json

import numpy as np
import pandas as pd
import pytest

from prcrs import schema
from prcrs.audit import audit
from prcrs.data.fingerprint import FingerprintMasker, find_fill_values
from prcrs.data.targets import make_horizon
from prcrs.preprocessing import FoldPreprocessor
from prcrs.splits import inner_split, make_folds


def test_real_fingerprint_matches_the_published_sheet(real_cart):
    fills = {(f.column, f.grade): f for f in find_fill_values(real_cart.frame[list(schema.FEATURE_KEYS)],
                                                             real_cart.frame["grade"].to_numpy())}
    assert (fills["d_dimer", 0].value, fills["d_dimer", 0].count, fills["d_dimer", 0].grade_days) == (0.43, 630, 931)
    assert (fills["d_dimer", 3].value, fills["d_dimer", 3].count, fills["d_dimer", 3].grade_days) == (4.29, 41, 61)
    assert ("tumor_burden", 0) not in fills  # a floor at 0 is not a median fill


def test_cli_audit_json_on_real_data(real_dir, monkeypatch, capsys):
    from prcrs.cli import main

    monkeypatch.setenv("PRCRS_DATA_DIR", str(real_dir))
    assert main(["audit", "--data", "cart", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["patients"], report["days"], report["severe_days"], report["severe_patients"]) == (202, 1496, 72, 45)
    assert 0.2 < report["fingerprint_fraction"] < 0.5


def test_synthetic_cohort_has_no_fingerprint(synthetic):
    report = audit(synthetic)
    assert report["fingerprint_fraction"] < 0.005 and report["data_source"] == "synthetic"


def _leaky(n=400, seed=0):
    """Rows whose missing cells were filled with the grade's median: the fingerprint."""
    rng = np.random.default_rng(seed)
    grade = rng.integers(0, 4, n)
    x = rng.lognormal(grade * 0.3, 1.0, n).round(2)
    fill = {g: float(np.median(x[grade == g])) for g in range(4)}
    missing = rng.random(n) < 0.5
    x[missing] = [fill[g] for g in grade[missing]]
    return pd.DataFrame({"il6": x}), grade, missing, fill


def test_masker_finds_fill_values_and_masks_them_without_labels():
    X, grade, missing, fill = _leaky()
    masker = FingerprintMasker().fit(X, grade)
    assert sorted(masker.values_["il6"]) == sorted(fill.values())
    masked = masker.transform(X)
    assert masked["il6"].isna().to_numpy()[missing].all()  # every filled cell masked
    assert masked["il6"].isna().sum() <= missing.sum() + 5  # and hardly any real value


def test_preprocessor_learns_from_fit_rows_and_transforms_others_unchanged():
    X, grade, _, _ = _leaky()
    train, test = np.arange(200), np.arange(200, 400)
    pre = FoldPreprocessor().fit(X.iloc[train], grade[train])
    before = pre.transform(X.iloc[test])
    pre.transform(X.iloc[test] * 1000)  # transforming other rows must not refit anything
    np.testing.assert_array_equal(pre.transform(X.iloc[test]), before)
    z = pre.transform(X.iloc[train])
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-3
    both = FoldPreprocessor(missing_indicators=True).fit(X.iloc[train], grade[train]).transform(X.iloc[test])
    assert both.shape == (200, 2) and set(np.unique(both[:, 1])) <= {0.0, 1.0}
    assert not np.isnan(both).any()


def test_raw_variant_passes_values_unchanged():
    X, grade, _, _ = _leaky()
    z = FoldPreprocessor(raw=True, mask_fingerprint=False).fit(X, grade).transform(X)
    np.testing.assert_allclose(z[:, 0], X["il6"].to_numpy(), rtol=1e-6)


def test_patient_folds_never_share_patients_and_row_folds_do(synthetic):
    d = make_horizon(synthetic, 1)
    for fold in make_folds("patient", d.y, d.grade_target, d.patient, folds=5, repeats=2, seed=4):
        assert not set(d.patient[fold.train]) & set(d.patient[fold.test])
        fit, val = inner_split(fold.train, d.grade_target, d.patient, seed=1)
        assert not set(d.patient[fit]) & set(d.patient[val])
        assert set(fit) | set(val) == set(fold.train) and not set(val) & set(fold.test)
    row_folds = make_folds("row", d.y, d.grade_target, d.patient, folds=5)
    assert any(set(d.patient[f.train]) & set(d.patient[f.test]) for f in row_folds)
    tests = np.concatenate([f.test for f in row_folds])
    assert sorted(tests) == list(range(len(d)))


def test_folds_are_seeded(synthetic):
    d = make_horizon(synthetic, 0)
    a = make_folds("patient", d.y, d.grade_target, d.patient, seed=7)
    b = make_folds("patient", d.y, d.grade_target, d.patient, seed=7)
    c = make_folds("patient", d.y, d.grade_target, d.patient, seed=8)
    assert all((x.test == y.test).all() for x, y in zip(a, b, strict=False))
    assert any(len(x.test) != len(z.test) or (x.test != z.test).any() for x, z in zip(a, c, strict=False))


def test_bad_split_options_are_named(synthetic):
    from prcrs.errors import ConfigError

    d = make_horizon(synthetic, 0)
    with pytest.raises(ConfigError, match="unknown split"):
        make_folds("day", d.y, d.grade_target, d.patient)
    with pytest.raises(ConfigError, match="cannot make"):
        make_folds("patient", d.y, d.grade_target, d.patient, folds=1000)
