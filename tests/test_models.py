import inspect
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from prcrs import paths, schema
from prcrs.data.synthetic import synthetic_covid
from prcrs.data.targets import make_horizon
from prcrs.metrics import fold_metrics
from prcrs.models import backbones as B
from prcrs.models.deep import DeepModel, freeze
from prcrs.models.estimators import CytokineLogistic, MEasix
from prcrs.models.transfer import Pretraining
from prcrs.preprocessing import FoldPreprocessor
from prcrs.run_config import build_estimator, compose_config
from prcrs.splits import inner_split, make_folds


def deep(name: str, fill_values: dict | None = None, **params) -> DeepModel:
    """The network `model=<name>` as the config builds it (the recipe production trains), with
    `params` set on it."""
    return build_estimator(compose_config([f"model={name}"]), fill_values or {}).set_params(
        **params)


def fit_validated(model, X, y, grade, fit, val):
    """`model` fitted on the rows `fit`, validating (early stopping) on the rows `val`: its
    `train_split` keeps them apart as given."""
    rows = np.concatenate([fit, val])
    held_out = lambda strata, groups: (np.arange(len(fit)), np.arange(len(fit), len(rows)))  # noqa: E731
    return model.set_params(train_split=held_out).fit(X.iloc[rows], y[rows], None if grade is None else grade[rows])


NETWORKS = {"cnn": B.CNN, "transformer": B.TokenTransformer, "squeezeformer": B.Squeezeformer,
            "prcrs": B.PrCRS, "prcrs_paper": B.PrCRSPaper}


@pytest.fixture(scope="module")
def split(synthetic):
    d = make_horizon(synthetic, 0)
    fold = make_folds("patient", d.y, d.grade_target, d.patient, folds=4, seed=0)[0]
    fit, val = inner_split(fold.train, d.grade_target, d.patient)
    return d, fit, val, fold.test


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("p", [7, 42])
def test_every_network_maps_any_feature_count_to_logits(name, p):
    net = NETWORKS[name](n_features=p, n_classes=2).eval()
    x, missing = torch.randn(5, p), torch.zeros(5, p)
    assert net(x, missing).shape == (5, 2)


def test_cnn_convolves_along_features_not_across_the_batch():
    net = B.CNN(n_features=10).eval()
    x = torch.randn(6, 10)
    alone = net(x[:1])
    x[1:] = 100.0  # other rows of the batch must not change row 0's output
    torch.testing.assert_close(net(x)[:1], alone)


def test_prcrs_paper_is_the_published_network():
    net = B.PrCRSPaper(n_features=42, n_classes=2)
    seq = net.embedding(torch.randn(3, 1, 42))
    assert seq.shape == (3, 19, 64)
    assert net.embedding.conv.kernel_size == (5,) and net.embedding.conv.stride == (2,)
    assert net.block.modules_[0].attn.num_heads == 1 and net.block.modules_[2].depthwise.kernel_size == (31,)
    assert (net.fc1.in_features, net.fc1.out_features, net.fc2.in_features) == (64, 16, 16)


