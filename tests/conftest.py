"""Shared fixtures: small meshes and a tiny procedural dataset."""

import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# One XLA compilation cache for the session, in a fresh folder each run (set before JAX is imported; the
# launchers the tests start inherit it): tests and subprocesses compile the same small programs many times.
# Every program is kept, however quick to compile: the results test's stages, each its own process, share
# many small ones (threshold 0.3 s: that test and test_fit took 125 s here; 0: 103 s).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="sdfjax-tests-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The suite's workloads are tiny, so most of its time is XLA compiling them. LLVM's optimisation level 0 halves
# the compile time of the larger programs (the 8-device Siamese test: 60 s -> 34 s); the programs (HLO) are the
# same, only their machine code runs slower. Benchmarks never pass through this file; the page's test runs its
# server on the shipped model with optimised code (`optimised_env`), where execution outweighs compilation.
QUICK_COMPILE_FLAG = "--xla_backend_optimization_level=0"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + QUICK_COMPILE_FLAG).strip()


def optimised_env(**extra) -> dict:
    """os.environ for a subprocess that runs a real workload long enough for optimised code to pay (the page on
    the shipped model), without the quick-compile flag; `extra` variables added."""
    flags = os.environ.get("XLA_FLAGS", "").replace(QUICK_COMPILE_FLAG, "").strip()
    return dict(os.environ, XLA_FLAGS=flags, **extra)


@pytest.fixture
def smoke_config(tmp_path):
    """The `smoke` config pointed at an empty dataset folder under tmp_path."""
    from configs import chair16

    config = chair16.get_config("smoke")
    config.data.root = str(tmp_path / "chairs")
    return config


@pytest.fixture
def tiny_dataset(smoke_config):
    """Four procedural chairs (2 train, 1 val, 1 test) written in the dataset layout."""
    from data_gen import synthetic

    synthetic.write_dataset(smoke_config.data.root, "chair", num_train=2, num_val=1, num_test=1)
    return smoke_config


def train_smoke_decoder(root):
    """(config, workdir): a smoke DeepSDF trained 20 epochs on 2 procedural chairs (1 val, 1 test) under root."""
    from configs import chair16
    from data_gen import synthetic
    from sdfjax.data import pipeline
    from sdfjax.train import deepsdf

    config = chair16.get_config("smoke")
    config.data.root = str(root / "chairs")
    synthetic.write_dataset(config.data.root, "chair", num_train=2, num_val=1, num_test=1)
    pipeline.preprocess_dataset(config, progress=False)
    config.train.num_epochs = 20
    workdir = str(root / "run")
    deepsdf.train(config, workdir, progress=False)
    return config, workdir


@pytest.fixture(scope="session")
def trained_pair(tmp_path_factory):
    """(config, workdir, summary): a smoke DeepSDF and Siamese encoder trained on 2 procedural chairs (1 val, 1 test)."""
    from sdfjax.train import siamese

    config, workdir = train_smoke_decoder(tmp_path_factory.mktemp("siamese"))
    summary = siamese.train_siamese(config, workdir, progress=False)
    return config, workdir, summary


# The files that take longest start first, so that with `pytest -n 2 --dist loadfile` (make test) neither worker
# is left with a long file at the end while the other is idle. pytest-xdist 3.x hands out files by their number
# of tests unless told not to (`--no-loadscope-reorder`, in the Makefile): without it the results test, three
# tests long and the longest, started last. Both orders happened to end within 2 s of each other here (280 s);
# this one does not depend on luck.
SLOW_FILES_FIRST = ("test_results.py", "test_app.py", "test_sketch2shape.py", "test_siamese.py", "test_interrupt.py",
                    "test_render.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return SLOW_FILES_FIRST.index(name) if name in SLOW_FILES_FIRST else len(SLOW_FILES_FIRST)
    items.sort(key=rank)  # stable: each file's own order is kept
