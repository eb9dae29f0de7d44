# One command per job; each creates or refreshes its own virtual environment in .venv.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
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

# On a machine with a GPU and no package registry (runs from the source tree):
#   make gpu-check OUT=/some/dir [STEPS="tests memcheck racecheck bench"]
# GPU tests, compute-sanitizer (memcheck, racecheck) on the kernel tests, the benchmarks;
# logs and results under OUT (see benchmarks/gpu_check.sh).
OUT ?= gpu-check-out
STEPS ?=
.PHONY: gpu-check
gpu-check:
	benchmarks/gpu_check.sh $(OUT) $(STEPS)
