# Two commands matter: `make run` (the local demo) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run up test lint typecheck unit integration bench chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,local]'
	touch $(STAMP)

run: $(STAMP)
	exec $(BIN)/invoice-sync demo

up: $(STAMP)
	exec $(BIN)/invoice-sync up

lint: $(STAMP)
	$(BIN)/ruff check streams tests $(wildcard bench)
	$(BIN)/ruff format --check streams tests $(wildcard bench)

typecheck: $(STAMP)
	$(BIN)/mypy --strict streams

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/pytest tests/integration -q

# The fault-injection scenarios at a larger size, with the table for docs/guarantees.md.
chaos: $(STAMP)
	CHAOS_INVOICES=$${CHAOS_INVOICES:-20000} $(BIN)/pytest -m chaos -q tests/integration/test_faults.py

test: lint typecheck
	$(BIN)/pytest -q

# Ceilings, pipeline and ledger measured side by side; BENCH_SCALE etc. in bench/__main__.py.
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .invoice-sync .mypy_cache .ruff_cache .pytest_cache
