"""Equal-budget tuning (the TPE sweeper) and the models it compares: TabM and its embedded MLP,
LightGBM."""

import gc
import importlib.util
import runpy
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch.nn import functional as F

from prcrs.data.targets import make_horizon
from prcrs.models import embedded
from prcrs.models.classifier import CRSClassifier
from prcrs.run_config import build_estimator, compose_config
from prcrs.splits import inner_split, make_folds
from prcrs.tracking import store

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("tpe_sweeper", ROOT / "hydra_plugins" / "tpe_sweeper" / "tpe_sweeper.py")
tpe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tpe)


def _sweep(cmd, tmp_path, sweep="sweep"):
    done = subprocess.run([sys.executable, *cmd, f"hydra.sweep.dir={tmp_path / sweep}"], capture_output=True,
                          text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return OmegaConf.load(tmp_path / sweep / "tpe_search.yaml")


def _trials(tmp_path, record, sweep="sweep") -> pd.DataFrame:
    return pd.read_csv(tmp_path / sweep / "tpe" / record.study.replace(" ", "_") / "trials.csv")


@pytest.mark.parametrize(("text", "expected"), [
    ("range(100, 501, step=100)", optuna.distributions.IntDistribution(100, 500, step=100)),
    ("int(interval(1, 20))", optuna.distributions.IntDistribution(1, 20)),
    ("tag(log, interval(0.01, 0.3))", optuna.distributions.FloatDistribution(0.01, 0.3, log=True)),
    ("interval(0, 1)", optuna.distributions.FloatDistribution(0.0, 1.0)),
    ("choice(piecewise, periodic)", optuna.distributions.CategoricalDistribution(["piecewise", "periodic"])),
])
def test_each_hydra_sweep_becomes_the_optuna_distribution_it_says(text, expected):
    override = OverridesParser.create().parse_overrides([f"k={text}"])[0]
    assert tpe.distribution("k", override.value()) == expected


def test_every_space_file_parses_and_names_options_its_model_has():
    for path in sorted((ROOT / "conf" / "search" / "space").glob("*.yaml")):
        space = OmegaConf.to_container(OmegaConf.load(path))
        cfg = compose_config([f"model={path.stem}"])
        for key, text in space.items():
            override = OverridesParser.create().parse_overrides([f"{key}={text}"])[0]
            tpe.distribution(key, override.value())
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent)
            known = set(node)
            if str(node.get("_target_", "")).startswith(("sklearn.", "lightgbm.")):  # set with ++: its own options
                known |= set(get_class(node._target_)().get_params())
            assert leaf in known, f"{path.name}: {key} is no option of {node.get('_target_', parent)}"


