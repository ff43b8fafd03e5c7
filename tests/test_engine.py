"""Config composition, an end-to-end multirun into a temp MLflow store, resume, threshold safety."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from prcrs import engine, evaluate, fitting, paths, run_config
from prcrs.data.synthetic import synthetic_cart
from prcrs.data.targets import check_horizon, make_horizon
from prcrs.models import catalogue
from prcrs.tracking import leases, store

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in (ROOT / "conf").iterdir() if g.is_dir()
          and g.name not in {"hydra", "experiment"}}
FAST = ["data=synthetic", "cv.folds=2", "trainer.max_epochs=2", "trainer.patience=1", "trainer.min_epochs=1",
        "cv.explain_rows=20"]


def _compose(overrides=()):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=False)


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_of_every_group_composes(group, option):
    cfg = _compose([f"{group}={option}"])
    assert cfg.study and cfg.seed == 0
    if group == "model":
        est = run_config.build_estimator(cfg, {})
        assert hasattr(est, "fit") and hasattr(est, "predict_proba")
    if group == "ablation":
        assert run_config.features_of(cfg)


def test_the_model_catalogue_is_the_model_configs():
    entries = {e.name: e for e in catalogue.entries()}
    assert set(entries) == set(GROUPS["model"])  # every model config is listed, and only those
    for name, entry in entries.items():
        kind = _compose([f"model={name}"]).model.kind
        assert kind == ("tabular" if entry.family in ("tabular", "bedside") else "deep"), name
    assert catalogue.names(study="table2")[:4] == ("cnn", "transformer", "squeezeformer", "prcrs")  # the paper's order


@pytest.mark.slow  # a CV and a report section: over 7 s
def test_a_new_model_is_one_yaml_and_lands_in_table_2s_sweep_and_report(tmp_path, monkeypatch):
    import shutil

    from prcrs.report.sections.table2 import table2_and_fig3
    from prcrs.report.tables import Report
    from prcrs.tracking.results import parent_runs

    conf = tmp_path / "conf"
    shutil.copytree(paths.CONFIG_DIR, conf)
    (conf / "model" / "bayes.yaml").write_text(
        "name: bayes\nkind: tabular\nmissing_indicators: true\nestimator:\n"
        "  _target_: prcrs.models.estimators.TabularModel\n  estimator:\n    _target_: sklearn.naive_bayes.GaussianNB\n"
        "catalogue:\n  display: naive Bayes\n  family: tabular\n  rank: 95\n  studies: [table2]\n  quick: []\n")
    monkeypatch.setattr(paths, "CONFIG_DIR", conf)
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import reproduce

    sweep = dict(o.split("=", 1) for o in reproduce.sweep_of("table2"))
    assert sweep["model"].split(",")[-3:] == ["bayes", "measix", "teachey"]  # by its rank
    uri = _mlflow_env(tmp_path, monkeypatch)
    evaluate.evaluate(run_config.compose_config(["experiment=table2", *FAST, "model=bayes", "protocol=honest"]))
    report = Report(tmp_path / "reports")
    report.out.mkdir()
    table2_and_fig3(report, parent_runs("table2", uri))
    row = next(line for line in (report.out / "table2.md").read_text().splitlines() if line.startswith("| bayes"))
    assert re.search(r"\d\.\d{3}", row), row


# each factor code and each horizon once: the two keys compose apart, their product adds nothing
@pytest.mark.parametrize("factors,horizon", [("1234", 0), ("123", 1), ("4", 2), ("23", 3), ("3", 0), ("2", 1)])
def test_factors_and_horizons_compose_from_the_command_line_form(factors, horizon):
    cfg = _compose([f"factors={factors}", f"horizon={horizon}"])
    assert len(run_config.features_of(cfg)) == {"1234": 42, "123": 35, "4": 7, "23": 26, "3": 16, "2": 10}[factors]
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
    store.use_store(uri)
    exp = mlflow.get_experiment_by_name(study)
    return mlflow.search_runs([exp.experiment_id], output_format="list") if exp else []


@pytest.mark.slow  # over 7 s: the inner loop stays under 3 minutes
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
    # what a user meets: labelled numbers, progress, the sweep's table, clean MLflow entries
    out = done.stdout + done.stderr
    assert "mean ± sd over 2 folds" in out and "pooled out-of-fold AUROC" in out
    assert "loading data: done in" in out and "fold worker(s) and building the model once: done in" in out
    assert "fold 1/2 (split0): AUROC" in out and "\r" not in out  # log lines, no bar redraws, off a terminal
    assert "Sweep summary (2 configs, best first" in out
    table = (tmp_path / "sweep" / "sweep_summary.md").read_text()
    assert table.count("model=") == 2 and "AUROC (mean ± sd over folds)" in table
    import pandas as pd

    listed = pd.read_csv(tmp_path / "sweep" / "sweep_summary.csv")  # each row names its run
    assert set(listed["run_id"]) == {p.info.run_id for p in parents} and (listed["horizon"] == 1).all()
    shown = Path(tempfile.gettempdir()) / "prcrs-screenshots"  # kept for a reader, as the page's screenshots
    shown.mkdir(exist_ok=True)
    (shown / "sweep_summary.md").write_text(table)
    summary_runs = [r for r in runs if r.data.tags["role"] == "sweep_summary"]
    assert len(summary_runs) == 1
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(summary_runs[0].info.run_id)} == {
        "sweep_summary.md", "sweep_summary.csv"}
    for parent in parents:
        assert not [k for k in parent.data.params if "_target_" in k or "_partial_" in k]
        assert parent.data.params["model.estimator.class"] in {"TabularModel", "DeepModel"}
        assert parent.data.metrics["pooled_test_auroc"] > 0.5
        dataset = mlflow.get_run(parent.info.run_id).inputs.dataset_inputs[0].dataset
        assert dataset.name == "CAR-T synthetic (202 patients)" and dataset.digest
    assert sorted(c.info.run_name.rsplit(" ", 2)[-2:][1] for c in children) == ["1/2", "1/2", "2/2", "2/2"]
    assert sorted(c.data.tags["fold"] for c in children) == ["1", "1", "2", "2"]
    cnn = [c for c in children if c.data.tags["model"] == "cnn"]
    history = mlflow.MlflowClient().get_metric_history(cnn[0].info.run_id, "train_loss")
    assert len(history) == 2 and sorted(m.step for m in history) == [0, 1]  # a learning curve per fold
    assert mlflow.MlflowClient().get_metric_history(cnn[0].info.run_id, "val_loss")
    cnn = next(p for p in parents if p.data.tags["model"] == "cnn")
    assert int(cnn.data.params["n_parameters"]) > 0
    fold = next(c for c in children if c.data.tags["mlflow.parentRunId"] == cnn.info.run_id)
    model = joblib.load(mlflow.artifacts.download_artifacts(run_id=fold.info.run_id,
                                                            artifact_path="model/model.joblib", dst_path=str(tmp_path)))
    rows = make_horizon(synthetic_cart(seed=0, n_patients=20), 1).X
    proba = model.predict_proba(rows)  # the fold's fitted model, working after the round trip
    assert proba.shape == (len(rows), 2) and ((proba >= 0) & (proba <= 1)).all()


@pytest.mark.slow  # over 7 s: the inner loop stays under 3 minutes
def test_fold_parallelism_does_not_change_results():
    data = make_horizon(synthetic_cart(seed=0, n_patients=60), 1)
    specs = [run_config.run_spec(_compose([*FAST, "model=prcrs", f"cv.n_jobs={n}"]), data.fill_values) for n in (1, 2)]
    one, two = (engine.cross_validate(spec, data) for spec in specs)
    assert np.isfinite(one.oof["probability"]).all()
    np.testing.assert_allclose(one.oof["probability"], two.oof["probability"], rtol=1e-6)
    assert [f["auroc"] for f in one.folds] == [f["auroc"] for f in two.folds]


def test_resume_skips_finished_configs(tmp_path, monkeypatch):
    uri = _mlflow_env(tmp_path, monkeypatch)
    cfg = _compose([*FAST, "model=logreg", "study=resume"])
    first = evaluate.evaluate(cfg)
    assert first.run_id and not first.skipped
    calls = []
    monkeypatch.setattr(evaluate, "cross_validate", lambda *a, **k: calls.append(1))
    again = evaluate.evaluate(cfg)
    assert again.skipped and again.run_id == first.run_id and again.summary == first.summary  # finished: not rerun
    assert not calls
    assert len([r for r in _runs(uri, "resume") if r.data.tags["role"] == "cv_parent"]) == 1
    changed = _compose([*FAST, "model=logreg", "study=resume", "seed=1"])
    monkeypatch.undo()
    _mlflow_env(tmp_path, monkeypatch)
    evaluate.evaluate(changed)
    assert len([r for r in _runs(uri, "resume") if r.data.tags["role"] == "cv_parent"]) == 2


def test_a_ctrl_c_while_a_run_starts_never_leaves_it_finished(tmp_path, monkeypatch):
    from prcrs.tracking import cv_logging

    uri = _mlflow_env(tmp_path, monkeypatch)
    cfg = _compose([*FAST, "model=logreg", "study=start"])

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(cv_logging.CVRunLogger, "_log_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate(cfg)
    assert mlflow.active_run() is None  # else MLflow's exit hook marks it FINISHED, results or not
    assert [r.info.status for r in _runs(uri, "start")] == ["FAILED"]
    monkeypatch.undo()
    _mlflow_env(tmp_path, monkeypatch)
    again = evaluate.evaluate(cfg)
    assert not again.skipped and again.summary["mean_test_auroc"] > 0.5


def test_a_ctrl_c_a_library_swallows_while_results_are_logged_stops_and_never_leaves_it_finished(
        tmp_path, monkeypatch):
    """The interrupt is recorded (`interrupts`), so the run ends FAILED and the sweep stops after it."""
    from prcrs import interrupts
    from prcrs.tracking import cv_logging

    uri = _mlflow_env(tmp_path, monkeypatch)
    real = cv_logging.CVRunLogger.log_result

    def swallowed(self, result):
        interrupts._asked.set()  # as the handler does, the KeyboardInterrupt then caught by a library
        return real(self, result)

    monkeypatch.setattr(cv_logging.CVRunLogger, "log_result", swallowed)
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluate.evaluate(_compose([*FAST, "model=logreg", "study=swallowed"]))
    finally:
        interrupts.answered()
    assert [r.info.status for r in _runs(uri, "swallowed") if r.data.tags["role"] == "cv_parent"] == ["FAILED"]


def test_a_ctrl_c_while_a_run_is_described_lets_the_write_finish_then_stops(tmp_path, monkeypatch):
    """A Ctrl-C inside a store write is held to the write's end (`interrupts.held`): a write cut
    in half keeps SQLite's lock, and the run could not be ended. Here it lands as the parameters
    are logged: they are all stored, the run ends FAILED, and a later run of it resumes."""
    from prcrs import interrupts

    uri = _mlflow_env(tmp_path, monkeypatch)
    real = mlflow.log_params

    def pressed(params, *a, **k):  # Ctrl-C lands as the write begins
        signal.raise_signal(signal.SIGINT)
        return real(params, *a, **k)

    monkeypatch.setattr(mlflow, "log_params", pressed)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a shell starts it
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluate.evaluate(_compose([*FAST, "model=logreg", "study=held"]))
    finally:
        signal.signal(signal.SIGINT, before)
        interrupts.answered()
    (run,) = [r for r in _runs(uri, "held") if r.data.tags["role"] == "cv_parent"]
    assert run.info.status == "FAILED" and run.data.params["model.name"] == "logreg"
    monkeypatch.setattr(mlflow, "log_params", real)
    assert not evaluate.evaluate(_compose([*FAST, "model=logreg", "study=held"])).skipped


def test_a_run_started_with_sigint_blocked_still_takes_a_ctrl_c():
    """A blocked signal mask is inherited across exec (a test runner, a supervisor may leave
    SIGINT blocked): `interrupts.install` unblocks it, or a Ctrl-C would wait forever."""
    code = ("import signal; from prcrs import interrupts; interrupts.install(); "
            "print(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))")
    def blocked():  # SIGINT at its default disposition (whatever the runner's), but blocked
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          preexec_fn=blocked)
    assert done.stdout.strip() == "False", done.stderr[-1000:]


def test_a_run_marked_finished_without_its_summary_is_not_resumed(tmp_path, monkeypatch):
    _mlflow_env(tmp_path, monkeypatch)
    cfg = _compose([*FAST, "model=logreg", "study=bare"])
    done = evaluate.evaluate(cfg)
    experiment = mlflow.get_experiment_by_name("bare").experiment_id
    run = mlflow.get_run(done.run_id)
    with mlflow.start_run(experiment_id=experiment, tags=run.data.tags):  # a newer one with no results
        pass
    found = store.finished_run(experiment, run.data.tags["config_hash"])
    assert found.info.run_id == done.run_id


def _interactive():
    """As a shell starts a command: SIGINT neither ignored nor blocked, whatever the test runner
    has (a runner started in the background ignores it, and its children would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _interrupt_in_training(cmd, cwd, uri, study: str, model: str, folds: int) -> subprocess.Popen | None:
    """Start the sweep `cmd`; once `model`'s parent run is RUNNING with fewer than `folds` folds
    logged (training, not yet logging its results), freeze the process group, check that state
    again while it is frozen (a store it froze mid-write cannot be read: thaw and look again),
    and press Ctrl-C. None when the sweep got past that state first
    (a loaded machine): the caller starts over."""
    sweep = subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=_interactive)

    def training():
        try:
            runs = _runs(uri, study)
        except Exception:  # noqa: BLE001 - the store is locked by the frozen sweep mid-write: not known now
            return False
        parents = {r.data.tags["model"]: r for r in runs if r.data.tags["role"] == "cv_parent"}
        run = parents.get(model)
        if run is None or run.info.status != "RUNNING":
            return False
        logged = [r for r in runs if r.data.tags["role"] == "cv_fold" and r.data.tags.get("model") == model]
        return len(logged) < folds

    deadline = time.monotonic() + 600
    while sweep.poll() is None and time.monotonic() < deadline:
        if training():
            os.killpg(sweep.pid, signal.SIGSTOP)  # frozen: the run cannot move on before the Ctrl-C lands
            if training():
                os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C reaches the whole group, fold workers included
                os.killpg(sweep.pid, signal.SIGCONT)  # delivered as the group resumes, still training
                return sweep
            os.killpg(sweep.pid, signal.SIGCONT)
        time.sleep(0.1)
    sweep.kill()
    sweep.communicate()
    return None


