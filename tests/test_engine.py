"""Config composition, an end-to-end multirun into a temp MLflow store, resume, threshold safety."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from prcrs import engine, tracking
from prcrs.data.synthetic import synthetic_cart
from prcrs.data.targets import check_horizon, make_horizon
from prcrs.models import DEEP, TABULAR

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in (ROOT / "conf").iterdir() if g.is_dir()
          and g.name not in {"hydra", "experiment"}}
FAST = ["data=synthetic", "cv.folds=2", "trainer.max_epochs=2", "trainer.patience=1", "trainer.min_epochs=1"]


def _compose(overrides=()):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=False)


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_of_every_group_composes(group, option):
    cfg = _compose([f"{group}={option}"])
    assert cfg.study and cfg.seed == 0
    if group == "model":
        est = engine.build_estimator(cfg, engine.features_of(cfg), {})
        assert hasattr(est, "fit") and hasattr(est, "predict_proba")
    if group == "ablation":
        assert engine.features_of(cfg)


def test_the_model_catalogue_is_the_model_configs():
    kinds = {m: _compose([f"model={m}"]).model.kind for m in GROUPS["model"]}
    assert set(DEEP + TABULAR) | {"prcrs_paper"} == set(kinds)
    assert all(kinds[m] == "deep" for m in DEEP) and all(kinds[m] == "tabular" for m in TABULAR)


@pytest.mark.parametrize("factors", ["1234", "123", "4", "23", "3", "2"])
@pytest.mark.parametrize("horizon", [0, 1, 2, 3])
def test_factors_and_horizons_compose_from_the_command_line_form(factors, horizon):
    cfg = _compose([f"factors={factors}", f"horizon={horizon}"])
    assert len(engine.features_of(cfg)) == {"1234": 42, "123": 35, "4": 7, "23": 26, "3": 16, "2": 10}[factors]
    assert check_horizon(cfg.horizon) == horizon


def test_defaults_are_the_main_job():
    cfg = _compose()
    assert (cfg.model.name, cfg.protocol.name, cfg.horizon, cfg.cv.folds) == ("prcrs", "honest", 1, 5)
    assert cfg.data.kind == "cart" and cfg.transfer.name == "none"


def _mlflow_env(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _runs(uri, study):
    tracking.use_store(uri)
    exp = mlflow.get_experiment_by_name(study)
    return mlflow.search_runs([exp.experiment_id], output_format="list") if exp else []


def test_fast_multirun_logs_parents_children_and_artifacts(tmp_path, monkeypatch):
    uri = _mlflow_env(tmp_path, monkeypatch)
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *FAST, "model=logreg,cnn", "study=e2e",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = _runs(uri, "e2e")
    parents = [r for r in runs if r.data.tags["role"] == "cv_parent"]
    children = [r for r in runs if r.data.tags["role"] == "cv_fold"]
    assert sorted(r.data.tags["model"] for r in parents) == ["cnn", "logreg"]
    assert len(children) == 4
    for parent in parents:
        m = parent.data.metrics
        assert 0.5 < m["mean_test_auroc"] <= 1 and "split1_test_auprc" in m and "std_test_f1_macro" in m
        for tag in ("ablation", "factors", "horizon", "protocol", "transfer", "data_source", "git_sha", "study"):
            assert parent.data.tags[tag]
        assert parent.data.tags["data_source"] == "synthetic"
        files = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
        assert {"config.yaml", "overrides.txt", "oof_predictions.csv", "roc_curve.png", "pr_curve.png"} <= files
        assert parent.data.params["cv.folds"] == "2" and parent.data.params["trainer.max_epochs"] == "2"
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents}
        assert [a.path for a in mlflow.MlflowClient().list_artifacts(child.info.run_id, "model")]
    cnn = next(p for p in parents if p.data.tags["model"] == "cnn")
    assert int(cnn.data.params["n_parameters"]) > 0
    fold = next(c for c in children if c.data.tags["mlflow.parentRunId"] == cnn.info.run_id)
    model = joblib.load(mlflow.artifacts.download_artifacts(run_id=fold.info.run_id,
                                                            artifact_path="model/model.joblib", dst_path=str(tmp_path)))
    rows = make_horizon(synthetic_cart(seed=0, n_patients=20), 1).X
    proba = model.predict_proba(rows)  # the fold's fitted model, working after the round trip
    assert len(proba) == len(rows) and ((proba >= 0) & (proba <= 1)).all()


def test_fold_parallelism_does_not_change_results():
    data = make_horizon(synthetic_cart(seed=0, n_patients=60), 1)
    one, two = (engine.cross_validate(_compose([*FAST, "model=prcrs", f"cv.n_jobs={n}"]), data) for n in (1, 2))
    assert np.isfinite(one.oof["probability"]).all()
    np.testing.assert_allclose(one.oof["probability"], two.oof["probability"], rtol=1e-6)
    assert [f["auroc"] for f in one.folds] == [f["auroc"] for f in two.folds]


def test_resume_skips_finished_configs(tmp_path, monkeypatch):
    uri = _mlflow_env(tmp_path, monkeypatch)
    cfg = _compose([*FAST, "model=logreg", "study=resume"])
    first = engine.run(cfg)
    calls = []
    monkeypatch.setattr(engine, "cross_validate", lambda *a, **k: calls.append(1))
    assert engine.run(cfg) == first and not calls  # finished: not run again
    assert len([r for r in _runs(uri, "resume") if r.data.tags["role"] == "cv_parent"]) == 1
    changed = _compose([*FAST, "model=logreg", "study=resume", "seed=1"])
    monkeypatch.undo()
    _mlflow_env(tmp_path, monkeypatch)
    engine.run(changed)
    assert len([r for r in _runs(uri, "resume") if r.data.tags["role"] == "cv_parent"]) == 2


def test_an_interrupted_sweep_stops_at_once_keeps_finished_runs_and_resumes(tmp_path, monkeypatch):
    uri = _mlflow_env(tmp_path, monkeypatch)
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *FAST, "model=logreg,cnn", "trainer.max_epochs=30",
           "trainer.patience=30", "study=interrupt", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    sweep = subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not any(r.data.tags["role"] == "cv_parent" and r.info.status == "FINISHED"
                  for r in _runs(uri, "interrupt")):  # logreg done, cnn training
        assert sweep.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be interrupted"
        time.sleep(0.5)
    time.sleep(2)
    os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group, fold workers included
    stderr = sweep.communicate(timeout=30)[1]  # the workers' output too: they share it
    assert sweep.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, stderr[-2000:]
    parents = [r for r in _runs(uri, "interrupt") if r.data.tags["role"] == "cv_parent"]
    assert {r.data.tags["model"]: r.info.status for r in parents} == {"logreg": "FINISHED", "cnn": "FAILED"}
    resumed = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0 and "already finished" in resumed.stdout, resumed.stderr[-2000:]
    parents = [r for r in _runs(uri, "interrupt") if r.data.tags["role"] == "cv_parent"]
    assert sorted(r.data.tags["model"] for r in parents if r.info.status == "FINISHED") == ["cnn", "logreg"]


def test_a_store_used_once_does_not_become_the_default(tmp_path, monkeypatch):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.use_store(other) == other and mlflow.get_tracking_uri() == other
    assert tracking.tracking_uri() == f"sqlite:///{tracking.MLRUNS / 'mlflow.db'}"  # MLflow wrote the variable
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////srv/team.db")
    tracking.use_store(other)
    assert tracking.tracking_uri() == "sqlite:////srv/team.db"


def test_threshold_is_chosen_on_inner_validation_rows_never_the_test_fold(monkeypatch):
    cfg = _compose([*FAST, "model=logreg", "cv.n_jobs=1"])  # in-process folds: the spies see them
    data = make_horizon(synthetic_cart(seed=0), 1)
    seen = {"val": [], "threshold_rows": []}
    real_split = engine.inner_split

    def spy_split(train, *a, **k):
        fit, val = real_split(train, *a, **k)
        seen["val"].append(val)
        return fit, val

    def spy_threshold(y, proba):
        seen["threshold_rows"].append(np.asarray(y))
        return 0.4321

    from prcrs.preprocessing import FoldPreprocessor

    real_fit = FoldPreprocessor.fit

    def spy_fit(self, X, grade_today=None):
        seen.setdefault("fit_rows", []).append(set(X.index))
        return real_fit(self, X, grade_today)

    monkeypatch.setattr(engine, "inner_split", spy_split)
    monkeypatch.setattr(engine, "best_f1_threshold", spy_threshold)
    monkeypatch.setattr(FoldPreprocessor, "fit", spy_fit)
    result = engine.cross_validate(cfg, data)
    assert len(seen["threshold_rows"]) == len(seen["val"]) == 2
    for y, val in zip(seen["threshold_rows"], seen["val"], strict=True):
        np.testing.assert_array_equal(y, data.y[val])  # the threshold saw the validation labels only
    assert (result.oof["threshold"] == 0.4321).all()  # and the chosen threshold is the one used
    for fit_rows, (_, fold) in zip(seen["fit_rows"], result.oof.groupby(["repeat", "fold"]), strict=True):
        test_rows = set(np.flatnonzero(np.isin(data.patient, fold["patient"].unique())))
        assert fit_rows and not fit_rows & test_rows  # preprocessing never saw a test row
    for val, (_, fold) in zip(seen["val"], result.oof.groupby(["repeat", "fold"]), strict=True):
        test_keys = set(zip(fold["patient"], fold["day"], strict=True))
        val_keys = set(zip(data.patient[val], data.day[val], strict=True))
        assert not test_keys & val_keys
        assert not set(fold["patient"]) & set(data.patient[val])  # honest: not even the same patients


def test_honest_out_of_fold_predictions_cover_each_row_once_and_never_share_patients():
    cfg = _compose([*FAST, "model=logreg"])
    data = make_horizon(synthetic_cart(seed=0), 1)
    oof = engine.cross_validate(cfg, data).oof
    assert len(oof) == len(data) and not oof.duplicated(["patient", "day"]).any()
    assert oof.groupby("patient")["fold"].nunique().max() == 1


def test_paper_protocol_uses_rows_raw_values_and_threshold_0_3():
    cfg = _compose([*FAST, "model=logreg", "protocol=paper"])
    data = make_horizon(synthetic_cart(seed=0), 1)
    oof = engine.cross_validate(cfg, data).oof
    assert (oof["threshold"] == 0.3).all()
    assert oof.groupby("patient")["fold"].nunique().max() > 1  # a patient's days on both sides
    pre = engine.build_estimator(cfg, tuple(data.X.columns), data.fill_values).preprocessor
    assert pre.raw and pre.unimpute == "none"  # raw values, the data as published


@pytest.mark.parametrize("override,message", [("model=nope", "Could not find 'model/nope'"),
                                              ("protocol=fair", "Could not find 'protocol/fair'"),
                                              ("trainer.max_epoch=3", "max_epoch"),
                                              ("factors=15", "factors=15 is not a platform combination"),
                                              ("horizon=-1", "horizon=-1 must be a whole number"),
                                              ("model.estimator.backbone.heads=5", "divisible by num_heads"),
                                              ("optimizer.lr=-1", "Invalid learning rate: -1"),
                                              ("trainer.max_epochs=abc", "trainer.max_epochs must be a whole"),
                                              ("model=base/deep", "config model.name"),
                                              ("model=hgb model.estimator.estimator.learning_rate=-1",
                                               "model.estimator.estimator: The 'learning_rate' parameter")])
def test_bad_overrides_get_hydras_clear_error(override, message, tmp_path, monkeypatch):
    _mlflow_env(tmp_path, monkeypatch)  # options checked once the data and store are open: not the project's
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), *override.split()], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("launcher", ["parallel", "submitit_local"])
def test_sweeps_run_through_the_joblib_and_submitit_launchers(launcher, tmp_path, monkeypatch):
    uri = _mlflow_env(tmp_path, monkeypatch)
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *FAST, "model=logreg,tree", "trainer.threads=1",
           f"study={launcher}", f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    parents = [r for r in _runs(uri, launcher) if r.data.tags["role"] == "cv_parent"]
    assert sorted(r.data.tags["model"] for r in parents) == ["logreg", "tree"]
    assert all(r.info.status == "FINISHED" for r in parents)


def test_slurm_launcher_config_composes():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.cpus_per_task == 2


def test_config_hash_covers_the_data_and_the_config_not_their_spelling():
    cohort = synthetic_cart(seed=0, n_patients=30)
    base = engine.config_hash(_compose(FAST), cohort)
    assert engine.config_hash(_compose([*FAST, "factors=1234"]), cohort) == base  # int 1234 vs "1234"
    assert engine.config_hash(_compose([*FAST, "cv.n_jobs=1", "study=other"]), cohort) == base
    assert engine.config_hash(_compose([*FAST, "seed=1"]), cohort) != base
    changed = synthetic_cart(seed=0, n_patients=30)
    changed.frame.loc[0, "grade"] = 4 - changed.frame.loc[0, "grade"]
    assert engine.config_hash(_compose(FAST), changed) != base  # other data: never resumed from


def test_an_unmeasured_optimized_metric_fails_before_any_training(monkeypatch):
    from prcrs.errors import ConfigError

    monkeypatch.setattr(engine, "cross_validate", lambda *a, **k: pytest.fail("trained"))
    cfg = _compose([*FAST, "protocol=paper", "optimized_metric=mean_val_auroc"])
    with pytest.raises(ConfigError, match="mean_val_auroc.*not measured"):
        engine.run(cfg)