@pytest.mark.slow  # three sweeps of 12 to 13 trials, each in a process of its own
def test_tpe_finds_the_toy_optimum_keeps_its_budget_and_resumes_a_trial_left_running(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cmd = [str(ROOT / "tests" / "toy_ofat" / "app.py"), "-m", "hydra/sweeper=tpe", "x=interval(0, 4)",
           "y=interval(0, 6)", "hydra.sweeper.n_startup_trials=4", f"hydra.sweeper.storage={storage}"]
    record = _sweep([*cmd, "hydra.sweeper.n_trials=12"], tmp_path)[0]
    trials = _trials(tmp_path, record)
    assert len(trials) == 12 and (trials["state"] == "COMPLETE").all()
    assert record.search_score == trials["value"].max() and record.search_score > -1.0  # near (2, 3)
    best = trials.loc[trials["value"].idxmax()]
    assert OmegaConf.to_container(record.chosen) == {k: float(best[f"params.{k}"]) for k in ("x", "y")}
    again = _sweep([*cmd, "hydra.sweeper.n_trials=12"], tmp_path, "again")[0]  # finished: nothing more runs
    assert again.study == record.study and len(_trials(tmp_path, again, "again")) == 12
    study = optuna.load_study(study_name=record.study, storage=storage)
    left = study.ask({"x": optuna.distributions.FloatDistribution(0, 4),
                      "y": optuna.distributions.FloatDistribution(0, 6)})  # a trial an interrupt left RUNNING
    resumed = _sweep([*cmd, "hydra.sweeper.n_trials=13"], tmp_path, "resumed")[0]
    trials = _trials(tmp_path, resumed, "resumed")
    assert (trials["state"] == "COMPLETE").sum() == 13 and resumed.trials == 13
    rerun = trials[trials["state"] == "COMPLETE"].iloc[-1]
    assert (rerun["params.x"], rerun["params.y"]) == (left.params["x"], left.params["y"])  # the same values again
    assert trials.loc[trials["number"] == left.number, "state"].item() == "FAIL"  # and not counted in the budget


@pytest.mark.slow  # a run.py sweep in a process of its own
def test_tpe_refuses_to_choose_on_test_folds(tmp_path):
    done = subprocess.run([sys.executable, "run.py", "-m", "hydra/sweeper=tpe", "data=synthetic", "model=forest",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode != 0 and "would choose on test folds" in done.stderr


@pytest.mark.slow
def test_a_study_runs_through_the_submitit_launcher_with_its_trials_in_mlflow(tmp_path, monkeypatch):
    """`hydra/launcher=slurm` on a cluster; here its local twin: every trial and the final job are
    submitit jobs in their own processes, logged to the one MLflow store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PRCRS_DATA_DIR", raising=False)
    record = _sweep(["run.py", "-m", "hydra/sweeper=tpe", "search=tpe", "hydra/launcher=submitit_local",
                     "data=synthetic", "model=logreg", "cv.folds=2", "study=cluster",
                     "model.estimator.estimator.C=tag(log, interval(0.001, 10.0))", "hydra.sweeper.n_trials=1",
                     "hydra.sweeper.n_startup_trials=1", "hydra.sweeper.final_seeds=[0,1]"], tmp_path)[0]
    assert record.trials == 1 and len(record.final_cv) == 2
    assert sorted((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl")), "no job ran through submitit"
    store.use_store(uri)
    exp = mlflow.get_experiment_by_name("cluster")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    roles = sorted(r.data.tags.get("role") for r in runs if r.data.tags.get("role") in ("cv_parent", "search"))
    assert roles == ["cv_parent"] * 2 + ["search"]  # the trial, the chosen config at seed 1, the search


@pytest.mark.slow
def test_a_trial_never_sees_a_test_fold(tmp_path, monkeypatch):
    """Each trial's score is the same when every test fold's predictions are replaced by noise:
    trials read validation patients only; the test-fold CV of the chosen config moves."""
    from hydra.core.global_hydra import GlobalHydra

    from prcrs import engine

    monkeypatch.delenv("PRCRS_DATA_DIR", raising=False)
    records, trials = [], []
    for name, poisoned in (("plain", False), ("poisoned", True)):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / name / 'mlflow.db'}")
        if poisoned:
            def noise(model, X):
                return np.random.default_rng(len(X)).random(len(X))

            monkeypatch.setattr(engine, "severe_probability", noise)
        monkeypatch.setattr(sys, "argv", [
            "run.py", "-m", "hydra/sweeper=tpe", "search=tpe", "data=synthetic", "model=logreg", "cv.folds=2",
            "cv.n_jobs=1", "study=spy", "model.estimator.estimator.C=tag(log, interval(0.001, 10.0))",
            "hydra.sweeper.n_trials=3", "hydra.sweeper.n_startup_trials=3", f"hydra.sweep.dir={tmp_path / name}"])
        GlobalHydra.instance().clear()
        with pytest.raises(SystemExit) as ended:  # run.py ends its process (`exit_with`), here this one
            runpy.run_path(str(ROOT / "run.py"), run_name="__main__")  # in this process: the spy is in place
        gc.unfreeze()  # what run.py left out of garbage collection is collected again
        assert ended.value.code == 0
        record = OmegaConf.load(tmp_path / name / "tpe_search.yaml")[0]
        records.append(record)
        trials.append(_trials(tmp_path, record, name))
    assert trials[0]["value"].tolist() == trials[1]["value"].tolist()  # the trials' scores: validation only
    assert records[0].chosen == records[1].chosen
    plain, poisoned = (r.final_cv[0].mean_test_auroc for r in records)
    assert plain > 0.8 and abs(poisoned - 0.5) < 0.15  # the test folds' predictions were the noise


def test_tabm_members_train_on_their_mean_loss_and_predict_their_mean_probability():
    torch.manual_seed(0)
    net = embedded.TabM(n_features=6, k=4, d_block=16, embedding="periodic", d_embedding=4)
    module = CRSClassifier(net, optimizer=None)
    x, missing, y = torch.randn(10, 6), (torch.rand(10, 6) < 0.3).float(), torch.randint(0, 2, (10,))
    module.eval()  # no dropout: the same logits in each call
    logits = net(x, missing)
    assert logits.shape == (10, 4, 2)
    members = torch.stack([F.cross_entropy(logits[:, j], y) for j in range(4)])
    with pytest.warns(UserWarning, match="self.log"):  # outside a Trainer Lightning logs nothing
        loss = module.training_step((x, missing, y), 0)
    torch.testing.assert_close(loss, members.mean())
    expected = logits.detach().softmax(-1).mean(1).numpy()
    np.testing.assert_allclose(module.predict_proba(x, missing), expected, rtol=1e-6)
    assert not np.allclose(expected, logits.detach().mean(1).softmax(-1).numpy())  # probabilities averaged, not logits


def test_embedding_bins_are_fitted_on_the_training_rows_only(synthetic, monkeypatch):
    d = make_horizon(synthetic, 1)
    fold = make_folds("patient", d.y, d.grade_target, d.patient, folds=4, seed=0)[0]
    fit, val = inner_split(fold.train, d.grade_target, d.patient)
    seen = []
    real = embedded.quantile_bins
    monkeypatch.setattr(embedded, "quantile_bins", lambda x, n: seen.append(np.array(x)) or real(x, n))
    model = build_estimator(compose_config(["model=mlp_embed", "data=synthetic"]), d.fill_values).set_params(
        max_epochs=1, min_epochs=1)
    rows = np.concatenate([fit, val])
    held_out = lambda strata, groups: (np.arange(len(fit)), np.arange(len(fit), len(rows)))  # noqa: E731
    model.set_params(train_split=held_out).fit(d.X.iloc[rows], d.y[rows], d.grade_today[rows])
    assert len(seen) == 1  # when fitted (the build check before any fold bins made-up rows, not these)
    expected = model.preprocessor_.transform_with_missing(d.X.iloc[fit])[0]
    np.testing.assert_array_equal(seen[0], expected)  # the training rows: no validation or test row
    assert model.predict_proba(d.X.iloc[fold.test]).shape == (len(fold.test), 2)


def test_quantile_bins_give_a_constant_column_one_bin():
    x = np.column_stack([np.arange(50.0), np.full(50, 3.0)])
    bins = embedded.quantile_bins(x, 8)
    assert len(bins[0]) == 9 and bins[1].tolist() == [2.0, 4.0]


def test_lightgbm_is_a_tabular_model_that_learns(synthetic):
    d = make_horizon(synthetic, 1)
    fold = make_folds("patient", d.y, d.grade_target, d.patient, folds=4, seed=0)[0]
    model = build_estimator(compose_config(["model=lightgbm", "data=synthetic"]), d.fill_values)
    model.fit(d.X.iloc[fold.train], d.y[fold.train], d.grade_today[fold.train])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(d.y[fold.test], model.predict_proba(d.X.iloc[fold.test])[:, 1]) > 0.85


@pytest.mark.slow
def test_the_tuned_study_runs_each_family_at_one_budget_and_logs_its_searches(quick_store):
    """`python run.py -m experiment=tuned hydra.sweeper.n_trials=4 data=synthetic cv.folds=2`, its
    grid cut to two families at one horizon and input: the quick reproduction's search."""
    tmp, uri = quick_store
    records = OmegaConf.load(tmp / "sweeps" / "tuned" / "tpe_search.yaml")
    assert sorted(r.grid[0] for r in records) == ["model=lightgbm", "model=mlp_embed"]  # horizon, history: as given
    assert sorted(r.study.split()[:4] for r in records) == [["tuned", "lightgbm", "h1", "lags"],
                                                            ["tuned", "mlp_embed", "h1", "lags"]]
    for record in records:
        assert record.trials == 4 and len(record.final_cv) == 2
        assert record.final_cv[0].mean_val_auroc == record.search_score  # seed 0: the chosen trial itself
    store.use_store(uri)
    exp = mlflow.get_experiment_by_name("tuned")
    searches = mlflow.search_runs([exp.experiment_id], output_format="list", filter_string="tags.role = 'search'")
    assert sorted(r.data.tags["model"] for r in searches) == ["lightgbm", "mlp_embed"]
    assert all("final_mean_test_auroc" in r.data.metrics and r.data.tags["trials"] == "4" for r in searches)
    parents = mlflow.search_runs([exp.experiment_id], output_format="list", filter_string="tags.role = 'cv_parent'")
    assert len(parents) >= 2 * (4 + 1)  # every trial, and the chosen configs at seed 1


def test_the_ensemble_is_the_mean_probability_on_the_rows_both_members_predicted(monkeypatch):
    """The tuned report's ensemble row: both members' stacked out-of-fold predictions, averaged
    per row and seed, scored fold by fold."""
    from sklearn.metrics import roc_auc_score

    from prcrs.report import tuned

    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"repeat": 0, "fold": np.repeat([0, 1], 30), "patient": np.arange(60) // 3,
                         "day": np.arange(60) % 3, "label": rng.integers(0, 2, 60)})
    frames = {name: pd.concat([rows.assign(probability=rng.random(60), seed=s) for s in (0, 1)], ignore_index=True)
              for name in ("tree", "network")}
    frames["network"].loc[0, "probability"] = np.nan  # a row one member did not predict: left out
    monkeypatch.setattr(tuned, "_stacked", lambda search: frames[search])
    mixed = tuned.blend("tree", "network")
    assert len(mixed) == 119
    both = frames["tree"].merge(frames["network"], on=["repeat", "fold", "patient", "day", "seed"]).dropna()
    np.testing.assert_allclose(mixed["probability"], (both["probability_x"] + both["probability_y"]) / 2)
    expected = [roc_auc_score(g["label"], g["probability"]) for _, g in mixed.groupby(["seed", "repeat", "fold"])]
    np.testing.assert_allclose(tuned.fold_scores(mixed, "auroc"), expected)
    assert len(expected) == 4  # seeds x folds