@pytest.mark.slow
def test_an_interrupted_sweep_stops_at_once_keeps_finished_runs_and_resumes(tmp_path, monkeypatch):
    for attempt in range(3):  # the interrupt must land while the cnn trains: start over if it got past that
        home = tmp_path / f"attempt{attempt}"
        home.mkdir()
        uri = _mlflow_env(home, monkeypatch)
        cmd = [sys.executable, str(ROOT / "run.py"), "-m", *FAST, "model=logreg,cnn", "trainer.max_epochs=20",
               "trainer.patience=20", "study=interrupt", f"hydra.sweep.dir={home / 'sweep'}"]
        sweep = _interrupt_in_training(cmd, home, uri, "interrupt", "cnn", folds=2)
        if sweep is not None:
            break
    else:
        pytest.fail("the cnn run was never caught training in 3 sweeps")
    stderr = sweep.communicate(timeout=30)[1]  # the workers' output too: they share it
    assert sweep.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, stderr[-2000:]
    parents = [r for r in _runs(uri, "interrupt") if r.data.tags["role"] == "cv_parent"]
    assert {r.data.tags["model"]: r.info.status for r in parents} == {"logreg": "FINISHED", "cnn": "FAILED"}
    resumed = subprocess.run(cmd, capture_output=True, text=True, cwd=home, timeout=600)
    assert resumed.returncode == 0 and "already finished" in resumed.stdout, resumed.stderr[-2000:]
    parents = [r for r in _runs(uri, "interrupt") if r.data.tags["role"] == "cv_parent"]
    assert sorted(r.data.tags["model"] for r in parents if r.info.status == "FINISHED") == ["cnn", "logreg"]


