"""What a new user meets first: the help of run.py and of each `prcrs` command, and that nothing is
written where the user did not ask."""

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
