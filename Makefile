# One-command set-up: `make demo` runs the main job, `make test` the test suite.
# Both create .venv with Python 3.12 when it is missing and install the pinned requirements.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/chair16.py:cpu
DATA ?= data/chair16
WORKDIR ?= runs/chair16_cpu

# Python 3.12: on PATH, or in pyenv's versions folder (where `python3.12` is only a shim).
PYTHON312 := $(shell for c in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	  $$c -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$c; break; }; done)

RESULTS_CONFIG ?= configs/chairs256.py:cpu
RESULTS_RUN ?= runs/chairs256_cpu

.PHONY: setup test demo results bench clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -n "$(PYTHON312)" || { echo "error: Python 3.12 not found (install python3.12 or pyenv install 3.12)"; exit 1; }
	test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	test -f $(DATA)/metainfo.csv || $(PY) -m data_gen.synthetic --out=$(DATA)
	$(PY) -m data_gen.preprocess --config=$(CONFIG) --config.data.root=$(DATA)
	$(PY) -m sdfjax.launch.train --config=$(CONFIG) --config.data.root=$(DATA) --workdir=$(WORKDIR)
	$(PY) -m sdfjax.launch.fit --config=$(CONFIG) --config.data.root=$(DATA) --workdir=$(WORKDIR) --config.fit.split=val
	$(PY) -m sdfjax.launch.train_siamese --config=$(CONFIG) --config.data.root=$(DATA) --workdir=$(WORKDIR)
	$(PY) -m sdfjax.launch.train_encoder --config=$(CONFIG) --config.data.root=$(DATA) --workdir=$(WORKDIR)
	$(PY) -m sdfjax.launch.eval_siamese --config=$(CONFIG) --config.data.root=$(DATA) --workdir=$(WORKDIR)
	VAL=$$(awk -F, '$$3 == "val" {print $$1; exit}' $(DATA)/metainfo.csv); \
	$(PY) -m sdfjax.launch.sketch2shape --config=$(CONFIG) --config.data.root=$(DATA) --workdir=$(WORKDIR) \
	  --config.fit.split=val --config.fit.obj_ids=$$VAL

# Every results table of the README, from generation to the report; resumes where it stopped.
results: $(STAMP)
	$(PY) -m sdfjax.launch.results --config=$(RESULTS_CONFIG) --workdir=$(RESULTS_RUN) \
	  --readme=README.md --pictures=docs/results

bench: $(STAMP)
	$(PY) -m benchmarks.sdf_sampling
	$(PY) -m benchmarks.train_step
	$(PY) -m benchmarks.fit
	$(PY) -m benchmarks.mesh_extract
	$(PY) -m benchmarks.render
	$(PY) -m benchmarks.sketch2shape --config=$(RESULTS_CONFIG) --workdir=$(RESULTS_RUN)

clean-venv:
	rm -rf $(VENV)