def test_a_store_used_once_does_not_become_the_default(tmp_path, monkeypatch):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert store.use_store(other) == other and mlflow.get_tracking_uri() == other
    assert store.tracking_uri() == f"sqlite:///{paths.home() / 'mlruns' / 'mlflow.db'}"  # MLflow wrote the variable
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////srv/team.db")
    store.use_store(other)
    assert store.tracking_uri() == "sqlite:////srv/team.db"


def test_threshold_is_chosen_on_inner_validation_rows_never_the_test_fold(monkeypatch):
    cfg = _compose([*FAST, "model=logreg", "cv.n_jobs=1"])  # in-process folds: the spies see them
    data = make_horizon(synthetic_cart(seed=0), 1)
    seen = {"val": [], "threshold_rows": []}
    real_fit_fold = engine.fit_fold

    def spy_fit_fold(*a, **k):  # the validation rows each fold's model split off (its train_split)
        fitted = real_fit_fold(*a, **k)
        seen["val"].append(fitted.val)
        return fitted

    def spy_threshold(y, proba):
        seen["threshold_rows"].append(np.asarray(y))
        return 0.4321

    from prcrs.preprocessing import FoldPreprocessor

    real_fit = FoldPreprocessor.fit

    def spy_fit(self, X, grade_today=None):
        seen.setdefault("fit_rows", []).append(set(X.index))
        return real_fit(self, X, grade_today)

    monkeypatch.setattr(engine, "fit_fold", spy_fit_fold)
    monkeypatch.setattr(fitting, "best_f1_threshold", spy_threshold)
    monkeypatch.setattr(FoldPreprocessor, "fit", spy_fit)
    result = engine.cross_validate(run_config.run_spec(cfg, data.fill_values), data)
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
    oof = engine.cross_validate(run_config.run_spec(cfg, data.fill_values), data).oof
    assert len(oof) == len(data) and not oof.duplicated(["patient", "day"]).any()
    assert oof.groupby("patient")["fold"].nunique().max() == 1