@pytest.mark.parametrize("kernel,stride,length", [(31, 1, 19), (15, 1, 40), (3, 2, 21), (7, 1, 5)])
def test_a_banded_depthwise_convolution_is_the_convolution(kernel, stride, length):
    from prcrs.models.blocks import banded_depthwise

    torch.manual_seed(1)
    conv = torch.nn.Conv1d(8, 8, kernel, stride=stride, padding=kernel // 2, groups=8)
    x = torch.randn(4, 8, length, requires_grad=True)
    ours, theirs = banded_depthwise(conv, x), conv(x)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    grads = [torch.autograd.grad(y.sum(), (x, conv.weight)) for y in (ours, theirs)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_forest_predicted_tree_by_tree_gives_scikit_learns_probabilities(n_jobs):
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    from prcrs.models.forests import FEW_ROWS, forest_proba

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 6)), rng.integers(0, 2, 200)
    X[::5, 0] = np.nan  # trees send missing values down a side of their own
    for kind in (RandomForestClassifier, ExtraTreesClassifier):
        forest = kind(30, n_jobs=n_jobs, random_state=0).fit(X, y)
        for rows in (X[:1], X[:FEW_ROWS], X[:FEW_ROWS + 1], X[1:2]):  # every tree at once, then tree by tree
            if n_jobs == 1:  # summed in the same order: the same numbers
                np.testing.assert_array_equal(forest_proba(forest, rows), forest.predict_proba(rows))
            else:  # threads may sum the trees in another order
                np.testing.assert_allclose(forest_proba(forest, rows), forest.predict_proba(rows), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="features"):  # scikit-learn's own check of the input's width
        forest_proba(forest, X[:3, :5])
    forest.fit(X, 1 - y)  # the same forest fitted again: its new trees predict, not those stacked before
    np.testing.assert_array_equal(forest_proba(forest, X[:1]), forest.predict_proba(X[:1]))
    grown = RandomForestClassifier(5, warm_start=True, random_state=0).fit(X, y)
    forest_proba(grown, X[:1])
    grown.set_params(n_estimators=10).fit(X, y)  # warm start: five more trees in the same list
    np.testing.assert_array_equal(forest_proba(grown, X[:1]), grown.predict_proba(X[:1]))


def test_a_forest_predicts_blocks_of_rows_on_threads_with_the_same_numbers(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.ensemble import RandomForestClassifier

    from prcrs.models import forests
    from prcrs.models.threads import PREDICT_THREADS, prediction_threads

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(300, 4)), rng.integers(0, 2, 300)
    forest = RandomForestClassifier(20, random_state=0).fit(X, y)
    Z = rng.normal(size=(1000, 4))
    expected = forest.predict_proba(Z)
    pools = []

    class Spy(ThreadPoolExecutor):
        def map(self, fn, *iterables, **options):
            pools.append((self._max_workers, len(iterables[0])))
            return super().map(fn, *iterables, **options)

    monkeypatch.setattr(forests, "BLOCK_ROWS", 64)
    monkeypatch.setattr(forests, "ThreadPoolExecutor", Spy)
    np.testing.assert_array_equal(forests.forest_proba(forest, Z), expected)
    assert pools == []  # one thread by default: the fold workers already share the cores
    with prediction_threads(2):
        np.testing.assert_array_equal(forests.forest_proba(forest, Z), expected)
    assert pools == [(2, 16)] and PREDICT_THREADS.get() == 1  # 16 blocks of 64 rows on 2 threads


def test_the_cpus_counted_are_those_the_process_may_use(monkeypatch):
    """A container or `taskset` may allow fewer CPUs than the machine has: the platform's threads
    and the fold workers' threads follow the affinity."""
    import os

    from prcrs.models.threads import usable_cpus

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert usable_cpus() == 1
    monkeypatch.delattr(os, "sched_getaffinity")  # a system without affinity: the machine's count
    assert usable_cpus() == 64


def test_prcrs_has_a_unet_reduction_and_skip():
    net = B.PrCRS(n_features=42)
    seen = {}
    net.middle_blocks.register_forward_hook(lambda m, i, o: seen.update(middle=o.shape))
    net.up_blocks.register_forward_hook(lambda m, i, o: seen.update(up=o.shape))
    net(torch.randn(2, 42))
    assert seen["middle"][1] == 11 and seen["up"][1] == 21


def _train_loss(module, pre, X, y) -> float:
    x, m = (torch.from_numpy(a) for a in pre.transform_with_missing(X))
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(module.eval()(x, m), torch.from_numpy(y)).item()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in ("transformer", "squeezeformer", "prcrs", "prcrs_paper")
                                  else n for n in NETWORKS])  # those over 4 s: the inner loop stays under 3 min
