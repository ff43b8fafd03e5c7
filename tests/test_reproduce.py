"""The reproduction end to end in quick mode: runs, report files with numbers, the notebook."""

import re
import sys
import warnings
from pathlib import Path

import pytest

from prcrs.report import sections

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ["README.md", *sections.files()]  # what every registered section writes (without --before)
NUMBER = re.compile(r"\d\.\d{3}")

@pytest.mark.slow
def test_quick_reproduction_builds_every_table_and_figure_with_numbers(quick_store, monkeypatch):
    from prcrs.report.build import build_report

    tmp, uri = quick_store
    monkeypatch.delenv("PRCRS_DATA_DIR", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = {p.name for p in build_report(tmp / "reports", uri, n_boot=40)}  # the intervals: tested in test_stats
    overlaps = [str(w.message) for w in caught if "drawn over each other" in str(w.message)]
    assert not overlaps, "\n".join(overlaps)  # every figure's texts apart (`plots.overlapping_text`)
    assert set(EXPECTED) <= files
    for name in EXPECTED:
        path = tmp / "reports" / name
        assert path.stat().st_size > 1000 if name.endswith(".png") else path.stat().st_size > 100, name
    for name in [n for n in EXPECTED if n.endswith(".md") and n != "model_card.md"]:  # the card: below
        text = (tmp / "reports" / name).read_text()
        assert "not run" not in text, name
        lines = text.splitlines() + [""]
        rows = [line for line, nxt in zip(lines, lines[1:], strict=False)
                if line.startswith("| ") and not nxt.startswith("|---")]  # data rows, not headers
        assert rows, name
        for row in rows:  # every data row of every table holds measured numbers
            assert NUMBER.search("|".join(row.split("|")[2:])), (name, row)
    readme = (tmp / "reports" / "README.md").read_text()
    assert "synthetic" in readme and len(re.findall(r"^\d+\. \*\*", readme, re.M)) >= 5
    assert "warns" in readme and "false alarms per patient-week" in readme  # the clinical claim
    clinical = (tmp / "reports" / "clinical.md").read_text()
    for part in ("### Calibration", "### Decision curves", "### Warning time", "### Subgroups", "### Uncertainty",
                 "### Explanations"):
        assert part in clinical
    assert "teachey" not in clinical and "cytokine model (Teachey-style)" in clinical and "m-EASIX" in clinical
    tuned = (tmp / "reports" / "tuned.md").read_text()  # the quick search: LightGBM against two networks
    assert "(best tree)" in tuned and tuned.count("ΔAUROC vs best tree") == 1
    assert "| ensemble | mean of LightGBM and MLP + embeddings |" in tuned  # the quick search's two families
    assert "matches the best tree (LightGBM)" in tuned or "no network matches the best tree (LightGBM)" in tuned
    card = (tmp / "reports" / "model_card.md").read_text()
    assert card.startswith("> **Synthetic data: a smoke test.**") and "# Model card" in card
    assert "## TRIPOD+AI checklist" in card
    for name in [n for n in EXPECTED if n.endswith(".md")]:  # every file says it is a smoke test
        assert (tmp / "reports" / name).read_text().startswith("> **Synthetic data: a smoke test.**"), name
    assert "none of 1" not in readme and "horizon(s) none" not in readme
    assert NUMBER.search(card.split("## Performance")[1])


@pytest.mark.slow
def test_notebook_runs_on_the_small_store(quick_store, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    _, uri = quick_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    nb = nbformat.read(ROOT / "notebooks" / "compare_models.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "finished runs on synthetic data" in outputs and "AUROC on average" in outputs


def test_each_artefact_holds_its_sweep_in_its_experiment_config():
    sys.path.insert(0, str(ROOT / "experiments"))
    import reproduce

    assert reproduce.sweep_of("table2") == [
        "model=cnn,transformer,squeezeformer,prcrs,rcmnet,logreg,hgb,forest,tree,measix,teachey",
        "protocol=paper,honest"]
    searches = [name for name in reproduce.artefacts() if reproduce.is_search(name)]
    assert searches == ["tuned"]  # run whole by its own sweeper (TPE), not config by config
    runs = [[f"experiment={name}", *run] for name in reproduce.artefacts() if name not in searches
            for run in reproduce.expand(reproduce.sweep_of(name))]
    assert len(runs) == 108 and ["experiment=audit"] in runs
    counts = {name: sum(r[0] == f"experiment={name}" for r in runs)
              for name in ("table2", "fig8", "fig8_paper", "history", "history_networks", "clinical")}
    assert counts == {"table2": 22, "fig8": 18, "fig8_paper": 3, "history": 24, "history_networks": 24, "clinical": 6}


@pytest.mark.slow
def test_a_section_is_one_registered_module_the_report_and_the_reproduction_read(quick_store, monkeypatch, tmp_path):
    from prcrs.report.build import build_report

    _, uri = quick_store
    monkeypatch.delenv("PRCRS_DATA_DIR", raising=False)
    monkeypatch.setattr(sections, "_REGISTRY", {})
    monkeypatch.setattr(sections.pkgutil, "iter_modules", lambda path: [])  # only the section below

    @sections.section("runs counted", order=1, experiments=("table2", "clinical"), files=("counted.md",))
    def write(report, inputs):
        report.write("counted.md", f"{len(inputs.study('table2'))} Table 2 runs\n")

    assert sections.experiments() == ("table2", "clinical") and sections.files() == ("counted.md",)
    written = {p.name for p in build_report(tmp_path / "reports", uri, n_boot=10)}
    assert written == {"counted.md", "README.md"}
    assert (tmp_path / "reports" / "counted.md").read_text().endswith("12 Table 2 runs\n")  # 6 models x 2 protocols
    sys.path.insert(0, str(ROOT / "experiments"))
    import reproduce

    assert reproduce.artefacts() == ("table2", "clinical")
