"""`make bench` (second part): latency of one prediction with its explanation and band, in
process and over HTTP on loopback.

Times one patient-day at one horizon, after warm-up, for the two models the platform serves
(`catalogue`): the forest with one day of lags and PrCRS, each trained briefly into a temporary
store (latency does not depend on how well a model was trained), and, when `prcrs train-final`
has filled the project's store, the registered platform too. Adds "predict_latency" to
bench.json; `benchmarks/targets.py` holds the target.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from bench_file import record

ROOT = Path(__file__).resolve().parents[1]
WARMUP, REPEATS = 20, 200


def _timed(call, n: int) -> dict:
    for _ in range(WARMUP):
        call()
    seconds = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    ms = np.array(seconds) * 1000
    return {"median_ms": round(float(np.median(ms)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "requests": n}


def _serve(app) -> tuple[str, object]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def latency(platform) -> dict:
    import httpx

    from prcrs.data.reading import check_row
    from prcrs.serving.web import create_app

    app = create_app(platform)
    url, server = _serve(app)
    try:
        values = httpx.get(f"{url}/example").json()["values"]
        body = {"values": values, "horizons": [platform.horizons[0]]}
        in_process = _timed(lambda: platform.predict_rows([check_row(values)], body["horizons"]), REPEATS)
        with httpx.Client() as client:
            def post():
                assert client.post(f"{url}/predict", json=body).status_code == 200

            http = _timed(post, REPEATS)
    finally:
        server.should_exit = True
    model = platform.models[("1234", platform.horizons[0])]
    return {"model": model.info["model"], "in_process": in_process, "http_loopback": http}


def brief_platform(overrides: list[str]):
    """A platform of the model `overrides` give for combination 1234 at horizon 1, trained briefly."""
    from prcrs.serving.platform import Platform
    from prcrs.serving.train_final import train_final

    with tempfile.TemporaryDirectory() as tmp:
        _, trained = train_final([*overrides, "cv.folds=2", "trainer.max_epochs=2", "study=latency"], horizons=(1,),
                                 combinations=("1234",), tracking_uri=f"sqlite:///{tmp}/latency.db")
    return Platform({(m.combination, m.horizon): m for _, _, m in trained})


BRIEF = {"forest_lags": ["model=forest", "history=lags"], "prcrs": ["model=prcrs"]}


def main() -> None:
    from prcrs.errors import PrcrsError
    from prcrs.serving.registry import load_platform

    warnings.simplefilter("ignore")
    result = {name: latency(brief_platform(overrides)) for name, overrides in BRIEF.items()}
    try:
        result["registered"] = latency(load_platform())
    except PrcrsError as exc:
        result["registered"] = f"not measured: {exc}"
    record("predict_latency", result)


if __name__ == "__main__":
    main()
