"""One command at a time per folder: a live holder refuses a second command by name, a dead one's lock is taken."""

import json
import os
import socket
import subprocess
import sys

import pytest

from sdfjax import errors, locks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_lock(folder, pid, host=None):
    folder.mkdir(exist_ok=True)
    (folder / locks.LOCK_NAME).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                      "command": "python -m sdfjax.launch.train --workdir=x"}))


def test_a_live_holder_refuses_a_second_command_and_a_dead_ones_lock_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    with locks.hold(str(folder), "training"):
        assert json.loads((folder / locks.LOCK_NAME).read_text())["pid"] == os.getpid()
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:  # another live process of this host holds it (written as that process would)
            (folder / locks.LOCK_NAME).unlink()
            _write_lock(folder, sleeper.pid)
            with pytest.raises(errors.DataError, match=rf"training refused: process {sleeper.pid} on "):
                locks.acquire(str(folder), "training")
        finally:
            sleeper.kill()
            sleeper.wait()
        # its holder is gone: the lock is stale and taken over
        path = locks.acquire(str(folder), "training")
        assert json.loads((folder / locks.LOCK_NAME).read_text())["pid"] == os.getpid()
        locks.release(path)
    assert not (folder / locks.LOCK_NAME).exists()
    _write_lock(folder, 1, host="another-host")  # held on another host: never taken over from here
    with pytest.raises(errors.DataError, match="on another-host"):
        locks.acquire(str(folder), "preprocessing")
    locks.release(str(folder / locks.LOCK_NAME))  # not ours: left as it is
    assert (folder / locks.LOCK_NAME).exists()


@pytest.mark.slow
def test_two_preprocessing_runs_on_one_data_root_one_finishes_and_the_other_refuses_in_one_line(tmp_path):
    from configs import chair16
    from data_gen import synthetic
    from sdfjax.data import tfds_builder

    config = chair16.get_config("smoke")
    config.data.root = str(tmp_path / "chairs")
    synthetic.write_dataset(config.data.root, "chair", num_train=2, num_val=1, num_test=1)
    command = [sys.executable, "-m", "data_gen.preprocess", f"--config={ROOT}/configs/chair16.py:smoke",
               f"--config.data.root={config.data.root}"]
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes[0] == 0, outputs
    for run, (_, err) in zip(runs, outputs):
        if run.returncode:  # the refused one: one line, no traceback
            assert "preprocessing refused: process" in err and "Traceback" not in err, err
    source = tfds_builder.data_source(config, "train")  # every shape's files load
    assert len(source) == 2 and all(source[i]["sdf_samples"].shape[1] == 4 for i in range(2))
    assert not os.path.exists(os.path.join(config.data.root, locks.LOCK_NAME))
