"""Fingerprints of a fixed set of cross-validations, for showing that a refactor changes no result.

    python benchmarks/equivalence.py --out before.json     # on the old code
    python benchmarks/equivalence.py --out after.json      # on the new code
    python benchmarks/equivalence.py --compare before.json after.json
    python benchmarks/equivalence.py --compare before.json after.json --record   # into prcrs/code_lineage.json

Each config runs into a fresh temporary MLflow store (nothing is resumed). Written per config:
the summary metrics (`mean_test_*`, `pooled_test_*`) and the SHA-256 of the out-of-fold
predictions file the run logged (`oof_predictions.csv`, byte for byte). The file holds
fingerprints and means only, no rows, and the code fingerprint that made them. Uses the real
sheets when `PRCRS_DATA_DIR` finds them. `--record`, when every config's predictions are
identical, records the new code fingerprint as computing the old one's numbers, so that runs
stored by the old code still resume (`prcrs.code_fingerprint.same_numbers`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["trainer.max_epochs=4", "trainer.patience=2", "trainer.min_epochs=1", "cv.explain_rows=20"]
CONFIGS = {  # three models x both protocols, one history config, one transfer config
    **{f"{model}/{protocol}": [f"model={model}", f"protocol={protocol}"]
       for model in ("logreg", "forest", "cnn") for protocol in ("paper", "honest")},
    "logreg/honest/lags": ["model=logreg", "history=lags"],
    "cnn/honest/covid": ["model=cnn", "transfer=covid"],
}


def fingerprints(n_jobs: int = 1) -> dict[str, dict]:
    """{"code_fingerprint": this code's, config name: {"oof_sha256", metric: value}, ...} for
    every config of CONFIGS, folds trained `n_jobs` at a time (results do not depend on it)."""
    import mlflow
    from hydra import compose, initialize_config_dir

    from prcrs.code_fingerprint import code_fingerprint
    from prcrs.evaluate import evaluate

    out: dict = {"code_fingerprint": code_fingerprint()}
    for name, overrides in CONFIGS.items():
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
            with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
                cfg = compose("config", overrides=[*SHORT, f"cv.n_jobs={n_jobs}", *overrides, "study=equivalence"])
            evaluation = evaluate(cfg, overrides)
            oof = Path(mlflow.artifacts.download_artifacts(run_id=evaluation.run_id,
                                                           artifact_path="oof_predictions.csv", dst_path=tmp))
            metrics = {k: round(v, 12) for k, v in sorted(evaluation.summary.items())
                       if k.startswith(("mean_test_", "pooled_test_"))}
            out[name] = {"oof_sha256": hashlib.sha256(oof.read_bytes()).hexdigest(), **metrics}
    return out


def compare(before: dict, after: dict) -> list[str]:
    """A markdown table, one row per config: same OOF file or not, and the largest metric change."""
    rows = ["| config | OOF predictions | mean AUROC before | after | largest metric change |", "|---|---|---|---|---|"]
    for name in _configs(before):
        a, b = before[name], after.get(name, {})
        shared = [k for k in a if k != "oof_sha256" and k in b]
        change = max((abs(a[k] - b[k]) for k in shared if a[k] == a[k] and b[k] == b[k]), default=float("nan"))
        rows.append(f"| {name} | {'identical' if a['oof_sha256'] == b.get('oof_sha256') else 'DIFFERENT'} | "
                    f"{a['mean_test_auroc']:.6f} | {b.get('mean_test_auroc', float('nan')):.6f} | {change:.1e} |")
    return rows


def _configs(record: dict) -> list[str]:
    return [name for name in record if name != "code_fingerprint"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the fingerprints here")
    parser.add_argument("--n-jobs", type=int, default=1, help="folds trained at once (default 1)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--record", action="store_true", help="with --compare: record AFTER's code as BEFORE's "
                                                                "when every prediction is identical")
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        print("\n".join(compare(before, after)))
        same = all(before[n]["oof_sha256"] == after.get(n, {}).get("oof_sha256") for n in _configs(before))
        if args.record and same:
            from prcrs.code_fingerprint import record_equivalent

            record_equivalent(after["code_fingerprint"], before["code_fingerprint"])
            print(f"recorded: code {after['code_fingerprint']} computes the numbers of {before['code_fingerprint']}")
        return 0 if same else 1
    if args.out is None:
        parser.error("--out or --compare")
    args.out.write_text(json.dumps(fingerprints(args.n_jobs), indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
