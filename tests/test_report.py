"""Report sections on hand-made runs: no MLflow store needed."""

import numpy as np
import pandas as pd

from prcrs.report import build, tables
from prcrs.report.sections import fig6, fig8, transfer, what_moved
from prcrs.report.tables import Report


def _run(run_id, protocol, auroc, **tags):
    return {"run_id": run_id, "protocol": protocol, "model": "prcrs", "ablation": "none", "factors": "1234",
            "horizon": 0, "transfer": "none", "data_content": "abc", "mean_test_auroc": auroc,
            **{f"split{k}_test_{m}": auroc for k in range(5) for m in ("auroc", "auprc", "f1_macro")}, **tags}


def test_transfer_table_survives_a_run_whose_every_fold_diverged(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    predicted = pd.DataFrame({"repeat": 0, "fold": np.arange(40) % 5, "patient": np.arange(40) // 2,
                              "day": np.arange(40) % 2, "label": rng.integers(0, 2, 40), "probability": rng.random(40)})
    oofs = {"t2-paper": predicted, "t2-honest": predicted, "tr-paper": predicted.iloc[:0],  # all NaN, dropped
            "tr-honest": predicted.assign(probability=rng.random(40))}
    monkeypatch.setattr(transfer, "oof", oofs.__getitem__)
    t2 = pd.DataFrame([_run("t2-paper", "paper", 0.9), _run("t2-honest", "honest", 0.8)])
    tr = pd.DataFrame([_run("tr-paper", "paper", np.nan, transfer="covid"),
                       _run("tr-honest", "honest", 0.7, transfer="covid")])
    report = Report(tmp_path)
    transfer.transfer_table(report, t2, tr)
    text = (tmp_path / "transfer.md").read_text()
    assert "no test row predicted by both" in text and "| honest |" in text
    report = Report(tmp_path)
    transfer.transfer_table(report, t2.iloc[:1], tr.iloc[:1])  # paper runs only
    assert report.claims[-1].endswith("No honest run with and without pretraining in this store.")


def test_what_moved_matches_configs_on_the_same_data(tmp_path):
    before = {"table2": pd.DataFrame([_run("a", "honest", 0.987, model="hgb"), _run("b", "paper", 0.99, model="hgb"),
                                      _run("c", "honest", 0.9, model="hgb", data_content="other")])}
    after = {"table2": pd.DataFrame([_run("d", "honest", 0.959, model="hgb"), _run("e", "honest", 0.95)])}
    report = Report(tmp_path)
    what_moved.what_moved(report, before, after)
    rows = [line for line in (tmp_path / "what_moved.md").read_text().splitlines() if line.startswith("| table2")]
    assert len(rows) == 1 and "0.987" in rows[0] and "0.959" in rows[0] and "-0.028" in rows[0]


def test_a_report_is_built_from_one_cohort_and_one_design():
    def run(run_id, source, content, patients, design):
        return {"run_id": run_id, "data_source": source, "data_content": content, "data_patients": patients,
                "design": design}

    five = "5 folds x 1 repeat(s), seed 0"
    t2 = pd.DataFrame([run("a", "synthetic", "s60", "60", five),  # the latest, but fewer runs
                       run("b", "synthetic", "s202", "202", five), run("c", "synthetic", "s202", "202", five),
                       run("d", "synthetic", "s202", "202", "2 folds x 1 repeat(s), seed 0")])
    chosen, left_out = build.choose_cohort(t2)
    assert chosen == {"data_source": "synthetic", "data_content": "s202", "design": five}
    assert "1 Table 2 run(s) on synthetic data s60 (60 patients" in left_out and "2 folds" in left_out
    real = pd.concat([t2, pd.DataFrame([run("e", "real", "r", "202", five)])], ignore_index=True)
    assert build.choose_cohort(real)[0]["data_source"] == "real"  # real data first


def test_a_missing_before_store_is_one_line_and_is_not_created(tmp_path, capsys):
    from prcrs.cli import main

    missing = tmp_path / "old" / "mlflow.db"
    assert main(["report", "--out", str(tmp_path / "r"), "--before", f"sqlite:///{missing}"]) == 2
    assert "no such store" in capsys.readouterr().err and not missing.exists()


def test_figures_say_what_they_show(tmp_path, monkeypatch):
    """Fig. 8's lower panels: bars (not lines across unrelated combinations), a y label and the
    paper's claimed thresholds; legends say the AUROC is pooled; Fig. 6 labels its y axes once,
    without overlap (constrained layout); the claim reads as English."""
    rng = np.random.default_rng(1)
    predicted = pd.DataFrame({"repeat": 0, "fold": np.arange(60) % 5, "patient": np.arange(60) // 3,
                              "day": np.arange(60) % 3, "label": rng.integers(0, 2, 60), "probability": rng.random(60),
                              "threshold": 0.5})
    monkeypatch.setattr(fig8, "oof", lambda run_id: predicted)
    runs = [_run(f"r{c}{h}", "honest", 0.8, factors=c, horizon=h, mean_test_sensitivity=0.6, mean_test_specificity=0.9,
                 **{f"split{k}_test_{m}": 0.7 for k in range(5) for m in ("sensitivity", "specificity")})
            for c in ("1234", "4") for h in (1, 2)]
    figures = {}
    report = Report(tmp_path)
    monkeypatch.setattr(report, "save", lambda fig, name: figures.setdefault(name, fig))
    fig8.fig8_combinations(report, pd.DataFrame(runs))
    lower = figures["fig8_combinations.png"].axes[2:]
    for ax in lower:
        assert ax.get_ylabel() and len(ax.patches) == 4 and len(ax.lines) == 2  # bars; the two claims as lines
        assert any("paper's claim" in t.get_text() for t in ax.get_legend().get_texts())
    legend = figures["fig8_combinations.png"].axes[0].get_legend().get_texts()
    assert all("pooled AUROC" in t.get_text() for t in legend)
    assert "none of the horizons" in report.claims[-1] or "every horizon" in report.claims[-1]
    monkeypatch.setattr(tables, "oof", lambda run_id: predicted)  # the honest PrCRS run's predictions
    fig6.fig6_trajectories(report, pd.DataFrame([_run("t2", "honest", 0.8)]))
    drawn = figures["fig6_trajectories.png"]
    assert drawn.get_layout_engine() is not None
    assert [ax.get_ylabel() != "" for ax in drawn.axes] == [True, False, False, True, False, False]
