"""reports/tuned.md: every family tuned at one budget (`experiment=tuned`, the TPE sweeper), per
horizon and input. For each study (one family, horizon and input): its trials, the chosen
trial's inner-validation AUROC, the chosen config's test-fold CV over its seeds, the optimism of
the search (inner score minus test score at the searched seed), and each network's AUROC gap to
the best tree (the tree family with the best inner score: test folds never choose) with a patient
bootstrap and DeLong's test; and the ensemble of the best tree and the best network (by inner
score), their mean probability. The searches are the study's `search` runs
(`prcrs.tracking.searches`); their `study.yaml` names the chosen config's CV run at each seed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from prcrs import metrics
from prcrs.models import catalogue
from prcrs.report import stats
from prcrs.report.tables import Report, english_list, fold_values, md_table, p_cell, values_cell
from prcrs.tracking.results import oof

STUDY = "tuned"
SEARCH_METRIC = "search_mean_val_auroc"  # what the tuned experiment's trials return (search=tpe)
MATCH = 0.005  # a network within this AUROC of the best tree matches it
TREES = "tabular"  # the catalogue family of the trees


@dataclass(frozen=True)
class Search:
    """One finished study: a family tuned at one horizon and input."""

    model: str
    horizon: int
    history: str
    trials: int
    search_score: float  # the chosen trial's mean inner-validation AUROC
    final_runs: tuple[str, ...]  # the chosen config's CV run at each seed, the searched seed first
    final_seeds: tuple[int, ...]


def searches(study: str = STUDY) -> list[Search]:
    """The latest finished search of each model, horizon and input in `study`'s experiment of the
    current MLflow store."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(study)
    if experiment is None:
        return []
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list", order_by=["start_time DESC"],
                              filter_string="tags.role = 'search' and attributes.status = 'FINISHED'")
    found: dict[tuple, Search] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            tags = run.data.tags
            key = (tags.get("model"), int(tags.get("horizon", -1)), tags.get("history", "none"))
            if key in found or None in key or SEARCH_METRIC not in run.data.metrics:
                continue
            path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="study.yaml", dst_path=tmp)
            record = OmegaConf.to_container(OmegaConf.load(path))
            final = tuple(r for r in record.get("final_runs") or () if r)
            if final:
                found[key] = Search(*key, int(record["trials"]), float(run.data.metrics[SEARCH_METRIC]), final,
                                    tuple(int(s) for s in record.get("final_seeds") or ()))
    return sorted(found.values(), key=lambda s: (s.horizon, s.history, catalogue.family_of(s.model) != TREES, s.model))


def _final_metrics(search: Search) -> list[pd.Series]:
    """The metrics of the chosen config's CV run at each seed (the searched seed first)."""
    import mlflow

    return [pd.Series(mlflow.get_run(r).data.metrics) for r in search.final_runs]


def _pooled(metrics: list[pd.Series], metric: str) -> np.ndarray:
    """Every fold's test `metric` over the seeds' runs (seeds x folds), NaN where a fold diverged."""
    return np.concatenate([fold_values(m, metric) for m in metrics])


def _stacked(search: Search) -> pd.DataFrame:
    """The out-of-fold predictions of the chosen config at every seed, a `seed` column apart."""
    return pd.concat([oof(r).assign(seed=i) for i, r in enumerate(search.final_runs)], ignore_index=True)


@dataclass(frozen=True)
class Gap:
    difference: float  # AUROC of the network minus the tree's, on the rows both predicted, all seeds pooled
    low: float  # patient-bootstrap 95 % interval (a patient's rows at every seed drawn together)
    high: float
    p_bootstrap: float
    p_delong: float  # the largest of the seeds' DeLong p-values (the seeds' rows are the same days)