def test_paper_protocol_uses_rows_raw_values_and_threshold_0_3():
    cfg = _compose([*FAST, "model=logreg", "protocol=paper"])
    data = make_horizon(synthetic_cart(seed=0), 1)
    oof = engine.cross_validate(run_config.run_spec(cfg, data.fill_values), data).oof
    assert (oof["threshold"] == 0.3).all()
    assert oof.groupby("patient")["fold"].nunique().max() > 1  # a patient's days on both sides
    pre = run_config.build_estimator(cfg, data.fill_values).preprocessor
    assert pre.raw and pre.unimpute == "none"  # raw values, the data as published


@pytest.mark.slow
@pytest.mark.parametrize("override,message", [("model=nope", "Could not find 'model/nope'"),
                                              ("trainer.max_epoch=3", "max_epoch"),
                                              ("model.estimator.backbone.heads=5", "divisible by num_heads")])
def test_bad_overrides_get_hydras_clear_error(override, message, tmp_path, monkeypatch):
    _mlflow_env(tmp_path, monkeypatch)  # options checked once the data and store are open: not the project's
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), *override.split()], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow  # eight evaluations up to their one-line error: about 20 s
@pytest.mark.parametrize("override,message", [("protocol=fair", "Could not find 'protocol/fair'"),
                                              ("factors=15", "factors=15 is not a platform combination"),
                                              ("horizon=-1", "horizon=-1 must be a whole number"),
                                              ("optimizer.lr=-1", "Invalid learning rate: -1"),
                                              ("trainer.max_epochs=abc", "trainer.max_epochs must be a whole"),
                                              ("model=base/deep", "config model.name"),
                                              ("model=hgb model.estimator.estimator.learning_rate=-1",
                                               "model.estimator.estimator: The 'learning_rate' parameter"),
                                              ("seed=abc", "seed=abc must be a whole number >= 0")])
def test_bad_values_are_one_line_errors_naming_them(override, message, tmp_path, monkeypatch, capsys):
    """As the end-to-end cases above, in this process: `say` prints what run.py prints."""
    from prcrs.errors import say

    _mlflow_env(tmp_path, monkeypatch)
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the one-line message is what is tested
        evaluate.evaluate(run_config.compose_config([*FAST, *override.split()]))
    assert say(raised.value) == 2
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(said) == 1 and message in said[0], said


@pytest.mark.parametrize("override,message", [("seed=-1", "seed=-1 must be"), ("cv.repeats=0", "cv.repeats=0"),
                                              ("cv.folds=1", "cv.folds=1"), ("data.n_patients=0", "data.n_patients=0"),
                                              ("cv.inner_val_fraction=0", "in (0, 0.5]"),
                                              ("cv.inner_val_fraction=1.5", "in (0, 0.5]"),
                                              ("cv.n_jobs=true", "cv.n_jobs=True"),
                                              ("transfer=covid transfer.val_fraction=0.9",
                                               "transfer.val_fraction=0.9")])
def test_bad_run_values_are_one_line_errors_before_anything_runs(override, message):
    from prcrs.config_checks import check_run_config
    from prcrs.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        check_run_config(_compose(override.split()))


@pytest.mark.parametrize("override,message", [("trainer.accelerator=tpu", "trainer.accelerator=tpu"),
                                              ("trainer.devices=0", "trainer.accelerator=cpu, trainer.devices=0"),
                                              ("transfer=covid transfer.freeze=half", "unknown freeze policy 'half'"),
                                              ("model=logreg model.estimator.estimator.C=-1", "'C' parameter")])
def test_options_the_model_cannot_use_are_one_line_errors_before_training(override, message):
    from prcrs.errors import ConfigError

    cfg = _compose([*FAST, *override.split()])
    with pytest.raises(ConfigError, match=re.escape(message)):
        engine.check_model(run_config.run_spec(cfg, {}), run_config.features_of(cfg))


@pytest.mark.slow  # a run.py in a process of its own, waiting on a closed port
def test_an_unreachable_tracking_server_is_one_line_within_seconds(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), *FAST, "model=logreg"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 2 and "tracking server http://127.0.0.1:9 does not answer" in done.stderr
    assert "Traceback" not in done.stderr and time.perf_counter() - start < 60


@pytest.mark.slow
def test_sweeps_run_through_the_joblib_launcher(tmp_path, monkeypatch):
    """The submitit launcher (the cluster's, `hydra/launcher=slurm`, run here as submitit_local)
    runs a TPE study in tests/test_tuning.py."""
    uri = _mlflow_env(tmp_path, monkeypatch)
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", *FAST, "model=logreg,tree", "trainer.threads=1",
           "study=parallel", "hydra/launcher=parallel", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    parents = [r for r in _runs(uri, "parallel") if r.data.tags["role"] == "cv_parent"]
    assert sorted(r.data.tags["model"] for r in parents) == ["logreg", "tree"]
    assert all(r.info.status == "FINISHED" for r in parents)


def test_slurm_launcher_config_composes():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.cpus_per_task == 2


def test_config_hash_covers_the_data_and_the_config_not_their_spelling():
    cohort = synthetic_cart(seed=0, n_patients=30)
    base = run_config.config_hash(_compose(FAST), cohort)
    assert run_config.config_hash(_compose([*FAST, "factors=1234"]), cohort) == base  # int 1234 vs "1234"
    assert run_config.config_hash(_compose([*FAST, "cv.n_jobs=1", "study=other"]), cohort) == base
    assert run_config.config_hash(_compose([*FAST, "seed=1"]), cohort) != base
    changed = synthetic_cart(seed=0, n_patients=30)
    changed.frame.loc[0, "grade"] = 4 - changed.frame.loc[0, "grade"]
    assert run_config.config_hash(_compose(FAST), changed) != base  # other data: never resumed from


