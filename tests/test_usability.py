"""What a new user meets first: the help of run.py and of each `prcrs` command, and that nothing is
written where the user did not ask."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from prcrs import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_py_help_lists_the_groups_their_options_and_examples():
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert text.startswith("python run.py: cross-validate one config")
    assert "model: cnn, day_transformer, forest, gru, hgb" in text and "protocol: honest, paper" in text
    assert "horizon=0..3" in text and "python run.py -m experiment=table2" in text
    assert "Powered by Hydra" not in text  # not the stock page


@pytest.mark.parametrize("command", ["audit", "report", "train-final", "predict", "serve"])
def test_each_prcrs_command_has_a_description_and_an_example(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]
    assert len(description) > 80 and "examples:" in text and f"prcrs {command}" in text.split("examples:")[1]


@pytest.mark.slow
def test_hydra_writes_its_run_folder_under_paths_output_dir(tmp_path, monkeypatch):
    """... and keeps no input path there (a file may be named after a patient): .hydra/*.yaml
    hold the placeholder MLflow logs."""
    from prcrs.data.synthetic import synthetic_cart, to_sheet

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    work = tmp_path / "work"
    work.mkdir()
    named = tmp_path / "named_after_someone.csv"
    to_sheet(synthetic_cart(seed=1).frame).to_csv(named, index=False)
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "model=logreg", f"data.path={named}", "cv.folds=2",
                           f"paths.output_dir={tmp_path / 'out'}"], cwd=work, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list((tmp_path / "out" / "runs").glob("*/*/summary.json"))  # the folder asked for
    assert not any(work.iterdir())  # nothing in the current folder, no MLflow artifacts either
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name == "overrides.yaml" for p in written)
    assert not [p for p in written if "named_after_someone" in p.read_text(errors="replace")]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    names = [e.name for e in mlflow.search_experiments()]
    assert "main" in names and len({n.lower() for n in names}) == len(names), names  # one casing each


@pytest.mark.slow  # over 2.5 s: the inner loop stays under 3 minutes
def test_what_a_user_can_fix_is_one_line_naming_it(tmp_path, monkeypatch):
    """Unknown keys (with the nearest valid one), keys no config reads, 64-bit seeds, horizons
    past 3, a one-class cohort, a report whose run lost its artifacts: each a one-line error."""
    import mlflow

    from prcrs import evaluate, run_config
    from prcrs.config_checks import check_command_line, check_run_config
    from prcrs.data.synthetic import synthetic_cart, to_sheet
    from prcrs.errors import ConfigError, DataError, PrcrsError
    from prcrs.report.build import build_report

    for argv, said in ((["modle=prcrs"], "unknown config key 'modle'; did you mean 'model'?"),
                       (["-m", "model=cnn,prcrs", "modle=3"], "unknown config key 'modle'"),
                       (["+modle=logreg"], "+modle: no config reads 'modle'"),
                       (["model.estimator.backbon.d=3"], "did you mean 'model.estimator.backbone'?")):
        with pytest.raises(ConfigError, match=re.escape(said)):
            check_command_line(argv)
    check_command_line(["-m", "model=cnn,prcrs", "horizon=0,1", "hydra/launcher=parallel", "--cfg", "job"])
    with pytest.raises(ConfigError, match="seed=4294967296 must be below 2"):
        check_run_config(run_config.compose_config(["seed=4294967296"]))
    with pytest.raises(ConfigError, match="horizon=7 must be a whole number of days from 0 to 3"):
        check_run_config(run_config.compose_config(["horizon=7"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mild = synthetic_cart(seed=2, n_patients=30).frame
    mild["grade"] = mild["grade"].clip(upper=2)  # no day at grade 3 or above: one class
    to_sheet(mild).to_csv(tmp_path / "mild.csv", index=False)
    with pytest.raises(DataError, match="no patient-day of its .* has severe CRS .* one class"):
        evaluate.evaluate(run_config.compose_config([f"data.path={tmp_path / 'mild.csv'}", "model=logreg"]))
    run = evaluate.evaluate(run_config.compose_config(["data=synthetic", "model=logreg", "cv.folds=2", "study=table2"]))
    artifacts = Path(mlflow.get_run(run.run_id).info.artifact_uri.removeprefix("file://"))
    (artifacts / "oof_predictions.csv").unlink()
    with pytest.raises(PrcrsError, match=f"run {run.run_id} \\(logreg, study table2.* no oof_predictions.csv"):
        build_report(tmp_path / "reports")
    assert not (tmp_path / "reports").exists()  # nothing written


def test_running_out_of_memory_is_one_line(capsys):
    from prcrs.errors import say

    assert say(MemoryError()) == 2 and "out of memory" in capsys.readouterr().err
