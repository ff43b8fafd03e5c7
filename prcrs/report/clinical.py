"""reports/clinical.md: what a clinician asks of the platform's models before trusting them, from the
logged runs. For each horizon, the run whose config the platform serves (`results.platform_run`)
beside the bedside scores (m-EASIX, the Teachey-style cytokine model) in the same CV:

- calibration (Steyerberg) of the raw output and of each conversion, with reliability diagrams;
- decision curves: net benefit over 2-40 % against treat-all, treat-none and the bedside scores;
- warning time: days before the first severe day at the folds' 90 %-specificity alarm threshold,
  and false alarms per patient-week of patients never severe;
- subgroups (aged under 25, the paper's "0-25", against older; female against male), flagged
  when too small;
- the conformal risk band's coverage on held-out patients;
- global explanations (mean |factor contribution|) beside the paper's group-deletion ablation.

Every interval is a 95 % patient bootstrap (`Report.n_boot` resamples of patients) of the pooled
out-of-fold predictions the run logged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve

from prcrs import metrics, schema
from prcrs.clinical import alarms, calibration, decision, subgroups
from prcrs.clinical.evaluation import calibrated_oof
from prcrs.models import catalogue
from prcrs.plots import perfect_calibration, plt
from prcrs.report import stats
from prcrs.report.tables import Report, md_table
from prcrs.tracking.results import oof, platform_run, select

CONVERSION_ORDER = ("raw model output", "paper_window", "isotonic", "platt")


def _label(run: pd.Series) -> str:
    return catalogue.model_label(run["model"], run.get("history"))


def span(value: float, low: float, high: float, digits: int = 3) -> str:
    """'0.76 (0.63–0.87)'; the value alone without an interval, '–' without a value."""
    if not np.isfinite(value):
        return "–"
    if not np.isfinite(low):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def _boot(frame: pd.DataFrame, statistic, n_boot: int) -> tuple[float, float, float]:
    """statistic of `frame`'s rows and its 95 % patient-bootstrap interval; `statistic` maps row
    weights (k, rows) to values (k,) (`stats.PatientBootstrap`): ones give the rows themselves."""
    value = float(np.asarray(statistic(np.ones((1, len(frame)))))[0])
    return (value, *stats.patient_bootstrap(frame["patient"].to_numpy(), statistic, n_boot=n_boot))


def _bedside(runs: pd.DataFrame, horizon: int) -> dict[str, pd.Series]:
    out = {}
    for model in catalogue.names(family="bedside"):
        rows = select(runs, model=model, horizon=horizon, protocol="honest", factors="1234", ablation="none")
        if not rows.empty:
            out[model] = rows.iloc[0]
    return out


def _scored(run: pd.Series, seed: int) -> tuple[pd.DataFrame, str]:
    """A run's out-of-fold rows with `calibrated` (the cross-fitted calibrator the platform would
    serve) added; and that calibrator's name."""
    frame = oof(run.run_id).reset_index(drop=True)
    served, converted = calibrated_oof(frame, seed)
    return frame.assign(**{name: q for name, q in converted.items()}, calibrated=converted[served]), served


