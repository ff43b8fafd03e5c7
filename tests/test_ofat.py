"""The OFAT sweeper: argmax per parameter on a toy objective, and a real tiny search."""

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from omegaconf import OmegaConf

from prcrs.tracking import store

ROOT = Path(__file__).resolve().parents[1]


def _sweep(cmd, tmp_path):
    done = subprocess.run([sys.executable, *cmd, f"hydra.sweep.dir={tmp_path / 'sweep'}"], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return OmegaConf.load(tmp_path / "sweep" / "ofat_path.yaml")


def test_ofat_picks_the_argmax_of_each_parameter_in_turn(tmp_path):
    path = _sweep([str(ROOT / "tests" / "toy_ofat" / "app.py"), "-m", "hydra/sweeper=ofat", "x=1,2,3",
                   "y=1,3,5"], tmp_path)
    assert dict(path.chosen) == {"x": "2", "y": "3"}
    assert [step.parameter for step in path.path] == ["x", "y"]
    assert list(path.path[0].scores) == [-5.0, -4.0, -5.0]  # y held at its first value, 1
    assert list(path.path[1].scores) == [-4.0, 0.0, -4.0]  # x held at its choice, 2
    assert path.search_score == 0.0


@pytest.mark.slow
def test_ofat_search_on_run_py_scores_on_validation_and_reports_test_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("PRCRS_DATA_DIR", raising=False)
    path = _sweep(["run.py", "-m", "hydra/sweeper=ofat", "search=ofat", "data=synthetic", "model=logreg",
                   "cv.folds=2", "study=ofat", "model.estimator.estimator.C=0.001,1.0"], tmp_path)
    step = path.path[0]
    assert step.chosen == step["values"][max(range(2), key=lambda i: step.scores[i])]
    assert set(path.final_cv) >= {"mean_test_auroc", "mean_val_auroc"}
    assert path.final_cv.mean_val_auroc == path.search_score  # chosen by validation, test reported apart
    store.use_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("ofat")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list", filter_string="tags.role = 'search'")
    assert len(runs) == 1 and "final_mean_test_auroc" in runs[0].data.metrics
    assert runs[0].data.metrics["search_mean_val_auroc"] == path.search_score


@pytest.mark.slow  # a run.py sweep in a process of its own
def test_ofat_refuses_to_choose_on_test_folds(tmp_path):
    done = subprocess.run([sys.executable, "run.py", "-m", "hydra/sweeper=ofat", "data=synthetic", "model=logreg",
                           "model.estimator.estimator.C=0.001,1.0", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode != 0 and "would choose on test folds" in done.stderr