def _merged(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Two stacked predictions (`_stacked`) on the test rows both predicted at the same seeds (the
    same folds): `label_a`, `probability_a`, `probability_b` per row."""
    merged = a.merge(b, on=[*stats.OOF_KEYS, "seed"], suffixes=("_a", "_b"))
    return merged.dropna(subset=["probability_a", "probability_b"])


def blend(tree: Search, network: Search) -> pd.DataFrame:
    """The mean of the two chosen configs' probabilities on the rows both predicted, per seed:
    an ensemble fixed before any test fold was seen (both members chosen on inner validation)."""
    merged = _merged(_stacked(tree), _stacked(network))
    return merged.assign(label=merged["label_a"], probability=(merged["probability_a"] + merged["probability_b"]) / 2
                         )[[*stats.OOF_KEYS, "seed", "label", "probability"]]


def fold_scores(stacked: pd.DataFrame, metric: str) -> np.ndarray:
    """`metric` ('auroc' or 'auprc') of each seed's test folds (seeds x folds), NaN where a fold
    holds one class."""
    score = {"auroc": metrics.auroc, "auprc": metrics.auprc}[metric]
    return np.array([score(g["label"].to_numpy(), g["probability"].to_numpy()) if g["label"].nunique() == 2
                     else np.nan for _, g in stacked.groupby(["seed", "repeat", "fold"])])


def gap(network: pd.DataFrame, tree: pd.DataFrame, n_boot: int) -> Gap | None:
    """The AUROC of `network`'s stacked predictions minus `tree`'s on the test rows both predicted
    at the same seeds (the same folds), or None when those rows hold one class."""
    merged = _merged(network, tree)
    if merged["label_a"].nunique() < 2:
        return None
    diff, low, high, p_boot = stats.patient_bootstrap_auroc_diff(
        merged["label_a"], merged["probability_a"], merged["probability_b"], merged["patient"], n_boot)
    p_delong = max(stats.delong_test(g["label_a"], g["probability_a"], g["probability_b"])[1]
                   for _, g in merged.groupby("seed") if g["label_a"].nunique() == 2)
    return Gap(diff, low, high, p_boot, p_delong)


def tuned_section(report: Report, found: list[Search]) -> None:
    """reports/tuned.md: a table per horizon and input, and a claim saying whether any network
    matches the best tree."""
    if not found:
        return
    blocks, verdicts = [], []
    for h, history in sorted({(s.horizon, s.history) for s in found}):
        studies = [s for s in found if (s.horizon, s.history) == (h, history)]
        trees = [s for s in studies if catalogue.family_of(s.model) == TREES]
        best_tree = max(trees, key=lambda s: s.search_score) if trees else None
        rows, gaps = [], {}
        for s in studies:
            metrics = _final_metrics(s)
            optimism = s.search_score - float(metrics[0].get("mean_test_auroc", np.nan))
            row = [catalogue.family_of(s.model) or "", catalogue.display(s.model), s.trials, f"{s.search_score:.3f}",
                   values_cell(_pooled(metrics, "auroc")), values_cell(_pooled(metrics, "auprc")), len(s.final_runs),
                   f"{optimism:+.3f}"]
            if best_tree is None or s is best_tree or catalogue.family_of(s.model) == TREES:
                rows.append(row + ["(best tree)" if s is best_tree else "–", "–", "–"])
                continue
            g = gap(_stacked(s), _stacked(best_tree), report.n_boot)
            gaps[s.model] = g
            rows.append(row + _gap_cells(g, report.n_boot))
        networks = [s for s in studies if catalogue.family_of(s.model) != TREES]
        if best_tree is not None and networks:
            best_network = max(networks, key=lambda s: s.search_score)
            mixed = blend(best_tree, best_network)
            rows.append(["ensemble", f"mean of {catalogue.display(best_tree.model)} and "
                         f"{catalogue.display(best_network.model)}", "–", "–",
                         values_cell(fold_scores(mixed, "auroc")), values_cell(fold_scores(mixed, "auprc")),
                         len(best_network.final_runs), "–",
                         *_gap_cells(gap(mixed, _stacked(best_tree), report.n_boot), report.n_boot)])
        blocks.append(f"### {h} day(s) ahead, input `{history}`\n\n" + md_table(
            ["family", "model", "trials", "inner-validation AUROC (chosen trial)",
             "test AUROC (seeds × folds, 95 % t)", "test AUPRC", "seeds", "inner − test (searched seed)",
             "ΔAUROC vs best tree (patient bootstrap 95 % CI)", "p (bootstrap)", "p (DeLong, largest over seeds)"],
            rows))
        verdicts.append(_verdict(h, history, best_tree, gaps))
    text = ("## Tuned comparison: every family at one budget (honest protocol)\n\n"
            "Each family searched its own space (`conf/search/space/`) with the same number of TPE trials; a trial "
            "is a cross-validation (`cv.folds`) scored on the inner-validation patients of its training folds "
            "only. The chosen trial's "
            "config was then cross-validated at every seed (folds and initialisation), and those test folds are "
            "what is shown: they never chose. The best tree is the tree family with the best inner-validation "
            "score. ΔAUROC: the network minus the best tree on the pooled out-of-fold rows of the same seeds "
            "(the same folds); its interval redraws patients, each with their rows at every seed. "
            f"A network matches the trees when its ΔAUROC is above −{MATCH}. The ensemble averages the "
            "probabilities of the best tree and the network with the best inner-validation score, at each seed: "
            "both members were chosen on inner validation, and the ensemble was fixed before any test fold.\n\n"
            + "\n\n".join(blocks) + "\n\n" + "\n\n".join(verdicts))
    report.write("tuned.md", text + "\n")
    report.sections.append(text)
    report.claims.append("**The paper's question at an equal tuning budget (reports/tuned.md).** "
                         + " ".join(verdicts))


def _gap_cells(g: Gap | None, n_boot: int) -> list[str]:
    if g is None:
        return ["no test row predicted by both", "–", "–"]
    return [f"{g.difference:+.3f} ({g.low:+.3f}–{g.high:+.3f})", p_cell(g.p_bootstrap, n_boot), f"{g.p_delong:.3g}"]


def _verdict(h: int, history: str, tree: Search | None, gaps: dict[str, Gap | None]) -> str:
    """One sentence per horizon and input: which networks match the best tree, or that none does."""
    where = f"{h} day(s) ahead on `{history}` inputs"
    if tree is None or not gaps:
        return f"{where}: no tree and network were both tuned."
    said = {m: g for m, g in gaps.items() if g is not None}
    matched = [m for m, g in said.items() if g.difference > -MATCH]
    best = max(said, key=lambda m: said[m].difference) if said else None
    if matched:
        return (f"{where}: {english_list(catalogue.display(m) for m in matched)} "
                f"{'matches' if len(matched) == 1 else 'match'} the best tree ({catalogue.display(tree.model)}) "
                f"within {MATCH}.")
    if best is None:
        return f"{where}: no network and tree predicted common rows."
    g = said[best]
    return (f"{where}: no network matches the best tree ({catalogue.display(tree.model)}); the closest, "
            f"{catalogue.display(best)}, is {g.difference:+.3f} AUROC (patient bootstrap 95 % CI {g.low:+.3f} to "
            f"{g.high:+.3f}).")