def calibration_part(horizons: dict[int, tuple[pd.Series, pd.DataFrame, str]], report: Report) -> str:
    rows = []
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.6 * len(horizons), 4.4),
                             squeeze=False, layout="constrained")
    for ax, (h, (run, frame, served)) in zip(axes[0], horizons.items(), strict=True):
        y = frame["label"].to_numpy(int)
        for name in CONVERSION_ORDER:
            q = frame[name].to_numpy(float)
            cal = calibration.calibration_stats(q, y)
            citl, slope = (cal["citl"], np.nan, np.nan), (cal["slope"], np.nan, np.nan)
            if name in ("raw model output", served):  # intervals for what is served and what it starts from
                lp = calibration.logit(q)
                citl = _boot(frame, lambda w, lp=lp, y=y: calibration.logistic_fit(lp, y, w, slope=False)[0],
                             report.n_boot)
                slope = _boot(frame, lambda w, lp=lp, y=y: calibration.logistic_fit(lp, y, w)[1], report.n_boot)
            rows.append([h, _label(run), name + (" (served)" if name == served else ""), span(*citl, 2),
                         span(*slope, 2), f"{cal['ece']:.4f}", f"{cal['brier']:.4f}"])
            if name in ("raw model output", "paper_window", served):
                observed, predicted = calibration_curve(y, np.clip(q, 1e-4, 1), n_bins=8, strategy="quantile")
                ax.plot(predicted, observed, "o-", label=name)
        perfect_calibration(ax, label="perfect")
        ax.set(xscale="log", yscale="symlog", xlim=(1e-3, 1), ylim=(0, 1), xlabel="predicted P(severe), log scale",
               ylabel="observed share of severe days", title=f"{h} day(s) ahead: {_label(run)}")
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.2g}"))
        ax.legend(fontsize=7)
    report.save(fig, "clinical_calibration.png")
    return ("### Calibration\n\nCalibration-in-the-large (CITL, the intercept with the model's log-odds as "
            "offset: 0 is right on average, above 0 the risks are too low) and calibration slope (1 is right, below "
            "1 the risks are too extreme), Steyerberg's measures, with ECE (10 equal-count bins) and the Brier "
            "score. Each conversion is cross-fitted by patient (5 folds) on the run's out-of-fold predictions; "
            "'served' is the one the platform serves (lower Brier of isotonic and Platt); intervals (patient "
            "bootstrap) for it and the raw output. Reliability diagram: "
            "8 equal-count bins, log axes, so that the rare high-risk days are visible.\n\n"
            + md_table(["horizon", "model", "conversion", "CITL (95 % CI)", "slope (95 % CI)", "ECE", "Brier"], rows)
            + "\n\n![Calibration](clinical_calibration.png)")


def decision_part(horizons, bedside, seed: int, report: Report) -> tuple[str, dict[int, dict]]:
    rows, headline = [], {}
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.6 * len(horizons), 4.2),
                             squeeze=False, layout="constrained")
    thresholds = decision.THRESHOLDS
    for ax, (h, (run, frame, _)) in zip(axes[0], horizons.items(), strict=True):
        y = frame["label"].to_numpy(int)
        curves = {_label(run): (frame, "calibrated")}
        for model, brun in bedside[h].items():
            curves[catalogue.display(model)] = (_scored(brun, seed)[0], "calibrated")
        for name, (f, column) in curves.items():
            ax.plot(thresholds * 100, decision.net_benefit(f["label"], f[column], thresholds), label=name)
        ax.plot(thresholds * 100, decision.treat_all(y, thresholds), "--", c="grey", label="treat all")
        ax.axhline(0, c="black", lw=0.8, label="treat none")
        ax.set(xlabel="risk threshold for acting (%)", ylabel="net benefit (severe days caught per day)",
               ylim=(-0.02, max(0.02, y.mean() * 1.1)), title=f"{h} day(s) ahead")
        ax.legend(fontsize=7)
        for t in decision.REPORTED:
            for name, (f, column) in curves.items():
                value = _boot(f, lambda w, f=f, c=column, tt=t: decision.net_benefit(
                    f["label"], f[c], [tt], w)[:, 0], report.n_boot)
                rows.append([h, f"{t:.0%}", name, span(*value, 4), f"{decision.treat_all(f['label'], [t])[0]:.4f}"])
                if name == _label(run):
                    headline.setdefault(h, {})[t] = value
    report.save(fig, "clinical_decision_curves.png")
    text = ("### Decision curves\n\nNet benefit of acting (e.g. early tocilizumab) on every day whose calibrated "
            "risk reaches the threshold: severe days caught per patient-day, minus false alarms weighted by the "
            "odds of the threshold (Vickers & Elkin 2006). Above treat-all and treat-none, a model helps at that "
            "threshold. Every model's probability is its own cross-fitted calibration.\n\n"
            + md_table(["horizon", "threshold", "model", "net benefit (95 % CI)", "treat all"], rows)
            + "\n\n![Decision curves](clinical_decision_curves.png)")
    return text, headline


