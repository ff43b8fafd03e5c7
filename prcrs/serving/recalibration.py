"""Recalibration of the served release for a site (`prcrs recalibrate`), in Steyerberg's order:
the intercept only (calibration-in-the-large), then logistic recalibration (intercept and slope)
of the release's risk on the site's labelled export, chosen by the lower patient-cross-fitted log
loss (`calibration.choose_recalibration`). Each horizon's update applies to all of its factor
combinations. The update is increasing, so the models rank the site's days as before: their
discrimination is unchanged. The result is a new release that names its site and carries its
numbers before and after (calibration after: cross-fitted, on patients the update was not fitted
on). The rule-out band is refitted on the site's days, so that its promise (at least 90 % of
severe days not ruled out) holds for the site's patients: the development cohort's band need not
(a site that grades more severely sees it fall short). The explanations are the release's own.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from prcrs.clinical import calibration
from prcrs.clinical.conformal import BAND_CONFIDENCE, RiskBand
from prcrs.data.exports import PatientDays
from prcrs.errors import DataError
from prcrs.metrics import auroc
from prcrs.serving.platform import Platform
from prcrs.serving.validation import content_id, site_predictions

log = logging.getLogger("prcrs")
MIN_SEVERE_PATIENTS, MIN_PATIENTS = 5, 10  # below either, a horizon keeps the release's calibration


@dataclass
class Update:
    """One horizon's recalibration: the method and its (a, b); the site's calibration before and
    after (cross-fitted) and the AUROC of both."""

    horizon: int
    method: str | None  # None: not updated (`reason`)
    a: float = 0.0
    b: float = 1.0
    before: dict | None = None
    after: dict | None = None
    auroc_before: float = float("nan")
    auroc_after: float = float("nan")
    reason: str = ""
    band: object = None  # the rule-out band refitted on the site's days (`RiskBand`)


def site_updates(export: PatientDays, platform: Platform, seed: int = 0) -> list[Update]:
    """Each of the release's horizons' recalibration on `export` (see the module)."""
    frame = site_predictions(export, platform).frame
    updates = []
    for h in sorted(platform.horizons):
        rows = frame[frame["horizon"] == h]
        y, p, g = rows["label"].to_numpy(int), rows["risk"].to_numpy(float), rows["patient"].to_numpy()
        severe_patients = len(np.unique(g[y == 1]))
        if severe_patients < MIN_SEVERE_PATIENTS or len(np.unique(g)) - severe_patients < MIN_SEVERE_PATIENTS \
                or len(np.unique(g)) < MIN_PATIENTS:
            updates.append(Update(h, None, reason=f"{severe_patients} patients with a severe day of "
                                                  f"{len(np.unique(g))} (at least {MIN_SEVERE_PATIENTS} with and "
                                                  f"without, and {MIN_PATIENTS} in all, needed)"))
            continue
        method, crossed = calibration.choose_recalibration(p, y, g, seed=seed)
        a, b = calibration.fit_recalibration(p, y, method)
        updated = expit(a + b * logit(np.clip(p, 1e-6, 1 - 1e-6)))
        band = RiskBand(BAND_CONFIDENCE).fit(rows["probability"].to_numpy(float), y)  # the site's own days
        updates.append(Update(h, method, a, b, calibration.calibration_stats(p, y),
                              calibration.calibration_stats(crossed[method], y), auroc(y, p), auroc(y, updated),
                              band=band))
    return updates


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:24] or "site"


def recalibrated_release(export: PatientDays, platform: Platform, tracking_uri: str | None = None,
                         seed: int = 0) -> tuple[str, list[Update]]:
    """Register the release recalibrated for `export`'s site as a new release (served from then
    on) and return its id and the updates. A horizon not updated keeps its calibration, said."""
    from prcrs.serving.registry import new_release_id, publish
    from prcrs.serving.train_final import STUDY

    updates = site_updates(export, platform, seed)
    if not any(u.method for u in updates):
        raise DataError(f"{export.source}: no horizon has enough severe days and patients to recalibrate on: "
                        + "; ".join(f"h{u.horizon}: {u.reason}" for u in updates))
    site = export.site or "site"
    release = f"{new_release_id()}-{_slug(site)}"
    by_horizon = {u.horizon: u for u in updates}
    models = []
    for (_, h), model in sorted(platform.models.items()):
        update, new = by_horizon[h], copy.copy(model)
        new.info = {**model.info, "recalibrated_from": model.info.get("release"), "site": site,
                    "site_content": content_id(export), "recalibration": update.method or "none"}
        if update.method:
            new.calibrator = calibration.SiteRecalibration(model.calibrator, update.method, update.a, update.b, site)
            new.band = update.band
            alarm = model.info.get("alarm_risk")
            if alarm is not None and np.isfinite(alarm):  # the same alarm days: the threshold moves with the risk
                new.info["alarm_risk"] = float(expit(update.a + update.b * logit(np.clip(alarm, 1e-6, 1 - 1e-6))))
            new.info.update({"recalibration_a": update.a, "recalibration_b": update.b,
                             "site_citl_before": update.before["citl"], "site_slope_before": update.before["slope"],
                             "site_citl_after": update.after["citl"], "site_slope_after": update.after["slope"],
                             "site_auroc": update.auroc_before})
        models.append(new)
    data_source = "/".join(sorted(platform.data_sources))
    about = {"site": site, "recalibrated_from": platform.release, "site_content": content_id(export),
             "site_data": "synthetic" if export.synthetic else "real",
             "updates": [{"horizon": u.horizon, "method": u.method, "a": u.a, "b": u.b, "reason": u.reason,
                          "citl_before": None if u.before is None else u.before["citl"],
                          "slope_before": None if u.before is None else u.before["slope"],
                          "citl_after": None if u.after is None else u.after["citl"],
                          "slope_after": None if u.after is None else u.after["slope"]} for u in updates]}
    publish(models, release, STUDY, data_source, tracking_uri,
            run_tags=lambda m: {"role": "recalibrated_model", "site": site, "model": str(m.info.get("model")),
                                "recalibrated_from": str(m.info.get("recalibrated_from"))}, about=about)
    return release, updates
