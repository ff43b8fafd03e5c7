"""`make ui`: the MLflow UI opens a study on its runs, with the key metrics as columns."""

import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest
from conftest import SCREENSHOTS, browser, chromium, free_port

from prcrs.tracking import runs_view, store, ui

ROOT = Path(__file__).resolve().parents[1]


def test_a_new_study_opens_on_its_runs_with_the_key_columns(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = mlflow.get_experiment(store.setup("fresh", uri))
    assert experiment.tags[runs_view.KIND_TAG] == runs_view.KIND  # not MLflow's GenAI pages
    state = runs_view.view_state()
    assert experiment.tags[f"mlflow.sharedViewState.{runs_view.VIEW}"]
    assert "metrics.`mean_test_auroc`" in state["selectedColumns"] and state["orderByAsc"] is False
    assert runs_view.runs_url("http://127.0.0.1:5000", experiment.experiment_id) == (
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?viewStateShareKey={runs_view.VIEW}"
        "&workflowType=machine_learning")


def test_a_study_made_before_the_view_existed_gets_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.use_store(uri)
    old = mlflow.create_experiment("old")  # as earlier versions made them: no tags
    assert ui.tag_studies(uri) == [("old", old)]
    assert mlflow.get_experiment(old).tags[runs_view.KIND_TAG] == runs_view.KIND


@pytest.mark.slow
def test_the_ui_shows_a_studys_runs_with_their_metrics(tmp_path, monkeypatch):
    """The address `make ui` prints shows the study's CV runs (not their folds), with mean test
    AUROC as a column. Screenshot: <tmp>/prcrs-screenshots/mlflow-runs-view.png."""
    found, why = chromium()
    if found is None:
        pytest.skip(why)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PRCRS_DATA_DIR", raising=False)
    from prcrs.evaluate import evaluate
    from prcrs.run_config import compose_config

    overrides = ["data=synthetic", "model=logreg", "cv.folds=2", "cv.n_jobs=1", "study=ui"]
    assert evaluate(compose_config(overrides), overrides).run_id
    (_, experiment_id), = ui.tag_studies(uri)
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    driver = None
    try:
        for _ in range(240):  # until the UI answers (it builds its own store tables first)
            try:
                if httpx.get(base, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        driver = browser(found, width=1800)
        driver.get(runs_view.runs_url(base, experiment_id))
        WebDriverWait(driver, 60).until(lambda d: "mean_test_auroc" in d.find_element(By.TAG_NAME, "body").text)
        text = driver.find_element(By.TAG_NAME, "body").text
        assert "logreg f1234 h1 honest synthetic" in text and "1 matching run" in text  # the CV run, not its folds
        SCREENSHOTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / "mlflow-runs-view.png"))
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