def test_options_added_later_keep_the_stored_runs_hashes_only_at_their_old_value():
    cohort = synthetic_cart(seed=0, n_patients=30)
    base = run_config.config_hash(_compose(FAST), cohort)
    without = _compose(FAST)
    with open_dict(without):
        for key in ("accelerator", "devices"):  # a config from before the options
            del without.trainer[key], without.model.estimator[key]
    assert run_config.config_hash(without, cohort) == base
    assert run_config.config_hash(_compose([*FAST, "trainer.accelerator=gpu"]), cohort) != base
    covid = _compose([*FAST, "transfer=covid"])
    assert run_config.config_hash(_compose([*FAST, "transfer=covid", "transfer.val_fraction=0.2"]), cohort) != \
        run_config.config_hash(covid, cohort)
    with open_dict(covid):
        del covid.transfer["val_fraction"]
    assert run_config.config_hash(covid, cohort) == run_config.config_hash(_compose([*FAST, "transfer=covid"]), cohort)


def test_the_paths_config_says_where_sheets_and_caches_are(tmp_path, monkeypatch):
    from prcrs.data.synthetic import synthetic_covid, to_sheet

    monkeypatch.delenv("PRCRS_DATA_DIR", raising=False)
    to_sheet(synthetic_cart(seed=0, n_patients=20).frame).to_excel(tmp_path / "CAR-T.xlsx", index=False)
    cfg = _compose([f"paths.data_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}", "transfer=covid"])
    assert cfg.paths.root_dir == str(paths.home())
    cohort = run_config.load_cart_for(cfg)
    assert cohort.source == str(tmp_path / "CAR-T.xlsx") and cohort.n_patients == 20
    estimator = run_config.build_estimator(cfg, {}, covid=synthetic_covid(n_subjects=60))
    assert estimator.init_from.cache_dir == str(tmp_path / "cache")


def test_an_unmeasured_optimized_metric_fails_before_any_training(monkeypatch):
    from prcrs.errors import ConfigError

    monkeypatch.setattr(evaluate, "cross_validate", lambda *a, **k: pytest.fail("trained"))
    cfg = _compose([*FAST, "protocol=paper", "optimized_metric=mean_val_auroc"])
    with pytest.raises(ConfigError, match="mean_val_auroc.*not measured"):
        evaluate.evaluate(cfg)


def test_the_store_holds_no_input_path_unless_asked(tmp_path, monkeypatch):
    """A file named after a patient: its name reaches the store only with logger.log_data_file=true,
    its folder never; the content id always does."""
    from prcrs.data.synthetic import to_sheet

    uri = _mlflow_env(tmp_path, monkeypatch)
    folder = tmp_path / "Ward_7_Jane_Doe"
    folder.mkdir()
    path = folder / "Jane_Doe_labs.csv"
    to_sheet(synthetic_cart(seed=0, n_patients=40).frame).to_csv(path, index=False)
    for study, extra in (("private", ["logger.log_predictions=false"]), ("named", ["logger.log_data_file=true"])):
        overrides = [*FAST, "model=logreg", "cv.n_jobs=1", f"data.path={path}", f"study={study}", *extra]
        evaluate.evaluate(run_config.compose_config(overrides), overrides)
        parent = next(r for r in _runs(uri, study) if r.data.tags["role"] == "cv_parent")
        folder_tmp = tmp_path / study
        files = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, dst_path=str(folder_tmp))
        logged = " ".join([*parent.data.tags.values(), *parent.data.params.values(),
                           *(p.read_text() for p in Path(files).glob("*.yaml")),
                           *(p.read_text() for p in Path(files).glob("*.txt"))])
        assert "Ward_7" not in logged and parent.data.tags["data_content"]
        assert ("Jane_Doe" in logged) == (study == "named")
        assert (Path(files) / "oof_predictions.csv").exists() == (study == "named")


