# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# two platform groups + the unit tests (tests/conftest.py PLATFORM_GROUPS; docs/design/test-suite.md)
TEST_WORKERS ?= 3

.PHONY: setup setup-browser demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: setup
	COLUMNS=$${COLUMNS:-140} $(BIN)/etl demo

# The console's browser test (tests/console) drives Debian's Chromium + its WebDriver; installed when missing
# (a fresh CI machine), a no-op once present.
setup-browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	else echo "install Chromium and its WebDriver (Debian: chromium chromium-driver) to run tests/console" >&2; exit 1; fi

test: setup setup-browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/transform_bench.py --sf 1
	$(BIN)/python bench/compact_bench.py --sf 1
	$(BIN)/python bench/erasure_bench.py
	$(BIN)/python bench/erasure_lake_bench.py
	$(BIN)/python bench/e2e_bench.py
	$(BIN)/python bench/cost_bench.py
	$(BIN)/python bench/erasure_e2e_bench.py --sf 1

clean:
	rm -rf $(VENV) build .etl .pytest_cache .hypothesis
