import pytest

from prcrs import schema, units


def test_42_factors_in_four_groups_of_9_10_16_7():
    assert len(schema.FEATURES) == 42 == len(set(schema.FEATURE_KEYS))
    assert [len(schema.group_features(g)) for g in (1, 2, 3, 4)] == [9, 10, 16, 7]
    assert {"d_dimer", "procalcitonin", "bnp", "alpha_hbdh", "prealbumin", "tumor_burden", "pt", "aptt",
            "fibrinogen"} == set(schema.group_features(1))
    assert set(schema.group_features(4)) == {"il2", "il4", "il6", "il10", "tnf_alpha", "ifn_gamma", "il17a"}
    for f in schema.FEATURES:
        assert f.low < f.high and f.unit


def test_ablations_and_combinations_derive_from_groups():
    assert len(schema.select_features("del_cytokines")) == 35
    assert len(schema.select_features("del_biochemical")) == 26
    assert len(schema.select_features("del_blood_routine")) == 32
    assert len(schema.select_features("del_clotting")) == 33
    assert schema.select_features(factors="4") == schema.group_features(4)
    assert schema.select_features(factors="23") == schema.group_features(2, 3)
    assert [len(schema.select_features(factors=c)) for c in schema.COMBINATIONS] == [42, 35, 7, 26, 16, 10]


@pytest.mark.parametrize("bad", [dict(ablation="del_everything"), dict(factors="15"), dict(factors="x")])
def test_unknown_ablation_or_combination_is_named(bad):
    with pytest.raises(ValueError, match="unknown|digits"):
        schema.select_features(**bad)


def test_covid_shared_columns():
    assert len(schema.COVID_SHARED) == 27
    assert set(units.COVID_UNITS) <= set(schema.COVID_SHARED)
    assert not set(schema.COVID_EXCLUDED) & set(schema.COVID_SHARED)
