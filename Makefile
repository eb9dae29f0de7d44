# One command per job; each creates or refreshes its own virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test lint bench-cpu clean

# (Re)install whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,nvml,plot]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python -m gpucnn train

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench-cpu: $(STAMP)
	$(BIN)/python benchmarks/cpu_ops.py

clean:
	rm -rf $(VENV) build dist .pytest_cache