def _warning_cells(frame: pd.DataFrame, n_boot: int) -> tuple[list[str], dict]:
    outcomes = alarms.patient_outcomes(frame)
    summary = alarms.warning_summary(outcomes)
    resampled = alarms.warning_summary(outcomes, stats.PatientBootstrap.of(outcomes.index.to_numpy(), n_boot).weights)
    shown = {k: (summary[k], *stats.percentile_interval(resampled[k], n_boot))
             for k in ("median_warning_days", "warned_share", "false_alarms_per_patient_week")}
    cells = [f"{summary['severe_patients']:.0f} / {summary['warnable_patients']:.0f}",
             span(*shown["median_warning_days"], 1), span(*shown["warned_share"], 2),
             f"{summary['detected_share']:.2f}", span(*shown["false_alarms_per_patient_week"], 2),
             f"{np.nanmedian(frame['alarm_threshold']):.3f}"]
    return cells, shown


def warning_part(horizons, bedside, n_boot: int) -> tuple[str, dict[int, dict]]:
    rows, headline = [], {}
    for h, (run, frame, _) in horizons.items():
        for name, f in [(_label(run), frame)] + [(catalogue.display(m), oof(b.run_id)) for m, b in bedside[h].items()]:
            if "alarm_threshold" not in f or not np.isfinite(f["alarm_threshold"]).any():
                rows.append([h, name, "no alarm threshold logged (run before warning time existed)", *[""] * 5])
                continue
            cells, shown = _warning_cells(f, n_boot)
            rows.append([h, name, *cells])
            if name == _label(run):
                headline[h] = shown
    text = ("### Warning time\n\nAn alarm is a day whose predicted P(severe) reaches the fold's alarm threshold, "
            "the lowest keeping 90 % specificity on the fold's inner validation patients (never the test fold). For "
            "each patient who reaches grade ≥ 3: days from the first alarm (on or before the first severe day) to "
            "that day; 0 = alarmed on the severe day itself. 'Warnable' patients were first severe after day 0, so "
            "a warning a day ahead was possible. False alarms: alarm days per 7 predicted days of patients never "
            "severe. First CV repeat; 95 % patient-bootstrap intervals.\n\n"
            + md_table(["horizon", "model", "severe / warnable patients", "median warning (days, warned patients)",
                        "warned ≥ 1 day ahead (share of warnable)", "alarmed by the severe day (share)",
                        "false alarms per patient-week", "alarm threshold (median over folds)"], rows))
    return text, headline


def subgroup_part(horizons, covariates: pd.DataFrame, n_boot: int) -> tuple[str, list[str]]:
    rows, small = [], []
    for h, (run, frame, _) in horizons.items():
        table = subgroups.subgroup_table(frame, covariates, frame["calibrated"].to_numpy())
        for record in table.to_dict("records"):
            part = frame[frame["patient"].isin(subgroups.subgroup_patients(covariates)[record["subgroup"]])]
            y, p = part["label"].to_numpy(int), part["probability"].to_numpy(float)
            auroc = _boot(part, lambda w, y=y, p=p: metrics.weighted_auroc(y, p, w), n_boot)
            auprc = _boot(part, lambda w, y=y, p=p: metrics.weighted_auprc(y, p, w), n_boot)
            flag = "too few severe patients to say anything" if record["too_small"] else ""
            if flag:
                small.append(f"h{h} {record['subgroup']}")
            rows.append([h, _label(run), record["subgroup"], record["patients"], record["severe_patients"],
                         span(*auroc), span(*auprc), f"{record['citl']:+.2f}", f"{record['oe']:.2f}", flag])
    text = ("### Subgroups\n\nThe paper's younger group (its \"0–25\": under 25 years) against older patients, and "
            "sex, from the "
            "covariates at infusion. AUROC and AUPRC of the raw output with 95 % patient-bootstrap intervals; "
            "calibration of the served calibrated probability within the group: CITL (0 = right on average) and "
            "observed / expected severe days (1 = right). A group with fewer than "
            f"{subgroups.MIN_SEVERE_PATIENTS} severe patients is flagged: its numbers say little.\n\n"
            + md_table(["horizon", "model", "subgroup", "patients", "severe patients", "AUROC (95 % CI)",
                        "AUPRC (95 % CI)", "CITL", "O/E", "flag"], rows))
    return text, small


