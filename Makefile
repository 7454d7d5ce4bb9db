# One command per developer task. Every target installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint typecheck contracts unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/gpufleet demo --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

contracts: install
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest

test: lint typecheck contracts unit

BENCH_DBS ?= sqlite postgresql

bench: install
	$(BIN)/python benchmarks/run_all.py $(foreach db,$(BENCH_DBS),--db $(db))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache gpufleet.db gpufleet.db-wal gpufleet.db-shm
