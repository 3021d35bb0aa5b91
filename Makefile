# vaelens: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Tests run on two worker processes; each keeps torch to one thread.
PYTEST_ARGS ?= -n 2 --timeout 600

.PHONY: demo demo-train test install install-test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# The demo analyses the six 60,000-step runs of models/demo-long (trained by
# `vaelens demo --preset demo-long`, about 2 hours, then `vaelens export`ed, see
# models/demo-long/README.md); demo-train trains its own 3,000-step ones (about 12 minutes).
demo: $(VENV)/.installed
	$(BIN)/vaelens demo --preset demo-long --trained models/demo-long

demo-train: $(VENV)/.installed
	$(BIN)/vaelens demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/analysis.py
	$(BIN)/python benchmarks/metrics.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
