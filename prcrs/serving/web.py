"""`prcrs serve`: the platform's web page and JSON API (FastAPI).

GET /            the page: the four factor groups with units, an example, a horizon selector
GET /example     {"values": {key: value}}: training medians, a typical patient-day
POST /predict    {"values": {name: number | null}, "horizons": [1, 2, 3]} -> one result per horizon
                 (probabilities, risk_band, reference_probability and top_factors: [{factor, name,
                 value, contribution}], contribution in probability units);
                 for models that read a patient's history, also "day" (days since infusion) and
                 "past_days": [{"day": d, "values": {...}}, ...], the same patient's earlier days;
                 an unknown name, a non-numeric or impossible value, or a row with no usable
                 factor combination gets a 422 naming the fields
GET /health      {"status": "ok", "models": n, "horizons": [...], "data_sources": [...], "synthetic": bool,
                 "provenance": [{combination, horizon, model, registered_model, model_version, cv_run_id,
                 cv_auroc, data_source, data_content}, ...]}
"""

from __future__ import annotations

import html
from importlib.resources import files
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr, field_validator
from uvicorn.protocols.http.h11_impl import H11Protocol

from prcrs import schema
from prcrs.data.reading import IGNORED, MIN_PRESENT, PERCENT_KEYS, check_row, resolve_columns
from prcrs.errors import DataError
from prcrs.serving.platform import MEANINGS, Platform, example_values, provenance

NOTE = ("The risk is the calibrated probability of severe CRS (grade 3 or above) on the day predicted (the day "
        "of the values + the horizon): the share of past patient-days with a similar model score (out-of-fold, "
        "patient-grouped) that had severe CRS, never more extreme than the out-of-fold evidence (the share among "
        "the 5 % highest- or lowest-scoring days). It is a risk estimate from a small cohort ({cohort}), not a "
        "diagnosis. The band says whether severe CRS is ruled out at 90 % (the day scores below at least 90 % of "
        "the days that turned severe, and its risk is below the base rate) or cannot be ruled out; at least 90 % "
        "of severe days are not ruled out. The factors are those that moved this risk most, in percentage points, "
        "against a reference day (the training medians), whose risk is given; factors not measured are one entry, "
        "'factors not measured (imputed)'. They explain the model, not the patient's biology. The model score "
        "ranks days but is not a probability; the paper's conversion is kept to compare with the paper.")
REQUEST_SECONDS = 10  # a request's headers and body must arrive whole within this (slow clients are closed)
KEEP_ALIVE_SECONDS = 5  # an idle kept-alive connection is closed after this


MAX_BODY_BYTES = 64 * 1024  # one patient-day is about 2 KB of JSON
# Strict: JSON true/false is not a number and NaN is not "not measured" (the CLI refuses both too).
Number = Annotated[StrictFloat | StrictInt, Field(allow_inf_nan=False)]


class PastDay(BaseModel):
    day: Annotated[StrictFloat | StrictInt, Field(ge=0, le=365)] = Field(description="days since infusion")
    values: dict[str, Number | StrictStr | None] = Field(max_length=len(schema.FEATURES) * 2)


class Factor(BaseModel):
    factor: str = Field(description="the factor's project key")
    name: str = Field(description="its label on the page")
    value: float | None = Field(description="the value read (schema units); null: not measured, imputed")
    contribution: float = Field(description="what it added to the calibrated probability against the reference day "
                                            "(probability units: 0.05 = 5 percentage points)")