def band_part(horizons, splits: int = 20, seed: int = 0) -> str:
    """The rule-out band's coverage on held-out patients: fitted on the out-of-fold rows of a
    random half of the patients, checked on the other half, `splits` times."""
    from prcrs.clinical.conformal import BAND_CONFIDENCE, RiskBand

    rows = []
    for h, (run, frame, _) in horizons.items():
        rng = np.random.default_rng(seed)
        patients = frame["patient"].unique()
        covered, ruled_out = [], []
        for _ in range(splits):
            half = frame["patient"].isin(rng.permutation(patients)[: len(patients) // 2])
            band = RiskBand(BAND_CONFIDENCE).fit(frame.loc[half, "probability"], frame.loc[half, "label"])
            held = frame[~half]
            out = band.ruled_out(held["probability"].to_numpy(), held["calibrated"].to_numpy())
            severe = held["label"].to_numpy() == 1
            covered.append(1 - out[severe].mean())
            ruled_out.append(out[~severe].mean())
        rows.append([h, _label(run), f"{np.mean(covered):.3f} ({np.min(covered):.3f})",
                     f"{np.mean(ruled_out):.3f} ({np.min(ruled_out):.3f})"])
    return ("### Uncertainty: the rule-out band\n\nEach platform prediction says whether severe CRS is ruled out "
            "at 90 % (`prcrs/clinical/conformal.py`): 'ruled out' when the day's score is below those of at least "
            "90 % of "
            "the days that turned severe (a split-conformal p-value) and its calibrated risk is below the base "
            "rate; 'not ruled out' otherwise. Its promise: at least 90 % of severe days are 'not ruled out'. "
            f"Checked here on held-out patients: fitted on the out-of-fold rows of a random half of the patients, "
            f"scored on the other half, {splits} random halves (mean, and the worst half in brackets). 'not ruled "
            "out' is not a prediction that the day will be severe: most such days are not.\n\n"
            + md_table(["horizon", "model", "severe days not ruled out (worst)",
                        "other days ruled out (worst)"], rows))


def importance_part(t2: pd.DataFrame, t3: pd.DataFrame, horizons, report: Report) -> tuple[str, str]:
    """Mean |contribution| per factor and group for the honest same-day PrCRS run, beside the
    ΔAUROC of deleting each group (Table 3), and for the platform models."""
    shown = {"prcrs, same day (Table 2/3)": select(t2, model="prcrs", protocol="honest").head(1)}
    shown.update({f"{_label(run)}, {h} day(s) ahead (platform)": run.to_frame().T
                  for h, (run, _, _) in horizons.items()})
    group_of = {f.key: f.group for f in schema.FEATURES}
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4.6),
                             squeeze=False, layout="constrained")
    rows, claim = [], ""
    for ax, (name, runs) in zip(axes[0], shown.items(), strict=True):
        if runs.empty:
            continue
        run = runs.iloc[0]
        factors = {k[len("mean_importance_"):]: float(run[k]) for k in run.index
                   if k.startswith("mean_importance_") and pd.notna(run[k])}
        if not factors:
            continue
        top = sorted(factors, key=factors.get, reverse=True)[:10]
        ax.barh([schema.BY_KEY[k].name if k in schema.BY_KEY else k for k in top][::-1],
                [100 * factors[k] for k in top][::-1])
        ax.set(xlabel="mean |contribution| (percentage points of P(severe))", title=name)
        groups = {g: sum(v for k, v in factors.items() if group_of.get(k) == g) for g in schema.GROUP_NAMES}
        rows.append([name, *[f"{100 * groups[g]:.3f}" for g in schema.GROUP_NAMES],
                     ", ".join(schema.BY_KEY[k].name for k in top[:5] if k in schema.BY_KEY)])
        if name.startswith("prcrs"):
            full = select(t2, model="prcrs", protocol="honest", ablation="none")
            deleted = {a: select(t3, ablation=a, protocol="honest") for a in schema.DELETIONS}
            deleted = {a: d for a, d in deleted.items() if not d.empty}
            if not full.empty and deleted:
                by_deletion = {a: full.iloc[0]["mean_test_auroc"] - d.iloc[0]["mean_test_auroc"]
                               for a, d in deleted.items()}
                ablation_of = {(set(schema.GROUP_NAMES) - set(schema.ABLATIONS[a])).pop(): a for a in schema.DELETIONS}
                by_importance = max(groups, key=groups.get)
                most_deleted = max(by_deletion, key=by_deletion.get)
                changes = ("deletion ΔAUROC (full − deleted, of the mean AUROC over folds; the Table 3 claim gives "
                           "the pooled out-of-fold difference, which mixes the folds' score scales, so the two "
                           "differ): " + ", ".join(f"{a} {v:+.3f}" for a, v in by_deletion.items()) + ".")
                if by_deletion[most_deleted] > 0:
                    verdict = ("is" if ablation_of[by_importance] == most_deleted else "is not")
                    claim = (f"The group with the largest contributions to PrCRS ({schema.GROUP_NAMES[by_importance]}) "
                             f"{verdict} the one whose deletion costs most AUROC of those run ({most_deleted}, "
                             f"{by_deletion[most_deleted]:+.3f}); {changes}")
                else:
                    claim = (f"No deletion run costs PrCRS any AUROC, so deletion cannot say which group it relies "
                             f"on; by contributions it is {schema.GROUP_NAMES[by_importance]}; {changes}")
    report.save(fig, "clinical_importance.png")
    text = ("### Explanations: which factors the models use\n\nMean |contribution| of each factor to P(severe) over "
            "up to 100 test rows per fold (factor Shapley values against the training rows' median day, "
            "`prcrs.clinical.explain`; a factor's lags and changes count with it), summed per group. "
            "The paper's Table 3 "
            "asks the same question by deleting a group and retraining; a deletion can cost little when other "
            "groups carry the same signal, which contributions do not show.\n\n"
            + md_table(["model", *[f"{g}. {t} (pp)" for g, t in schema.GROUP_NAMES.items()], "top 5 factors"], rows)
            + ("\n\n" + claim if claim else "") + "\n\n![Importance](clinical_importance.png)")
    return text, claim


