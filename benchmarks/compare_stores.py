"""The same configs in two stores, side by side: did a change of the code move any result?

    python benchmarks/compare_stores.py sqlite:////tmp/before/mlruns/mlflow.db \\
        sqlite:////tmp/after/mlruns/mlflow.db --studies table2 history --tolerance 0.005

A config is its study and what its run tags say it ran (model, ablation, factors, horizon,
history, protocol, transfer; not its config hash, which a changed default moves). Prints, per
config both stores finished, `mean_test_auroc` and `pooled_test_auroc` before and after and their
differences, and the configs whose mean AUROC moved by more than `--tolerance`; exits 1 when
any did. Reads the stores only.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

KEYS = ["study", "model", "ablation", "factors", "horizon", "history", "protocol", "transfer"]
METRICS = ["mean_test_auroc", "pooled_test_auroc"]


def finished_configs(uri: str, studies: list[str]) -> pd.DataFrame:
    """One row per finished CV parent run of `studies` in the store at `uri`: KEYS and METRICS."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    rows = []
    for study in studies:
        experiment = client.get_experiment_by_name(study)
        if experiment is None:
            continue
        for run in client.search_runs([experiment.experiment_id], "tags.role = 'cv_parent' and "
                                      "attributes.status = 'FINISHED'", max_results=10_000):
            rows.append({**{k: run.data.tags.get(k, "") for k in KEYS[1:]}, "study": study,
                         **{m: run.data.metrics.get(m, float("nan")) for m in METRICS}})
    # newest first (search_runs' order): a config run twice counts by its newest run, as the report takes it
    return pd.DataFrame(rows, columns=KEYS + METRICS).drop_duplicates(KEYS, keep="first")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--studies", nargs="+", default=["table2", "history"])
    parser.add_argument("--tolerance", type=float, default=0.005)
    parser.add_argument("--protocol", default=None, help="only this protocol (e.g. honest)")
    args = parser.parse_args()
    before, after = (finished_configs(u, args.studies) for u in (args.before, args.after))
    both = before.merge(after, on=KEYS, suffixes=("_before", "_after"))
    if args.protocol:
        both = both[both["protocol"] == args.protocol]
    for m in METRICS:
        both[f"{m}_change"] = both[f"{m}_after"] - both[f"{m}_before"]
    shown = both[KEYS + [f"{m}_{s}" for m in METRICS for s in ("before", "after", "change")]]
    with pd.option_context("display.width", 250, "display.max_rows", 500, "display.float_format", "{:.4f}".format):
        print(shown.drop(columns=["ablation", "factors", "transfer"]).to_string(index=False))
    moved = both[both["mean_test_auroc_change"].abs() > args.tolerance]
    print(f"\n{len(both)} configs in both stores ({len(before)} before, {len(after)} after); "
          f"{len(moved)} moved by more than {args.tolerance} in mean test AUROC; largest change "
          f"{both['mean_test_auroc_change'].abs().max():.4f}")
    return 1 if len(moved) else 0


if __name__ == "__main__":
    sys.exit(main())
