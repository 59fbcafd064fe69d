# Pathways: `make run` runs the main job on embedded defaults, `make test` runs the linter, the type
# checker and the tests. All create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_AUTH_MODE ?= disabled
export MALLOC_MMAP_THRESHOLD_ ?= 1073741824
export MALLOC_TRIM_THRESHOLD_ ?= 4294967296
export PYTHONHASHSEED ?= 0

# The packages `mypy` checks: all of them (settings in pyproject.toml: plain everywhere, strict on
# experiments, world, features and pathways).
MYPY_TARGETS ?= pathways features world training candidates ranking bandits serving pipelines experiments

.PHONY: install run lint typecheck test test-fast bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/pathways demo

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy $(MYPY_TARGETS)

test: lint typecheck
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not e2e"

bench: install
	$(BIN)/python bench/quality.py --data ../shared/data/ml-latest-small --json var/bench/quality.json
	$(BIN)/python bench/bandits.py --json var/bench/bandits.json

clean:
	rm -rf var