def test_each_network_learns_on_the_synthetic_cohort(name, split):
    """Training loss falls and held-out AUROC is well above chance, for every network."""
    d, fit, val, test = split
    model = deep(name, d.fill_values, max_epochs=8, patience=8)
    fit_validated(model, d.X, d.y, d.grade_today, fit, val)
    untrained = model.build(len(schema.FEATURE_KEYS))  # same seed, same initial weights
    before = _train_loss(untrained, model.preprocessor_, d.X.iloc[fit], d.y[fit])
    after = _train_loss(model.module_, model.preprocessor_, d.X.iloc[fit], d.y[fit])
    assert after < 0.7 * before, (before, after)
    assert {"train/loss", "val/loss"} <= set(model.trainer_.callback_metrics)
    auroc = fold_metrics(d.y[test], model.predict_proba(d.X.iloc[test])[:, 1], 0.5)["auroc"]
    assert auroc > 0.7, auroc
    assert model.n_parameters > 0


def test_same_seed_same_predictions(split):
    d, fit, val, test = split

    def run(seed):
        m = deep("squeezeformer", d.fill_values, max_epochs=1, min_epochs=1, seed=seed)
        fit_validated(m, d.X, d.y, d.grade_today, fit, val)
        return m.predict_proba(d.X.iloc[test])[:, 1]

    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", ["logreg", "hgb", "forest", "tree", "measix", "teachey"])
def test_tabular_baselines_output_probabilities_above_chance(name, split):
    d, fit, _, test = split
    model = build_estimator(compose_config([f"model={name}"]), d.fill_values)
    both = model.fit(d.X.iloc[fit], d.y[fit], d.grade_today[fit]).predict_proba(d.X.iloc[test])
    assert both.shape == (len(test), 2) and np.allclose(both.sum(axis=1), 1) and list(model.classes_) == [0, 1]
    proba = both[:, 1]
    assert ((proba >= 0) & (proba <= 1)).all()
    assert fold_metrics(d.y[test], proba, 0.5)["auroc"] > (0.6 if name == "tree" else 0.7)


@pytest.mark.parametrize("name", ["forest", "logreg", "measix", "tabm"])
def test_explanations_composed_from_transformed_days_give_the_same_numbers(name, split):
    from prcrs.clinical import explain
    from prcrs.fitting import severe_probability

    d, fit, _, test = split
    overrides = [f"model={name}", *(["trainer.max_epochs=1"] if name == "tabm" else [])]
    model = build_estimator(compose_config(overrides), d.fill_values).fit(d.X.iloc[fit], d.y[fit], d.grade_today[fit])
    rows, reference = d.X.iloc[test[:12]], explain.reference_row(model, d.X.iloc[fit])
    encoding = model.column_encoding(d.X.columns)
    np.testing.assert_array_equal(encoding.proba(encoding.transform(rows)), severe_probability(model, rows))
    by_frame = explain.contributions(partial(severe_probability, model), rows, reference, n_permutations=4)
    by_encoding = explain.contributions(encoding, rows, reference, n_permutations=4)
    # a float32 linear model's BLAS sums may depend on where its input lies in memory: a float32 ulp
    pd.testing.assert_frame_equal(by_encoding, by_frame, check_exact=name != "logreg", rtol=0, atol=1e-7)
    assert by_frame.abs().to_numpy().max() > 0


