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

.PHONY: setup test test-quick demo app results results-mixed bench clean-venv

setup: $(STAMP)

# The page's browser test drives Debian's Chromium (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "error: $(CHROMIUM) is missing and there is no apt-get: install Chromium"; exit 1; }
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver

$(STAMP): requirements.txt pyproject.toml
	@test -n "$(PYTHON312)" || { echo "error: Python 3.12 not found (install python3.12 or pyenv install 3.12)"; exit 1; }
	test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests

# The quick tier: every test that takes under a few seconds (no training, launchers, page or processes).
test-quick: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow" tests

# The demo's sketch to shape, sized so the whole demo stays within ten minutes on 2 cores: the first 8 of the 12
# drawings in one batch, 8 refinement steps (the results use 30), meshes scored at 64 voxels a side (128) and
# pictures at 64 px (128).
DEMO_SKETCH_FLAGS ?= --config.fit.max_shapes=8 --config.sketch.batch=8 --config.sketch.iterations=8 \
	--config.mesh.resolution=64 --config.mesh.coarse_to_fine=False --config.render.preview_resolution=64

# DeepSDF on 16 procedural chairs from nothing (generate, preprocess, train, fit the val chairs), then sketch to
# shape with the shipped model on drawings of unseen chairs from tests/data/user_sketches (no dataset needed).
demo: $(STAMP)
	test -f $(DATA)/metainfo.csv || $(PY) -m data_gen.synthetic --out=$(DATA)
	$(PY) -m data_gen.preprocess --config=$(CONFIG) --config.data.root=$(DATA) --skip=render  # DeepSDF needs no views
	$(PY) -m sdfjax.launch.train --config=$(CONFIG) --config.data.root=$(DATA) --workdir=$(WORKDIR)
	$(PY) -m sdfjax.launch.fit --config=$(CONFIG) --config.data.root=$(DATA) --workdir=$(WORKDIR) --config.fit.split=val \
	  --out_dir=$(WORKDIR)/fit_val
	$(PY) -m sdfjax.launch.sketch2shape --workdir=pretrained/chairs256_cpu --user_set=tests/data/user_sketches/sketches.json \
	  $(DEMO_SKETCH_FLAGS) --out_dir=$(WORKDIR)/sketch2shape_shipped

# The sketch-to-shape page on http://127.0.0.1:7860 with the shipped model (APP_WORKDIR: another run or export).
APP_FLAGS ?=
APP_WORKDIR ?= pretrained/chairs256_cpu
app: $(STAMP)
	$(PY) -m sdfjax.launch.app --workdir=$(APP_WORKDIR) $(APP_FLAGS)

# Every results table (docs/results.md), from generation to the report; resumes where it stopped.
results: $(STAMP)
	$(PY) -m sdfjax.launch.results --config=$(RESULTS_CONFIG) --workdir=$(RESULTS_RUN) \
	  --readme=docs/results.md --pictures=docs/results --pretrained=pretrained/chairs256_cpu --headline=README.md

# One DeepSDF for chairs and tables, reported per category, beside a model of each category alone at the same
# budget per shape (configs/mixed.py): docs/results_mixed.md.
results-mixed: $(STAMP)
	$(PY) -m sdfjax.launch.results --config=configs/mixed.py:cpu_chair --workdir=runs/mixed_cpu_chair
	$(PY) -m sdfjax.launch.results --config=configs/mixed.py:cpu_table --workdir=runs/mixed_cpu_table
	$(PY) -m sdfjax.launch.results --config=configs/mixed.py:cpu --workdir=runs/mixed_cpu \
	  --readme=docs/results_mixed.md --pictures=docs/results_mixed

bench: $(STAMP)
	$(PY) -m benchmarks.sdf_sampling
	$(PY) -m benchmarks.train_step
	$(PY) -m benchmarks.fit
	$(PY) -m benchmarks.mesh_extract
	$(PY) -m benchmarks.render
	$(PY) -m benchmarks.sketch2shape --config=$(RESULTS_CONFIG) --workdir=$(RESULTS_RUN)
	$(PY) -m benchmarks.app

clean-venv:
	rm -rf $(VENV)
