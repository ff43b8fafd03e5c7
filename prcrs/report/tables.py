"""What every report section is made of: the report being written, cells of numbers over
folds (mean and 95 % t interval), p-values, Markdown tables, a run picked by its tags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prcrs.plots import overlapping_text, plt
from prcrs.report import stats
from prcrs.tracking.results import oof, select

N_BOOT = 500  # patient-level bootstrap resamples
SHORT = {"precision_macro": "P", "recall_macro": "R", "f1_macro": "F1", "auroc": "AUROC", "auprc": "AUPRC",
         "sensitivity": "Sens", "specificity": "Spec", "brier": "Brier"}


PROTOCOLS = ("paper", "honest")
SHOWN = ("precision_macro", "recall_macro", "f1_macro", "auroc", "auprc")


def fold_values(run: pd.Series, metric: str) -> np.ndarray:
    keys = sorted((k for k in run.index if k.startswith("split") and k.endswith(f"_test_{metric}")),
                  key=lambda k: int(k[5:k.index("_")]))
    return run[keys].to_numpy(float)


def ci_cell(run: pd.Series | None, metric: str) -> str:
    """'0.812 (0.780-0.844)': mean over folds with its 95 % t interval; a mean over fewer folds
    than the run has (the others diverged) says so: '0.939 [1 of 5 folds]'."""
    if run is None:
        return "not run"
    return values_cell(fold_values(run, metric))


def values_cell(values: np.ndarray) -> str:
    """`ci_cell` of fold values (NaN where a fold diverged), from one run or several seeds' runs."""
    finite = int(np.isfinite(values).sum())
    mean, low, high = stats.t_interval(values[np.isfinite(values)]) if finite else (np.nan, np.nan, np.nan)
    if not np.isfinite(mean):
        return "diverged"
    rests = "" if finite == len(values) else f" [{finite} of {len(values)} folds]"
    if not np.isfinite(low):
        return f"{mean:.3f}{rests}"
    return f"{mean:.3f} ({max(low, 0.0):.3f}–{min(high, 1.0):.3f}){rests}"  # every metric shown lies in [0, 1]


def p_cell(p: float, n_boot: int | None = None) -> str:
    """A p-value; a bootstrap p of 0 means below the resolution 1/n_boot."""
    if n_boot and p == 0:
        return f"< {1 / n_boot:.3g}"
    return f"{p:.3g}"


def one(frame: pd.DataFrame, **tags) -> pd.Series | None:
    rows = select(frame, **tags) if not frame.empty else frame
    return None if rows.empty else rows.iloc[0]


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


SYNTHETIC_BANNER = ("> **Synthetic data: a smoke test.** Every number here comes from the project's synthetic "
                    "cohort, not from patients: the claims are not findings.\n\n")


def english_list(items) -> str:
    """'1', '1 and 2', '1, 2 and 3'."""
    items = [str(i) for i in items]
    return " and ".join(items) if len(items) < 3 else f"{', '.join(items[:-1])} and {items[-1]}"


@dataclass
class Report:
    """The report being written into `out`; every Markdown file starts with `banner` (the
    synthetic-data warning when the runs are on synthetic data)."""

    out: Path
    banner: str = ""
    n_boot: int = N_BOOT  # patient-bootstrap resamples of every interval and bootstrap p-value
    sections: list[str] = field(default_factory=list)
    claims: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)  # texts drawn over each other (`plots.overlapping_text`)
    files: list[Path] = field(default_factory=list)

    def save(self, fig, name: str) -> str:
        """Write `fig` as `name` and close it; texts that overlap in it are kept in `overlaps`."""
        path = self.out / name
        self.overlaps.extend(f"{name}: {a!r} and {b!r}" for a, b in overlapping_text(fig))
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.files.append(path)
        return name

    def write(self, name: str, text: str) -> None:
        path = self.out / name
        path.write_text(self.banner + text if name.endswith(".md") else text)
        self.files.append(path)


def side_by_side(rows_spec, frame, published_numbers, title, key_name) -> tuple[str, list[list[str]]]:
    """Published | paper protocol | honest protocol; rows with no run at all are named below, not shown."""
    header = [key_name, "published P / R / F1"] + [f"{p} {SHORT[m]}" for p in PROTOCOLS for m in SHOWN]
    rows, missing = [], []
    for label, tags in rows_spec:
        runs = [one(frame, protocol=protocol, **tags) for protocol in PROTOCOLS]
        if all(run is None for run in runs):
            missing.append(label)
            continue
        pub = published_numbers.get(label)
        row = [label, " / ".join(f"{v:.3f}" for v in pub) if pub else "not reported"]
        for run in runs:
            row += [ci_cell(run, m) for m in SHOWN]
        rows.append(row)
    text = f"## {title}\n\n" + md_table(header, rows)
    if missing:
        text += f"\n\nNo runs in this store for: {', '.join(missing)}."
    return text, rows


def honest_prcrs_oof(t2: pd.DataFrame) -> pd.DataFrame | None:
    """The out-of-fold predictions of the honest same-day PrCRS run of Table 2, or None."""
    run = one(t2, model="prcrs", protocol="honest")
    return None if run is None else oof(run.run_id)