def _descendants(pid: int) -> set[int]:
    """Every live descendant of `pid`, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_sigkill_leaves_no_workers_and_the_next_start_marks_the_run_killed(tmp_path, monkeypatch):
    uri = _mlflow_env(tmp_path, monkeypatch)
    cmd = [sys.executable, str(ROOT / "run.py"), *FAST, "model=cnn", "cv.n_jobs=2", "trainer.max_epochs=200",
           "trainer.patience=200", "study=kill", f"hydra.run.dir={tmp_path / 'out'}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # until the parent run exists and the fold workers train
        time.sleep(1)
        exp = (store.use_store(uri), mlflow.get_experiment_by_name("kill"))[1]
        if exp and mlflow.search_runs([exp.experiment_id], output_format="list") and len(_descendants(proc.pid)) >= 3:
            break
    tree = _descendants(proc.pid)
    assert tree, proc.stderr.read() if proc.poll() is not None else "no workers started"
    proc.kill()
    proc.wait()
    time.sleep(5)
    assert not [p for p in tree if _alive(p)]  # fork server and workers died with their parent
    assert [r.info.status for r in _runs(uri, "kill") if r.data.tags["role"] == "cv_parent"] == ["RUNNING"]
    exp = mlflow.get_experiment_by_name("kill")
    assert leases.reap_dead_runs(exp.experiment_id) == 1
    assert [r.info.status for r in _runs(uri, "kill") if r.data.tags["role"] == "cv_parent"] == ["KILLED"]


@pytest.mark.slow
def test_a_run_killed_as_a_containers_pid_1_is_reaped_and_run_again(tmp_path, monkeypatch):
    """In a PID namespace of its own (a container) the run's process is PID 1, a PID that is alive
    everywhere: its lease, not its PID, tells that it died."""
    import shutil

    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root (a PID namespace)")
    uri = _mlflow_env(tmp_path, monkeypatch)
    args = [str(ROOT / "run.py"), *FAST, "model=cnn", "cv.n_jobs=1", "trainer.max_epochs=8", "trainer.patience=8",
            "study=container", f"hydra.run.dir={tmp_path / 'out'}"]
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline, running = time.time() + 180, []
    while time.time() < deadline and not running and proc.poll() is None:
        time.sleep(0.2)
        running = [r for r in _runs(uri, "container") if r.info.status == "RUNNING"
                   and r.data.tags.get("role") == "cv_parent"]
    assert running, proc.stderr.read() if proc.poll() is not None else "the run never started"
    assert running[0].data.tags["pid"] == "1"  # PID 1 of its namespace
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(300):  # until every process of the group (its PID 1 included) has exited: not a timing
        try:
            os.killpg(proc.pid, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            break
    exp = mlflow.get_experiment_by_name("container")
    assert leases.reap_dead_runs(exp.experiment_id, uri) == 1  # no wait, no clock: its lease is free
    again = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)  # the same config, as PID 1 again
    assert again.returncode == 0 and "being run now" not in again.stderr, again.stderr[-2000:]
    assert {r.info.status for r in _runs(uri, "container") if r.data.tags["role"] == "cv_parent"} == {"KILLED",
                                                                                                       "FINISHED"}


def test_the_code_fingerprint_follows_code_not_comments(tmp_path):
    import shutil

    from prcrs.code_fingerprint import PACKAGE, fingerprint_of

    copy = tmp_path / "prcrs"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "conf"))
    before = fingerprint_of(copy)
    model = copy / "models" / "estimators.py"
    text = model.read_text()
    model.write_text(text.replace('"""Estimators the cross-validation calls', '"""Estimators (edited) that CV calls', 1)
                     + "\n# a comment\n")
    (copy / "cli.py").write_text((copy / "cli.py").read_text() + "\nX = 1\n")  # cannot change a number
    assert fingerprint_of(copy) == before
    deep = copy / "models" / "deep.py"
    deep.write_text(deep.read_text().replace("min_epochs=min(self.min_epochs, self.max_epochs)",
                                             "min_epochs=self.min_epochs"))
    assert fingerprint_of(copy) != before  # an edit of a model's code


def test_a_run_of_equivalent_code_is_resumed_unless_a_fold_of_it_diverged(monkeypatch):
    """Code recorded as computing the same numbers resumes a stored run, but not one with a
    diverged fold: that is where a change (a non-finite step left out) may make it train."""
    from types import SimpleNamespace

    def stored(diverged):
        return SimpleNamespace(info=SimpleNamespace(run_id="r"), data=SimpleNamespace(
            tags={"code_fingerprint": "0123456789ab"}, metrics={"mean_test_auroc": 0.9, "diverged_folds": diverged}))

    monkeypatch.setattr(evaluate, "same_numbers", lambda made_by, now: True)
    monkeypatch.setattr(store, "running_run", lambda *a: None)
    for diverged, resumed in ((0.0, True), (4.0, False)):
        monkeypatch.setattr(store, "finished_run", lambda *a, d=diverged: stored(d))
        assert (evaluate._stored("0", "hash", "label") is not None) is resumed


@pytest.mark.slow  # over 2.5 s: the inner loop stays under 3 minutes
def test_a_stored_run_made_by_other_code_is_run_again(tmp_path, monkeypatch, caplog):
    from prcrs.tracking import cv_logging

    _mlflow_env(tmp_path, monkeypatch)
    overrides = [*FAST, "model=logreg", "cv.n_jobs=1", "study=code"]
    cfg = run_config.compose_config(overrides)
    assert not evaluate.evaluate(cfg, overrides).skipped
    assert evaluate.evaluate(cfg, overrides).skipped  # the same code: resumed
    for module in (evaluate, cv_logging):  # as after an edit of a model
        monkeypatch.setattr(module, "code_fingerprint", lambda: "0123456789ab")
    again = evaluate.evaluate(cfg, overrides)
    assert not again.skipped and "was made by other code (code fingerprint" in caplog.text
    assert evaluate.evaluate(cfg, overrides).run_id == again.run_id  # the new code's run: resumed
    forced = [*overrides, "resume=never"]
    assert not evaluate.evaluate(run_config.compose_config(forced), forced).skipped  # a deliberate rerun


def test_runs_of_code_recorded_as_computing_the_same_numbers_resume(tmp_path, monkeypatch):
    from prcrs import code_fingerprint
    from prcrs.tracking import cv_logging

    _mlflow_env(tmp_path, monkeypatch)
    monkeypatch.setattr(code_fingerprint, "LINEAGE", tmp_path / "code_lineage.json")
    overrides = [*FAST, "model=logreg", "cv.n_jobs=1", "study=lineage"]
    cfg = run_config.compose_config(overrides)
    stored = evaluate.evaluate(cfg, overrides)
    made_by = code_fingerprint.code_fingerprint()
    for module in (evaluate, cv_logging, code_fingerprint):  # the code reshaped: another fingerprint
        monkeypatch.setattr(module, "code_fingerprint", lambda: "0123456789ab")
    code_fingerprint.record_equivalent("0123456789ab", "fedcba987654")
    code_fingerprint.record_equivalent("fedcba987654", made_by)  # two reshapes, each shown equivalent
    again = evaluate.evaluate(cfg, overrides)
    assert again.skipped and again.run_id == stored.run_id
    assert not code_fingerprint.same_numbers("aaaaaaaaaaaa", "0123456789ab")


def test_two_reshapes_shown_against_one_baseline_compute_each_others_numbers(tmp_path, monkeypatch):
    """Equivalence recorded as new -> baseline twice links the two new fingerprints: runs of the
    first reshape resume under the second (a directed search missed them)."""
    from prcrs import code_fingerprint

    monkeypatch.setattr(code_fingerprint, "LINEAGE", tmp_path / "code_lineage.json")
    code_fingerprint.record_equivalent("aaaaaaaaaaa1", "000000000000")
    code_fingerprint.record_equivalent("aaaaaaaaaaa2", "000000000000")
    assert code_fingerprint.same_numbers("aaaaaaaaaaa1", "aaaaaaaaaaa2")
    assert code_fingerprint.same_numbers("000000000000", "aaaaaaaaaaa2")
    assert not code_fingerprint.same_numbers("bbbbbbbbbbbb", "aaaaaaaaaaa2")


def test_the_sweep_summary_ranks_within_each_task(tmp_path):
    import json

    from prcrs.tracking.sweep_summary import markdown, sweep_table

    jobs = [("0", 0, "hgb", 0.97), ("1", 1, "hgb", 0.93), ("2", 1, "forest", 0.95), ("3", 0, "logreg", 0.90)]
    for job, horizon, model, auroc in jobs:
        folder = tmp_path / job
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- model={model}\n- horizon={horizon}\n")
        (folder / "summary.json").write_text(json.dumps({"mean_test_auroc": auroc, "std_test_auroc": 0.01,
                                                         "mean_test_auprc": 0.5, "std_test_auprc": 0.1,
                                                         "n_finite_folds": 5}))
        (folder / "run.json").write_text(json.dumps({"run_id": f"run{job}", "model": model, "task": {
            "horizon": horizon, "protocol": "honest", "factors": "1234"}}))
    table = sweep_table(tmp_path)
    assert table[["horizon", "rank", "run_id"]].values.tolist() == [[0, 1, "run0"], [0, 2, "run3"], [1, 1, "run2"],
                                                                    [1, 2, "run1"]]
    text = markdown(table)
    assert "### horizon 0, protocol honest, factors 1234" in text and "### horizon 1" in text
    assert text.index("run2") < text.index("run1")  # hgb at horizon 0 never ranks against horizon 1


READER = """
import sys, time
from pathlib import Path
import mlflow
uri, stop = sys.argv[1], Path(sys.argv[2])
while not stop.exists():  # a UI or a poll every 50 ms, started before the store exists
    try:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments()
    except Exception:
        pass
    time.sleep(0.05)
