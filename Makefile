# The two commands: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: demo test install install-demo install-test install-bench clickhouse chromium lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

# With embedded ClickHouse (chDB), which the demo's ClickHouse pipeline runs on: no server.
install-demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[chdb]"

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"

install-bench: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"

# Installs clickhouse-server from the OS package manager when it is missing.
clickhouse:
	@scripts/ensure-clickhouse.sh

# Installs Debian's chromium (for the dashboard's browser test) when it is missing.
chromium:
	@scripts/ensure-chromium.sh

demo: install-demo
	$(BIN)/python -m examples

lint: install-test
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

test: install-test clickhouse chromium lint
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

# The benchmark suite, with the peer libraries; `make bench BENCH_ARGS=--quick` for a short run.
bench: install-bench
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