class Prediction(BaseModel):
    horizon: int = Field(description="days ahead: the day predicted is the day of `values` + horizon")
    predicted_day: float | None = Field(None, description=MEANINGS["predicted_day"] + "; null when `day` is not given")
    combination: str | None = Field(description="the factor combination the row used (1234 > 123 > 4 > 23 > 3 > 2)")
    past_days: int = Field(description="earlier days of the patient a history model read (0: one-day model)")
    calibrated_risk: str | None = Field(None, description=MEANINGS["calibrated_risk"])
    calibrated_probability: float | None = Field(None, description=MEANINGS["calibrated_probability"])
    probability: float | None = Field(None, description=MEANINGS["probability"])
    paper_probability: float | None = Field(None, description=MEANINGS["paper_probability"])
    risk_band: str | None = Field(None, description=MEANINGS["risk_band"])
    reference_probability: float | None = Field(None, description=MEANINGS["reference_probability"])
    top_factors: list[Factor] = Field(default=[], description="the factors that moved the risk most, largest first")
    release: str | None = Field(None, description=MEANINGS["release"])
    model: str | None = Field(None, description="the model (and history) behind this number")
    registered_model: str | None = Field(None, description="its name in the MLflow model registry")
    model_version: str | None = Field(None, description="its registered version")
    cv_run_id: str | None = Field(None, description="the MLflow run of its honest cross-validation")
    cv_auroc: float | None = Field(None, description=MEANINGS["cv_auroc"])
    data_source: str | None = Field(None, description="real or synthetic: the data it was trained on")
    data_content: str | None = Field(None, description="the content id of that data")
    warnings: list[str] = Field(description="what the user should know: values left out or re-read, imputed factors")
    error: str | None = Field(description="why there is no prediction, if there is none")


class PredictResponse(BaseModel):
    results: list[Prediction] = Field(description="one per horizon asked")
    note: str = Field(description="what the numbers mean")


class Provenance(BaseModel):
    combination: str
    horizon: int
    release: str | None
    model: str
    registered_model: str
    model_version: str | None
    cv_run_id: str | None
    cv_auroc: float | None
    data_source: str
    data_content: str


class Health(BaseModel):
    status: str = Field(description="ok")
    release: str = Field(description="the platform release served: every model of it was trained together")
    models: int = Field(description="models loaded")
    horizons: list[int]
    data_sources: list[str] = Field(description="the data the models were trained on")
    synthetic: bool = Field(description="true when any model was trained on synthetic data: not for patients")
    provenance: list[Provenance]


class PredictRequest(BaseModel):
    # values are checked by prcrs.data.reading, as in `prcrs predict`, so that errors read the same
    values: dict[str, Number | StrictStr | None] = Field(
        max_length=len(schema.FEATURES) * 2,
        description="factor name (sheet name or key) -> value in schema units; null or blank = not measured")
    horizons: list[Annotated[StrictInt, Field(ge=1, le=3)]] = Field(default=[1], min_length=1, max_length=3,
                                                                     description="days ahead, 1-3, each once")
    day: Annotated[StrictFloat | StrictInt, Field(ge=0, le=365)] | None = Field(
        default=None, description="days since infusion of `values` (needed with past_days)")
    past_days: list[PastDay] = Field(default=[], max_length=14,
                                     description="the same patient's earlier days, read by history models")
    strict: bool = Field(default=False, description="refuse an implausible value (default: leave it out, with a "
                                                    "warning naming it and the likely unit)")

    @field_validator("past_days")
    @classmethod
    def _earlier_each_once(cls, past: list[PastDay]) -> list[PastDay]:
        if len({p.day for p in past}) != len(past):
            raise ValueError("each past day once")
        return past

    @field_validator("horizons")
    @classmethod
    def _once_each(cls, horizons: list[int]) -> list[int]:
        if len(set(horizons)) != len(horizons):
            raise ValueError("each horizon once")
        return horizons


def _unprocessable(errors: dict[tuple[str, ...], str]) -> HTTPException:
    """A 422 in FastAPI's own shape: one entry per field, `loc` naming it."""
    return HTTPException(422, detail=[{"loc": ["body", *loc], "msg": msg, "type": "value_error"}
                                      for loc, msg in errors.items()])


def note_for(platform: Platform) -> str:
    """`NOTE` with the size of the cohort the served models were trained on (as each model records it)."""
    sizes = sorted({int(m.info["patients"]) for m in platform.models.values() if "patients" in m.info})
    cohort = f"{' and '.join(map(str, sizes))} patients" if sizes else "its size not recorded by this release"
    return NOTE.format(cohort=cohort)