"""


@pytest.mark.slow
def test_a_store_read_by_another_process_from_before_it_exists_never_fails_a_sweep(tmp_path, monkeypatch):
    uri = _mlflow_env(tmp_path, monkeypatch)
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, uri, str(stop)])
    try:
        time.sleep(0.3)
        sweep = subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", *FAST, "model=logreg,tree", "cv.n_jobs=1",
                                "study=reader", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=600)
    finally:
        stop.touch()
        reader.wait(30)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert sorted(r.info.status for r in _runs(uri, "reader") if r.data.tags["role"] == "cv_parent") == [
        "FINISHED", "FINISHED"]


def test_a_reused_pid_is_another_process():
    """A run's owner is its PID and that process's start time: PID 1 (alive) started at another
    time is not the owner."""
    tags = leases.owner_tags()
    assert leases.owner_alive(tags) and leases.process_start(os.getpid()) == tags["started"]
    assert not leases.owner_alive({**tags, "pid": "1"})  # alive, but not the process that logged
    assert not leases.owner_alive({**tags, "boot": "another-boot"})
    assert leases.owner_alive({**tags, "host": "another-host"})  # not ours to judge


def test_a_config_running_in_a_live_process_is_not_run_twice(tmp_path, monkeypatch, caplog):
    uri = _mlflow_env(tmp_path, monkeypatch)
    overrides = [*FAST, "model=logreg", "cv.n_jobs=1", "study=claim"]
    cfg = run_config.compose_config(overrides)
    experiment = store.setup("claim", uri)
    chash = run_config.config_hash(cfg, synthetic_cart(seed=0, n_patients=cfg.data.n_patients))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live process
    try:
        owner = {"pid": str(other.pid), "host": leases.owner_tags()["host"]}
        mlflow.MlflowClient().create_run(experiment, tags={"role": "cv_parent", "config_hash": chash, **owner})
        skipped = evaluate.evaluate(cfg, overrides)  # skipped: that process is running it
        assert skipped.run_id is None and np.isnan(skipped.score("mean_test_auroc"))
        assert "is being run now by process" in caplog.text
    finally:
        other.kill()
        other.wait()
    # its process died: reaped (KILLED), and run here
    assert evaluate.evaluate(cfg, overrides).score("mean_test_auroc") > 0.5
    statuses = sorted(r.info.status for r in _runs(uri, "claim") if r.data.tags["role"] == "cv_parent")
    assert statuses == ["FINISHED", "KILLED"]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_ctrl_c_during_start_up_is_one_line(delay, tmp_path, monkeypatch):
    _mlflow_env(tmp_path, monkeypatch)
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *FAST, "model=logreg"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_interactive)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert proc.returncode in (130, -signal.SIGINT, 0)  # 0: it finished first; -2: before Python's handler


def _store_at(db, version):
    import sqlite3

    store.setup("x", f"sqlite:///{db}")
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = ?", (version,))


def test_a_store_another_process_is_migrating_is_waited_for(tmp_path):
    """MLflow migrates a new store's schema unlocked, so a second migrator breaks the first (seen
    as AttributeError: dimension_attributes): a store below the schema head that is still changing
    is left to its maker until it reaches the head."""
    import sqlite3
    import threading

    from mlflow.store.db.utils import _get_latest_schema_revision

    db = tmp_path / "mlflow.db"
    head = _get_latest_schema_revision()
    _store_at(db, "a-step-before-the-head")  # what another process's migration shows midway

    def finish():
        time.sleep(1.0)
        with sqlite3.connect(db) as con:
            con.execute("UPDATE alembic_version SET version_num = ?", (head,))

    maker = threading.Thread(target=finish)
    started = time.monotonic()
    maker.start()
    store.settle(db, quiet=600, patience=600)
    maker.join()
    assert time.monotonic() - started >= 1.0 and store.schema_version(db) == head


def test_an_old_or_broken_store_is_not_waited_for(tmp_path):
    old = tmp_path / "old.db"
    _store_at(old, "an-older-mlflow")
    os.utime(old, (time.time() - 3600, time.time() - 3600))  # nobody has touched it for an hour
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"half a store" * 100)
    for db in (old, broken):
        started = time.monotonic()
        store.settle(db, quiet=60, patience=600)
        assert time.monotonic() - started < 60  # returned at once (MLflow names the store), not after `quiet`


def test_a_store_copied_from_the_template_is_the_store_mlflow_makes(tmp_path, monkeypatch):
    """New stores are copies of MLflow's empty tables (`empty_store_template`): the same schema,
    revision and rows as a store MLflow migrates itself, the default experiment's artifact folder
    where the new store is used; a stale or broken template is made again."""
    import sqlite3

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.chdir(tmp_path)

    def contents(db):
        with contextlib.closing(sqlite3.connect(db)) as con:
            tables = sorted((kind, name, sorted(line.strip(" ,") for line in (sql or "").splitlines()))
                            for kind, name, sql in con.execute("SELECT type, name, sql FROM sqlite_master "
                                                               "WHERE name NOT LIKE 'sqlite_%'"))
            # (MLflow's migrations write a table's constraints in an order that varies between runs)
            rows = {name: sorted(map(repr, con.execute(f"SELECT * FROM {name}")))
                    for kind, name, _ in tables if kind == "table" and name != "experiments"}
            experiments = con.execute("SELECT experiment_id, name, artifact_location, lifecycle_stage, workspace "
                                      "FROM experiments").fetchall()
        return tables, rows, experiments

    by_mlflow = tmp_path / "mlflow-made.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{by_mlflow}").search_experiments(max_results=1)
    first, copied = tmp_path / "first" / "mlflow.db", tmp_path / "copied" / "mlflow.db"
    store._create_store(first)  # made by MLflow, kept as the template
    template = store.empty_store_template()
    assert template.is_file() and not sqlite3.connect(template).execute("SELECT * FROM experiments").fetchall()
    expected = contents(by_mlflow)
    assert contents(first) == expected
    assert expected[2] == [(0, "Default", str(tmp_path / "mlruns" / "0"), "active", "default")]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where MLflow puts the default experiment's artifacts now
    from mlflow.store.db import utils as db_utils

    with monkeypatch.context() as no_migrations:  # a copy: MLflow never makes its tables
        no_migrations.setattr(db_utils, "_initialize_tables", lambda engine: pytest.fail("tables made, not copied"))
        store._create_store(copied)
    assert contents(copied) == (*expected[:2], [(0, "Default", str(elsewhere / "mlruns" / "0"), "active", "default")])
    template.write_bytes(b"half a file")  # broken: made again, and kept again
    store._create_store(tmp_path / "again" / "mlflow.db")
    assert contents(tmp_path / "again" / "mlflow.db")[:2] == expected[:2] and store.schema_version(template)


def test_a_new_store_is_made_whole_and_a_broken_one_is_named(tmp_path):
    from prcrs.errors import PrcrsError

    db = tmp_path / "store" / "mlflow.db"
    assert store.setup("fresh", f"sqlite:///{db}")
    assert db.is_file() and not list(db.parent.glob(".*creating"))  # made aside, then renamed into place
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"half a store" * 100)  # what a kill during creation can leave
    with pytest.raises(PrcrsError, match=r"cannot be opened .*move it aside \(mv .*broken.db .*broken.db.broken\)"):
        store.setup("x", f"sqlite:///{broken}")


def test_serve_refuses_a_port_out_of_range(capsys):
    from prcrs.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--port", "99999"])
    assert "port must be a whole number from 1 to 65535" in capsys.readouterr().err


def test_pretrained_weights_are_cached_by_the_code_that_made_them(monkeypatch):
    from prcrs import code_fingerprint

    cfg = run_config.compose_config(["data=synthetic", "transfer=covid"])
    data = run_config.horizon_data(cfg, run_config.load_cart_for(cfg))
    estimator = run_config.build_estimator(cfg, data.fill_values, run_config.load_covid_for(cfg))
    key = estimator.init_from.key(estimator)
    assert estimator.init_from.key(estimator) == key
    monkeypatch.setattr(code_fingerprint, "code_fingerprint", lambda: "0123456789ab")  # other code
    assert estimator.init_from.key(estimator) != key


def test_a_mean_says_how_many_folds_it_rests_on():
    import pandas as pd

    from prcrs.metrics import METRICS
    from prcrs.report.tables import ci_cell

    good = {m: 0.9 for m in METRICS}
    result = engine.CVResult(folds=[good, {m: float("nan") for m in METRICS} | {"diverged": 1.0},
                                    {m: 0.8 for m in METRICS}])
    summary = result.summary()
    assert summary["n_finite_folds"] == 2 and summary["diverged_folds"] == 1
    assert "mean ± sd over 2 of 3 folds (1 diverged: no prediction)" in evaluate.format_summary("x", summary)
    assert ci_cell(pd.Series(summary), "auroc").endswith("[2 of 3 folds]")
    assert "[" not in ci_cell(pd.Series(engine.CVResult(folds=[good, good]).summary()), "auroc")


def test_fold_workers_receive_the_run_spec_never_the_config(monkeypatch):
    from omegaconf import DictConfig

    cfg = _compose([*FAST, "model=logreg", "cv.n_jobs=1"])
    data = make_horizon(synthetic_cart(seed=0, n_patients=40), 1)
    sent = []
    real = engine.workers.map_ordered

    def spy(fn, jobs, n_jobs):
        jobs = list(jobs)
        sent.extend(arg for job in jobs for arg in job)
        return real(fn, jobs, n_jobs)

    monkeypatch.setattr(engine.workers, "map_ordered", spy)
    spec = run_config.run_spec(cfg, data.fill_values)
    engine.cross_validate(spec, data)
    assert spec in sent and not any(isinstance(arg, DictConfig) for arg in sent)
    assert (spec.design.folds, spec.fit.threshold, spec.transfer) == (2, "inner", None)


def test_a_ctrl_c_inside_a_finalizer_is_recorded_and_not_printed(monkeypatch):
    """A Ctrl-C that lands in a weakref callback or __del__ (a store object being collected) is
    printed by Python as an ignored exception with a traceback; it is recorded, and the next
    check() stops the run, so nothing is printed for it. Any other such exception still is."""
    from types import SimpleNamespace

    from prcrs import interrupts

    seen = []
    quiet = interrupts._quiet(seen.append)
    monkeypatch.setattr(interrupts, "_asked", type(interrupts._asked)())
    interrupts._asked.set()
    quiet(SimpleNamespace(exc_value=KeyboardInterrupt()))
    assert seen == []
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()
    quiet(other := SimpleNamespace(exc_value=ValueError("x")))
    assert seen == [other]
    interrupts._asked.clear()
    quiet(unasked := SimpleNamespace(exc_value=KeyboardInterrupt()))  # not from the handler: printed
    assert seen == [other, unasked]
