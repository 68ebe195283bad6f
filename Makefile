# The README's commands: `make demo`, `make test`, `make test-all`.
# Each sets up .venv on first use (torch first, from the local CPU build) and reuses it after;
# the test targets also install what the default suite runs against: llama-cpp-python's
# server (compiled once, ~10 min on 2 cores, then reused) and headless Chromium.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.faithcheck-installed
# -rs: every skipped test is listed with its reason at the end of the run
PYTEST := $(BIN)/python -m pytest -q -rs -n 2

.PHONY: setup test-deps demo test test-all

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# Both scripts return at once when their tool is already there, and never fail the run:
# when they cannot install, they say why and the tests that need the tool skip with that reason.
test-deps: $(STAMP)
	bash .ci/install_llama_server.sh $(VENV)
	bash .ci/install_chromium.sh

demo: $(STAMP)
	$(BIN)/faithcheck demo

test: test-deps
	$(PYTEST)

test-all: test-deps
	$(PYTEST) --runslow
