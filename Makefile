# prcrs: `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast lint audit ui bench bench-reproduce bench-search docs reproduce report platform serve

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/prcrs: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/prcrs ## create .venv and install the project (editable, with dev extras)

run: $(BIN)/prcrs ## the main job: python run.py (PrCRS, honest protocol, horizon 1, 5-fold CV, logged to MLflow)
	$(BIN)/python run.py

# Two workers: many tests wait on subprocesses, servers and stores (tests/conftest.py gives each
# worker one thread per library), each taking whole test files, so that a module's fixtures are
# made once. `.venv/bin/pytest` alone runs the suite in one process.
XDIST := -n 2 --dist loadfile

test: $(BIN)/prcrs ## run the full test suite on two workers (CI runs this)
	$(BIN)/pytest $(XDIST)

test-fast: $(BIN)/prcrs ## the inner loop: the suite without the tests marked slow (under 3 minutes)
	$(BIN)/pytest -m "not slow" $(XDIST)

lint: $(BIN)/prcrs ## ruff over every Python folder
	$(BIN)/ruff check prcrs tests run.py hydra_plugins experiments benchmarks

audit: $(BIN)/prcrs ## audit the CAR-T data (real when found, synthetic otherwise)
	$(BIN)/prcrs audit --data cart

ui: $(BIN)/prcrs ## MLflow UI on the project's store, on loopback: prints each study's runs view (key columns, best first)
	$(BIN)/python -m prcrs.tracking.ui

bench: $(BIN)/prcrs ## time CV, cold start, prediction latency, a 50,000-row prediction and the quick report; print every target with met or not (bench.json)
	$(BIN)/python benchmarks/cv_speed.py
	$(BIN)/python benchmarks/predict_latency.py
	$(BIN)/python benchmarks/predict_scale.py
	$(BIN)/python benchmarks/reproduce_speed.py --quick
	$(BIN)/python benchmarks/targets.py

bench-reproduce: $(BIN)/prcrs ## time the whole `make reproduce` on a fresh store (tens of minutes); then the targets
	$(BIN)/python benchmarks/reproduce_speed.py
	$(BIN)/python benchmarks/targets.py

bench-search: $(BIN)/prcrs ## time a 50-trial TPE search of PrCRS at one horizon on a fresh store (tens of minutes); then the targets
	$(BIN)/python benchmarks/search_speed.py
	$(BIN)/python benchmarks/targets.py

docs: $(BIN)/prcrs ## build the docs site (MkDocs Material, API pages from the docstrings) into site/, strictly
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

reproduce: $(BIN)/prcrs ## every run behind the paper's tables and figures (resumable), then the report
	$(BIN)/python experiments/reproduce.py
	$(BIN)/prcrs report

report: $(BIN)/prcrs ## build reports/ (tables + figures) from the MLflow runs
	$(BIN)/prcrs report

platform: $(BIN)/prcrs ## train, calibrate and register the platform's 18 models (prcrs train-final)
	$(BIN)/prcrs train-final

serve: $(BIN)/prcrs ## the prediction web page and API on http://127.0.0.1:8000 (prcrs serve)
	$(BIN)/prcrs serve
