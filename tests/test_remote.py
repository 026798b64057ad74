"""Workdirs on a bucket (gs://...): every file a run writes goes through etils.epath, none to a local ./gs: folder.

The stand-in for Cloud Storage maps gs://<path> to a local folder for everything that
goes through etils.epath; code that bypassed epath (open, os.makedirs, os.path.abspath)
would write under the working directory's ./gs: instead, which each test checks is absent.
Orbax checkpoints on gs:// go through Orbax's own tensorstore driver, which no local
stand-in reaches: they are checked only for the path Orbax is given.
"""

import os

import numpy as np
import pytest
from etils import epath
from etils.epath import testing as epath_testing

from sdfjax import checkpoint, storage, trained
from sdfjax.fit import reconstruct
from sdfjax.train import logs
from tests.conftest import train_smoke_decoder


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """(local folder standing for gs://bucket, the working directory that must stay free of ./gs:)."""
    store = tmp_path / "store"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def local(path):
        path = os.fspath(path)
        return str(store / path[len("gs://"):]) if path.startswith("gs://") else path

    def one(fn, path, *args, **kwargs):
        return fn(local(path), *args, **kwargs)

    def two(fn, path, target, *args, **kwargs):
        return fn(local(path), local(target), *args, **kwargs)

    with epath_testing.mock_epath(open=one, exists=one, isdir=one, listdir=one, makedirs=one, mkdir=one, remove=one,
                                  rmtree=one, stat=one, rename=two, replace=two, copy=two):
        yield store / "bucket", cwd
    assert not os.path.exists(cwd / "gs:"), "something bypassed etils.epath"


def test_every_io_helper_writes_to_the_bucket(bucket):
    store, _ = bucket
    run = storage.run_dir("gs://bucket/run", "fit")
    assert run.startswith("gs://bucket/run/fit/") and (store / run[len("gs://bucket/"):]).is_dir()
    storage.atomic_write_text("gs://bucket/a/b.txt", "one\n")
    storage.append_text("gs://bucket/a/b.txt", "two\n")
    assert (store / "a" / "b.txt").read_text() == "one\ntwo\n" and storage.read_text("gs://bucket/a/b.txt") == "one\ntwo\n"
    storage.save_npz("gs://bucket/x.npz", latents=np.arange(6.0).reshape(2, 3), obj_ids=np.asarray(["a", "b"]))
    np.testing.assert_array_equal(storage.load_npz("gs://bucket/x.npz")["latents"], np.arange(6.0).reshape(2, 3))
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    storage.write_png("gs://bucket/p.png", image)
    np.testing.assert_array_equal(storage.read_png("gs://bucket/p.png"), image)
    assert sorted(p.name for p in store.iterdir()) == ["a", "p.png", "run", "x.npz"]  # no temporary left
    assert checkpoint.checkpoint_dir("gs://bucket/run") == "gs://bucket/run/checkpoints"  # no abspath mangling


def test_training_logs_and_a_cut_line_on_a_bucket(bucket):
    store, _ = bucket
    log = logs.MetricsLog("gs://bucket/run", enabled=True)
    for step in (1, 2):
        log.write({"epoch": step - 1, "step": step, "loss": 1.0 / step})
    log.close()
    storage.append_text("gs://bucket/run/metrics.jsonl", '{"epoch": 2, "st')  # a write cut short
    logs.MetricsLog("gs://bucket/run", enabled=True).close()  # a resumed run drops it
    assert (store / "run" / "metrics.jsonl").read_text().count("\n") == 2
    assert [r["loss"] for r in logs.read_metrics("gs://bucket/run")] == [1.0, 0.5]
    logs.plot_loss("gs://bucket/run", {"loss": "loss"})
    assert (store / "run" / "loss.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_fit_writes_its_run_folder_to_a_bucket(bucket, tmp_path):
    store, _ = bucket
    config, workdir = train_smoke_decoder(tmp_path / "local")
    summary = reconstruct.fit_split(config, workdir, progress=False, out_dir="gs://bucket/fit")
    out = store / "fit"
    assert sorted(p.name for p in out.iterdir()) == ["fit_loss.png", "latents.npz", "meshes", "metrics.csv"]
    assert (out / "meshes" / "chair_000_0002.obj").stat().st_size > 0
    assert "mean_metric" in (out / "metrics.csv").read_text() and np.isfinite(summary["mean"]["chamfer"])
    model = trained.load_trained(config, workdir)
    np.testing.assert_array_equal(trained.resolve_latent("gs://bucket/fit/latents.npz:chair_000_0002", model),
                                  np.load(out / "latents.npz")["latents"][0])
    assert epath.Path("gs://bucket/fit/metrics.csv").exists()