@pytest.mark.parametrize("name", ["prcrs", "tabm", "transformer"])
def test_a_network_predicts_a_batch_in_parts_on_threads_with_the_same_numbers(name, split, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from prcrs.fitting import severe_probability
    from prcrs.models import deep as deep_module
    from prcrs.models.threads import prediction_threads

    d, fit, _, test = split
    model = build_estimator(compose_config([f"model={name}", "trainer.max_epochs=1"]), d.fill_values)
    model.fit(d.X.iloc[fit], d.y[fit], d.grade_today[fit])
    rows = d.X.iloc[np.resize(test, 300)]
    whole = severe_probability(model, rows)
    parts = []

    class Spy(ThreadPoolExecutor):
        def map(self, fn, *iterables, **options):
            parts.append(self._max_workers)
            return super().map(fn, *iterables, **options)

    monkeypatch.setattr(deep_module, "ThreadPoolExecutor", Spy)
    with prediction_threads(2):
        np.testing.assert_array_equal(severe_probability(model, rows), whole)
        np.testing.assert_array_equal(severe_probability(model, rows.iloc[:100]), whole[:100])  # too few to split
    assert parts == [2]  # 300 rows in two parts; 100 rows in one


def test_bedside_scores_need_their_labs(split):
    from prcrs.errors import ConfigError

    d, fit, _, _ = split
    cytokines, others = list(schema.group_features(4)), list(schema.group_features(1, 2, 3))
    with pytest.raises(ConfigError, match="m-EASIX needs"):
        MEasix(FoldPreprocessor()).fit(d.X.iloc[fit][cytokines], d.y[fit], d.grade_today[fit])
    with pytest.raises(ConfigError, match="the cytokine model needs il6, ifn_gamma, il10"):
        CytokineLogistic(FoldPreprocessor()).fit(d.X.iloc[fit][others], d.y[fit], d.grade_today[fit])


@pytest.mark.parametrize("policy", ["embedding", "backbone", "none"])
def test_transfer_round_trip_freezes_what_the_policy_says(policy, split, tmp_path):
    d, fit, val, test = split
    covid = synthetic_covid(n_subjects=150, seed=0)
    base = deep("prcrs_paper", d.fill_values, max_epochs=2)
    pretraining = Pretraining(schema.FEATURE_KEYS, covid, val_fraction=0.15, cache_dir=tmp_path)
    state = pretraining(base)
    assert list((tmp_path / "pretrain").glob("*.pt"))  # cached
    assert pretraining(base).keys() == state.keys()
    model = base.set_params(init_from=lambda m: state, freeze=policy)
    fit_validated(model, d.X, d.y, d.grade_today, fit, val)
    after = model.module_.state_dict()
    frozen = {n for n, p in model.module_.named_parameters() if not p.requires_grad}
    expected = {"embedding": {"backbone.embedding.conv.weight", "backbone.embedding.conv.bias"},
                "none": set()}.get(policy)
    if expected is not None:
        assert frozen == expected
    else:
        assert frozen and not any(n.startswith(("backbone.fc1", "backbone.fc2")) for n in frozen)
    for name in frozen:
        torch.testing.assert_close(after[name], state[name])  # frozen: unchanged
    trained = [n for n, p in model.module_.named_parameters() if p.requires_grad and n in state
               and state[n].shape == after[n].shape]
    assert trained and any(not torch.equal(after[n], state[n]) for n in trained)  # trained: changed
    assert model.predict_proba(d.X.iloc[test]).shape == (len(test), 2)


@pytest.mark.parametrize("name", ["logreg", "cnn"])
def test_scikit_learn_wraps_a_fitted_prcrs_model(name, split):
    """The scikit-learn contract: a calibrator and permutation importance take a prcrs model as it is."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator
    from sklearn.inspection import permutation_importance

    d, fit, val, test = split
    overrides = [f"model={name}", "trainer.max_epochs=3", "trainer.min_epochs=1"]
    model = build_estimator(compose_config(overrides), d.fill_values)
    model.fit(d.X.iloc[fit], d.y[fit], d.grade_today[fit])
    calibrated = CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid").fit(d.X.iloc[val], d.y[val])
    proba = calibrated.predict_proba(d.X.iloc[test])
    assert proba.shape == (len(test), 2) and fold_metrics(d.y[test], proba[:, 1], 0.5)["auroc"] > 0.6
    importance = permutation_importance(model, d.X.iloc[test], d.y[test], scoring="roc_auc", n_repeats=2,
                                        random_state=0)
    assert importance.importances_mean.shape == (d.X.shape[1],) and importance.importances_mean.max() > 0


@pytest.mark.parametrize("name", sorted(p.stem for p in (paths.CONFIG_DIR / "model").glob("*.yaml")))
def test_every_model_is_a_scikit_learn_estimator_that_clones(name):
    """`clone` and `get_params` replace hand-copied keyword lists: the preprocessing is a param."""
    model = build_estimator(compose_config([f"model={name}"]), {})
    copy = clone(model)
    assert type(copy) is type(model) and copy.get_params(deep=False).keys() == model.get_params(deep=False).keys()
    assert isinstance(copy.preprocessor, FoldPreprocessor) and copy.preprocessor is not model.preprocessor
    assert copy.preprocessor.get_params() == model.preprocessor.get_params()


@pytest.mark.slow  # fresh interpreters, one per check
def test_a_tabular_model_never_imports_lightning_and_the_networks_old_name_still_loads():
    """A tabular or bedside run builds and checks its model without PyTorch Lightning (seconds of
    start-up); the networks' estimator keeps the name stored configs' `_target_` and older
    pickles give it."""
    import pickle
    import subprocess
    import sys

    code = ("import sys; from prcrs.run_config import build_estimator, compose_config; "
            "[build_estimator(compose_config([f'model={m}']), {}).check(('ldh', 'crp', 'platelet')) "
            "for m in ('logreg', 'forest', 'measix')]; "
            "print(sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]
    from hydra.utils import get_class

    assert get_class("prcrs.models.estimators.DeepModel") is DeepModel
    old = pickle.dumps(DeepModel, protocol=0).replace(b"prcrs.models.deep", b"prcrs.models.estimators")  # text names
    assert b"prcrs.models.estimators" in old and pickle.loads(old) is DeepModel


def test_the_config_is_the_only_source_of_a_networks_schedule():
    """DeepModel has no defaults but its transfer settings, extra callbacks and inner split (none;
    `fit_fold` sets the protocol's): what trains is what the config says."""
    defaults = {k for k, p in inspect.signature(DeepModel).parameters.items() if p.default is not p.empty}
    assert defaults == {"init_from", "freeze", "callbacks", "train_split"}
    model = deep("prcrs")
    trainer = compose_config([]).trainer
    assert (model.patience, model.threads, model.max_epochs, model.accelerator) == (
        trainer.patience, trainer.threads, trainer.max_epochs, trainer.accelerator)


def test_pretraining_fits_through_the_one_fold_fit_with_its_own_split(monkeypatch, tmp_path):
    from prcrs import fitting

    seen = []
    real = fitting.inner_split

    def spy(rows, strata, groups, seed, val_fraction):
        seen.append((len(rows), seed, val_fraction))
        return real(rows, strata, groups, seed=seed, val_fraction=val_fraction)

    monkeypatch.setattr(fitting, "inner_split", spy)
    covid = synthetic_covid(n_subjects=120, seed=0)
    Pretraining(schema.FEATURE_KEYS, covid, val_fraction=0.25, cache_dir=tmp_path)(deep("cnn", max_epochs=1, seed=3))
    assert seen == [(len(covid.frame), 3, 0.25)]


def test_unknown_freeze_policy_is_named():
    from prcrs.errors import ConfigError

    model = deep("cnn").build(10)
    with pytest.raises(ConfigError, match="freeze policy"):
        freeze(model, "half")


@pytest.mark.parametrize("n_fit", [64 * 2 + 1, 64 * 2, 64 * 2 + 2])
def test_early_stopping_validates_every_epoch_whatever_the_last_batch_size(n_fit):
    """A last training batch of one row is skipped (BatchNorm); the epoch must still end in a
    validation pass (it did not when the loader's length counted the skipped batch)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_fit + 40, 6)).astype(np.float32)
    y = (X[:, 0] + rng.standard_normal(len(X)) > 1).astype(int)
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    from prcrs.models.classifier import CRSClassifier

    passes = []
    real_step = CRSClassifier.validation_step

    def counted(self, batch, batch_idx):
        passes.append(self.current_epoch)
        return real_step(self, batch, batch_idx)

    model = deep("cnn", backbone=partial(B.CNN, channels=4), max_epochs=3, batch_size=64, patience=1, min_epochs=3)
    model.preprocessor.set_params(unimpute="none")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CRSClassifier, "validation_step", counted)
        fit_validated(model, frame, y, None, np.arange(n_fit), np.arange(n_fit, len(y)))
    assert passes == [0, 1, 2]  # one validation batch per epoch, every epoch
    assert model.trainer_.current_epoch == 3 and 0 <= model.best_epoch_ <= 2


def test_the_inner_split_is_a_model_parameter_as_skorchs_train_split(split):
    from prcrs.fitting import InnerSplit, fit_fold

    d, _, _, test = split
    rows = np.setdiff1d(np.arange(len(d.y)), test)
    model = build_estimator(compose_config(["model=logreg"]), d.fill_values)
    fitted = fit_fold(model, d.X, d.y, d.grade_today, d.grade_target, d.patient, rows, seed=3, val_fraction=0.2,
                      early_stopping=False, threshold="inner")
    assert fitted.model.train_split == InnerSplit(0.2, 3, monitor=False) and model.train_split is None  # a clone's
    positions = InnerSplit(0.2, 3)(d.grade_target[rows], d.patient[rows])
    np.testing.assert_array_equal(fitted.val, rows[positions[1]])
    assert not set(d.patient[fitted.val]) & set(d.patient[rows[positions[0]]])  # patients on one side only
    alone = clone(model).fit(d.X.iloc[rows], d.y[rows], d.grade_today[rows])
    assert alone.val_rows_ is None  # no split: every row fits


def test_the_pretraining_cache_key_ignores_the_folds_inner_split(tmp_path):
    """Every fold's model sets its own `train_split`: the weights the main process pretrained must
    still be the ones each fold loads."""
    from prcrs.fitting import InnerSplit

    covid = synthetic_covid(n_subjects=40, seed=0)
    pretraining = Pretraining(schema.FEATURE_KEYS, covid, val_fraction=0.15, cache_dir=tmp_path)
    model = deep("prcrs_paper")
    assert pretraining.key(model) == pretraining.key(clone(model).set_params(train_split=InnerSplit(0.2, 4)))
    assert pretraining.key(model) != pretraining.key(clone(model).set_params(max_epochs=model.max_epochs + 1))


def test_a_step_with_a_non_finite_gradient_is_left_out_and_counted():
    """Raw paper-protocol values overflow the attention's gradients now and then: such a step
    changes no weight and no optimizer moment (taken, it turned every weight NaN); a finite
    step is taken as it comes."""
    from prcrs.models.classifier import CRSClassifier

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x, missing=None):
            return self.fc(x)

    net = CRSClassifier(Linear(), partial(torch.optim.Adam, lr=0.1))
    optimizer = net.configure_optimizers()
    x, y = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([1])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.nn.functional.cross_entropy(net(x), y).backward()
    net.backbone.fc.weight.grad[0, 0] = float("nan")
    net.on_before_optimizer_step(optimizer)
    optimizer.step()
    assert net.skipped_steps == 1 and not optimizer.state
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    net.on_before_optimizer_step(optimizer)
    optimizer.step()
    assert net.skipped_steps == 1 and not torch.equal(net.backbone.fc.weight, before["backbone.fc.weight"])


def test_a_network_fits_and_predicts_on_its_own_threads_and_leaves_the_processs_count(split):
    """TabM's numbers depend on the torch thread count: fitting and predicting both run on
    `trainer.threads`, whatever the process (a serving one on all its cores) has."""
    d, fit, val, test = split
    model = fit_validated(deep("tabm", d.fill_values, max_epochs=1, min_epochs=1, threads=1), d.X, d.y,
                          d.grade_today, fit, val)
    seen = []
    model.module_.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        predictions = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            predictions.append(model.predict_proba(d.X.iloc[test])[:, 1])
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert set(seen) == {1}
    np.testing.assert_array_equal(*predictions)
