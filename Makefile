# Two entry points a fresh clone needs; each sets up its own virtualenv.
#   make demo   install, write the digits data, run examples/digits-svc.yaml
#   make test   install with test extras, lint, type-check, run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test lint bench

# The venv's bundled pip backtracks into sdists on this stack: upgrade first.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

demo: install
	$(BIN)/kubegrid sample-data digits data/digits.csv
	$(BIN)/kubegrid run examples/digits-svc.yaml

lint: install-test
	$(BIN)/ruff format --check runner operator tests bench scripts
	$(BIN)/ruff check runner operator tests bench scripts
	MYPY=$(BIN)/mypy scripts/typecheck

test: lint
	$(BIN)/pytest -q -p no:cacheprovider

bench: install-test
	$(BIN)/python -m bench
