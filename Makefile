# Every target sets up what it needs on a fresh machine: a .venv with the project installed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Two test processes (pytest-xdist), each test file on one of them (module fixtures set up once):
# most tests wait on trainer subprocesses and servers, so two keep 2 cores busy.
PARALLEL ?= -n 2 --dist loadfile

.PHONY: tune test lint fmt data browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,vizier]'
	touch $(STAMP)

## The main job: a local study of the flights model on the embedded data, recorded in ./mlruns;
## then every study of its space compared (a table, and the picture's path).
tune: $(STAMP)
	$(BIN)/dualtune tune --backend local
	$(BIN)/dualtune compare

## The whole test suite (CI runs this).
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -ra $(PARALLEL) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

data: $(STAMP)
	$(BIN)/dualtune data

## Headless Chromium (Debian package) for the MLflow UI test.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