def clinical_section(report: Report, runs: pd.DataFrame, t2: pd.DataFrame, t3: pd.DataFrame,
                     covariates: pd.DataFrame, seed: int = 0) -> dict:
    """Write reports/clinical.md and its figures from `runs` (every study's parent runs of the
    report's cohort and design); returns the platform's headline numbers per horizon."""
    chosen = {h: platform_run(runs, h) for h in sorted(runs["horizon"].unique())}
    chosen = {h: r for h, r in chosen.items() if r is not None and int(r["horizon"]) == h}
    if not chosen:
        return {}
    horizons = {h: (run, *_scored(run, seed)) for h, run in chosen.items()}
    bedside = {h: _bedside(runs, h) for h in horizons}
    parts = [calibration_part(horizons, report)]
    text, benefit = decision_part(horizons, bedside, seed, report)
    parts.append(text)
    text, warning = warning_part(horizons, bedside, report.n_boot)
    parts.append(text)
    text, small = subgroup_part(horizons, covariates, report.n_boot)
    parts.append(text)
    parts.append(band_part(horizons))
    text, agreement = importance_part(t2, t3, horizons, report)
    parts.append(text)
    intro = ("## Clinical evaluation of the platform's models (honest protocol)\n\nAt each horizon, the model the "
             "platform serves: the best honest mean AUROC with all factors, no bedside score and no baseline "
             "covariates (" + "; ".join(f"h{h}: {_label(r)}, run {r.run_id[:8]}" for h, r in chosen.items())
             + "), beside the bedside scores in the same folds.\n\n")
    body = intro + "\n\n".join(parts)
    report.write("clinical.md", body + "\n")
    report.sections.append(body)
    headline = {h: {"run": chosen[h], "net_benefit": benefit.get(h, {}), "warning": warning.get(h, {})}
                for h in chosen}
    one_day = headline.get(1) or next(iter(headline.values()))
    h1 = next(h for h in headline if headline[h] is one_day)
    w, nb = one_day["warning"], one_day["net_benefit"]
    if w and nb:
        report.claims.append(
            f"**Beyond the paper: is it useful at the bedside (reports/clinical.md)?** At horizon {h1} the platform's "
            f"model ({_label(one_day['run'])}) warns {span(*w['warned_share'], 2)} of the warnable severe patients "
            f"at least a day ahead (median {span(*w['median_warning_days'], 1)} days), at "
            f"{span(*w['false_alarms_per_patient_week'], 2)} false alarms per patient-week; its net benefit at a "
            f"10 % risk threshold is {span(*nb[0.10], 4)} severe days caught per patient-day. "
            + (f"Subgroups too small to say anything: {', '.join(small)}. " if small else "")
            + agreement)
    return headline
