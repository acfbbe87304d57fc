# Two commands on a fresh machine:
#   make reproduce   install everything, run the embedded default reproduction (snakemake)
#   make test        install everything, run the test suite
# CPU installs pin torch==2.13.0 through constraints-cpu.txt (the package mirrors hold
# CUDA builds). vLLM is never part of this environment (see envs/).

PYTHON ?= python3
VENV ?= .venv
CORES ?= all
BIN := $(VENV)/bin

.PHONY: reproduce test test-fast install dry-run lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints-cpu.txt
	$(BIN)/python -m pip install -c constraints-cpu.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

reproduce: install
	$(BIN)/snakemake --cores $(CORES)

dry-run: install
	$(BIN)/snakemake -n

lint: install
	$(BIN)/snakemake --lint

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not e2e"

clean:
	rm -rf results .snakemake
