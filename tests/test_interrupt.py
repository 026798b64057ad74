"""SIGKILL at a random point of preprocessing and of training: the rerun finishes with every file intact."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sdfjax import checkpoint
from sdfjax.data import layout, tfds_builder
from sdfjax.train import logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = int(os.environ.get("SDFJAX_KILL_SEED", "0"))  # the random points; any seed must pass


def _launch(module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, "--config=configs/chair16.py:smoke", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))


def _kill_after(process: subprocess.Popen, started, delay: float, timeout: float = 120.0) -> None:
    """SIGKILL `process` `delay` seconds after `started()` first holds; fails if it ended before that."""
    deadline = time.monotonic() + timeout
    while not started():
        assert process.poll() is None, f"ended before the kill point: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.02)
    time.sleep(delay)
    assert process.poll() is None, "ended before the kill point; choose an earlier one"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return out


def _shape_files(root: str) -> dict[str, bytes]:
    files = {}
    for s in layout.read_metainfo(root):
        path = layout.shape_dir(root, s.obj_id)
        for directory, _, names in os.walk(path):
            for name in names:
                full = os.path.join(directory, name)
                with open(full, "rb") as f:
                    files[os.path.relpath(full, root)] = f.read()
    return files


@pytest.mark.slow
def test_preprocessing_killed_at_a_random_point_reruns_to_the_same_files(tiny_dataset, tmp_path):
    root = tiny_dataset.data.root
    clean = str(tmp_path / "clean")
    shutil.copytree(root, clean)
    # Enough work per shape (about half a second) that the kill lands inside the run.
    heavier = ["--config.data.num_sdf_samples=200000", "--config.render.azimuths=(0,90,180,270)"]
    _finish(_launch("data_gen.preprocess", f"--config.data.root={clean}", *heavier))

    rng = random.Random(SEED)
    process = _launch("data_gen.preprocess", f"--config.data.root={root}", *heavier)
    first = os.path.join(layout.shape_dir(root, "chair_000_0000"), layout.NORMALIZED_MESH)
    _kill_after(process, lambda: os.path.exists(first), rng.uniform(0.0, 1.0))
    _finish(_launch("data_gen.preprocess", f"--config.data.root={root}", *heavier))

    assert _shape_files(root) == _shape_files(clean)  # no temporary file left, every file whole
    with open(os.path.join(root, "failures.csv")) as f:
        assert f.read().strip() == "obj_id,stages,reason"
    source = tfds_builder.data_source(tiny_dataset, "train")
    assert len(source) == 2 and source[1]["sdf_samples"].shape[1] == 4


@pytest.mark.slow
def test_training_killed_at_a_random_point_resumes_to_the_uninterrupted_result(tiny_dataset, tmp_path):
    config = tiny_dataset
    root = config.data.root
    flags = [f"--config.data.root={root}", "--config.train.num_epochs=60", "--config.train.checkpoint_every_epochs=5"]
    _finish(_launch("data_gen.preprocess", f"--config.data.root={root}"))
    full = str(tmp_path / "full")
    _finish(_launch("sdfjax.launch.train", *flags, f"--workdir={full}"))

    rng = random.Random(SEED + 1)
    killed = str(tmp_path / "killed")
    process = _launch("sdfjax.launch.train", *flags, f"--workdir={killed}")
    _kill_after(process, lambda: len(checkpoint.manager(killed).all_steps()) > 0 if os.path.isdir(
        os.path.join(killed, "checkpoints")) else False, rng.uniform(0.0, 0.5))
    out = _finish(_launch("sdfjax.launch.train", *flags, f"--workdir={killed}"))
    assert "trained to epoch 59" in out

    with open(os.path.join(killed, "metrics.jsonl")) as f:
        assert all(json.loads(line)["step"] > 0 for line in f.read().splitlines())
    a, b = logs.read_metrics(full), logs.read_metrics(killed)
    assert [r["epoch"] for r in b] == list(range(60))
    np.testing.assert_allclose([r["loss"] for r in b][-1], a[-1]["loss"], rtol=1e-5)
    assert checkpoint.manager(killed).latest_step() == checkpoint.manager(full).latest_step()
    flat = [np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(checkpoint.read_state(w)["params"])])
            for w in (full, killed)]
    np.testing.assert_allclose(flat[1], flat[0], rtol=1e-4, atol=1e-6)