def create_app(platform: Platform) -> FastAPI:
    note = note_for(platform)
    app = FastAPI(title="prcrs: severe CRS risk after CAR-T", docs_url=None, redoc_url=None,
                  description="Risk of severe cytokine release syndrome (grade >= 3) 1-3 days ahead from a patient-"
                              "day's labs, with a conformal risk band, the factors behind it and where the model came "
                              "from. " + note)
    app.mount("/static/swagger", StaticFiles(directory=str(files("fastapi_offline") / "static")), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI 5 (it reads OpenAPI 3.1) from the installed fastapi-offline package's
        assets: no CDN, works offline."""
        assets = "static/swagger"
        return get_swagger_ui_html(openapi_url="openapi.json", title=app.title,
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets}/favicon.png")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 without echoing the input (a NaN there is not JSON)."""
        return JSONResponse({"detail": [{k: e[k] for k in ("loc", "msg", "type")} for e in exc.errors()]}, 422)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        """A body over MAX_BODY_BYTES is refused before it is read or parsed."""
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        if declared is None and request.method == "POST":
            return JSONResponse({"detail": "a POST needs a Content-Length header"}, status_code=411)
        return await call_next(request)
    fullest = min(platform.models, key=lambda k: (schema.COMBINATIONS.index(k[0]), k[1]))  # 1234 when there
    example = page_example(example_values(platform.models[fullest]))
    page = render_page(platform.horizons, "synthetic" in platform.data_sources, note=note)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health", response_model=Health)
    def health() -> dict:
        """Whether the platform is up, and where each of its models came from."""
        return {"status": "ok", "release": platform.release, "models": len(platform.models),
                "horizons": list(platform.horizons),
                "data_sources": sorted(platform.data_sources), "synthetic": "synthetic" in platform.data_sources,
                "provenance": [{"combination": code, "horizon": h, **provenance(m)}
                               for (code, h), m in sorted(platform.models.items())]}

    @app.get("/example")
    def get_example() -> dict:
        return {"values": example}

    @app.post("/predict", response_model=PredictResponse,
              responses={422: {"description": "a field is wrong: `detail[].loc` names it, `msg` says why"},
                         413: {"description": "request body too large"}})
    def predict(request: PredictRequest) -> dict:
        """The risk of severe CRS at each horizon asked, for one patient-day (and, for history
        models, the same patient's earlier days)."""
        unknown = resolve_columns(request.values)[2]
        try:
            row = check_row(request.values, request.strict, unreadable="error", combinations=platform.combinations)
        except DataError as exc:  # a unit in a name that its factor does not have
            raise _unprocessable({("values",): str(exc)}) from None
        errors = {name: "unknown factor name" for name in unknown} | row.field_errors
        if errors:
            raise _unprocessable({("values", name): msg for name, msg in errors.items()})
        try:
            horizons = platform.check_horizons(request.horizons)
        except DataError as exc:
            raise _unprocessable({("horizons",): str(exc)}) from None
        if row.error is not None:
            raise _unprocessable({("values",): row.error})
        if not request.past_days:
            day = None if request.day is None else [request.day]
            results = platform.predict_rows([row], horizons, None if day is None else ["patient"], day)[0]
            return {"results": _dated(results, request.day), "note": note}
        if request.day is None:
            raise _unprocessable({("day",): "give the day since infusion of `values` with past_days"})
        past, errors = [], {}
        for i, earlier in enumerate(request.past_days):
            if earlier.day >= request.day:
                errors[("past_days", str(i), "day")] = f"day {earlier.day:g} is not before day {request.day:g}"
            try:
                checked = check_row(earlier.values, request.strict, unreadable="error",
                                    combinations=platform.combinations)
            except DataError as exc:
                errors[("past_days", str(i), "values")] = str(exc)
                continue
            unknown = resolve_columns(earlier.values)[2]
            errors |= {("past_days", str(i), "values", n): m for n, m in
                       ({n: "unknown factor name" for n in unknown} | checked.field_errors).items()}
            past.append(checked)
        if errors:
            raise _unprocessable(errors)
        days = [p.day for p in request.past_days] + [request.day]
        results = platform.predict_rows([*past, row], horizons, ["patient"] * len(days), days)[-1]
        said = [f"earlier day {d:g}: {w}" for d, p in zip(days, past, strict=False) for w in p.read_warnings]
        for result in results:
            result["warnings"] = said + result["warnings"]
        return {"results": _dated(results, request.day), "note": note}

    return app


def _dated(results: list[dict], day: float | None) -> list[dict]:
    """Each result with the day it is for (`predicted_day`: day + horizon; None without a day)."""
    return [{**r, "predicted_day": None if day is None else day + r["horizon"]} for r in results]


class DeadlineH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request has not arrived whole
    (headers and body) within `REQUEST_SECONDS` of the connection opening or of the previous
    response: a client that drips its headers or body holds no connection for long. The app's
    own time is not counted (the request has arrived)."""

    request_seconds: float = REQUEST_SECONDS

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
        self._deadline = self.loop.call_later(self.request_seconds, self._expire)

    def _expire(self) -> None:
        import h11

        arrived = self.conn.their_state in (h11.DONE, h11.MUST_CLOSE)  # MUST_CLOSE: HTTP/1.0 or Connection: close
        if not arrived and not self.transport.is_closing():
            self.transport.close()


def server_config(app, host: str, port: int, request_seconds: float = REQUEST_SECONDS):
    """The uvicorn config `prcrs serve` runs: `DeadlineH11` with `request_seconds`, idle
    connections closed after `KEEP_ALIVE_SECONDS`, warnings only in the log."""
    import uvicorn

    protocol = type("Deadline", (DeadlineH11,), {"request_seconds": request_seconds})
    return uvicorn.Config(app, host=host, port=port, log_level="warning", http=protocol,
                          timeout_keep_alive=KEEP_ALIVE_SECONDS)


SYNTHETIC_BANNER = ('<div id="synthetic-banner" role="alert">SYNTHETIC DATA: these models were trained on the '
                    "project's synthetic cohort. Their numbers are not risks of real patients; do not use them for "
                    "care.</div>")


def page_unit(key: str) -> str:
    """The unit the page asks for: the schema's, percentages in %."""
    return "%" if key in PERCENT_KEYS else schema.BY_KEY[key].unit


def page_field(key: str) -> str:
    """The page's input name of a factor: its key, with '(%)' for a percentage, so that the API
    reads 0.8 typed there as 0.8 %, as the page's label says."""
    return f"{key} (%)" if key in PERCENT_KEYS else key


def page_example(example: dict[str, float]) -> dict[str, float]:
    """The example day by the page's input names and units (`page_field`, `page_unit`)."""
    return {page_field(k): float(f"{100 * v:.3g}") if k in PERCENT_KEYS else v for k, v in example.items()}


def render_page(horizons: tuple[int, ...], synthetic: bool = False, *, note: str) -> str:
    groups = []
    for g, title in schema.GROUP_NAMES.items():
        fields = "".join(
            f'<label>{html.escape(f.name)} <small>{html.escape(page_unit(f.key))}</small>'
            f'<input name="{html.escape(page_field(f.key))}" inputmode="decimal" autocomplete="off"></label>'
            for f in schema.FEATURES if f.group == g and f.key not in IGNORED)
        groups.append(f'<fieldset><legend>{g}. {html.escape(title)} <small>(needs {MIN_PRESENT[g]} of '
                      f'{len(schema.group_features(g))})</small></legend>{fields}</fieldset>')
    options = "".join(f'<option value="{h}">{h} day{"s" if h > 1 else ""} ahead</option>' for h in horizons)
    page = (files("prcrs.serving") / "page.html").read_text(encoding="utf-8")
    return page.replace("{banner}", SYNTHETIC_BANNER if synthetic else "").replace(
        "{groups}", "".join(groups)).replace("{options}", options).replace(
        "{order}", " &gt; ".join(schema.COMBINATIONS)).replace("{note}", html.escape(note))
