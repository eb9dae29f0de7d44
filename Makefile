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

# On a machine with a GPU and no package registry (run from the source tree):
#   make gpu-check OUT=/some/dir
# GPU tests, compute-sanitizer (memcheck, racecheck) on the kernel tests, and the benchmarks.
OUT ?= gpu-check-out
DEVICE_SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
.PHONY: gpu-check
gpu-check:
	mkdir -p $(OUT)
	PYTHONPATH=. $(DEVICE_PYTHON) -m gpucnn info 2>&1 | tee $(OUT)/info.log
	PYTHONPATH=. $(DEVICE_PYTHON) -m pytest -m gpu -q tests 2>&1 | tee $(OUT)/pytest-gpu.log
	PYTHONPATH=. compute-sanitizer --tool memcheck --error-exitcode 1 \
	    $(DEVICE_PYTHON) -m pytest -m gpu -q -x tests/cuda > $(OUT)/memcheck.log 2>&1
	PYTHONPATH=. compute-sanitizer --tool racecheck --error-exitcode 1 \
	    $(DEVICE_PYTHON) -m pytest -m gpu -q -x tests/cuda > $(OUT)/racecheck.log 2>&1
