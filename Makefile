# hookgate: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: run test lint fmt bench screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

# Local development: the example rules, and webhook targets on this machine allowed.
run: $(STAMP)
	HOOKGATE_RULES_DIR=$${HOOKGATE_RULES_DIR:-examples/rules.d} \
	HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS=$${HOOKGATE_DELIVERY_ALLOW_PRIVATE_TARGETS:-true} \
	$(BIN)/hookgate serve

lint: $(DEVSTAMP)
	$(BIN)/ruff check gateway rules actions tests bench
	$(BIN)/ruff format --check gateway rules actions tests bench
	$(BIN)/mypy gateway rules actions

fmt: $(DEVSTAMP)
	$(BIN)/ruff format gateway rules actions tests bench
	$(BIN)/ruff check --fix gateway rules actions tests bench

# Three workers on two cores: the e2e tests mostly wait on real processes and sinks (the
# suite used 47% of both cores with two). worksteal: a worker that runs dry takes queued
# tests from a busy one, so the 40 s tests do not leave a tail (two workers, default
# scheduling: 507 s; three, worksteal: 275 s, 2-core EPYC, 2026-12-03).
test: lint
	$(BIN)/python -m pytest -n 3 --dist worksteal

bench: $(DEVSTAMP)
	$(BIN)/python -m bench

# docs/console/*.png, taken by the console browser test's own helper (Debian's chromium).
screenshots: $(DEVSTAMP)
	HOOKGATE_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/e2e/test_e2e_console_browser.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
