"""The model shipped in pretrained/: it verifies, loads like a run with its own config, and damage is named."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from sdfjax import checkpoint, config_files, errors, parallel, shipped, trained
from sdfjax.config_files import load as load_config_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "pretrained", "chairs256_cpu")


CONFIG = load_config_file("chairs256:cpu")


def _plain(config) -> dict:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"section.name": value} of a nested dict."""
    flat = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return flat


# The shipped weights were trained on images from elevations -50..30 (below the seat for the negative ones);
# config.render's views all look from above. The two configs differ in those view fields, and the app and API
# read the shipped config.json, so the model is always used with the views it was trained on.
VIEW_FIELDS = {"render.elevations", "sketch.elevation", "sketch.views", "results.test_views"}
# Settings the shipped config predates; the code reads each with the default that keeps the shipped model's
# behaviour (no hand strokes in training it did not have, no refinement gate, no per-shape limits).
NEWER_FIELDS = {"data.shape_seconds", "data.shape_memory_mb", "sketch.min_improvement",
                *(f"{section}.{name}" for section in ("siamese", "encoder")
                  for name in ("overshoot_pixels", "overshoot_share", "twice_share", "twice_pixels", "wide_share"))}


def test_the_shipped_model_verifies_and_loads_with_the_config_it_carries():
    manifest = shipped.verify(SHIPPED)
    assert manifest["bytes"] < 15e6  # parameters only (no optimiser state) and the retrieval index
    config = config_files.saved(SHIPPED)  # its config.json, read as data
    assert manifest["config"] == "chairs256:cpu"
    shipped_fields, packaged_fields = _flat(_plain(config)), _flat(_plain(CONFIG))
    assert packaged_fields.keys() - shipped_fields.keys() == NEWER_FIELDS
    assert shipped_fields.keys() <= packaged_fields.keys()
    assert {k for k in shipped_fields if shipped_fields[k] != packaged_fields[k]} == VIEW_FIELDS
    assert "config.json" in manifest["files"]
    model = trained.load_trained(config, SHIPPED)
    assert model.step == manifest["source_steps"]["decoder"]
    assert model.latents.shape == (config.data.num_train, config.model.latent_dim)
    assert np.isfinite(model.latents).all() and np.abs(model.latents).max() > 0
    _, _, meta = trained.load_encoder(SHIPPED)
    assert meta["latent_dim"] == config.model.latent_dim
    trained.load_siamese(SHIPPED)
    assert shipped.verify(SHIPPED) == manifest  # loading writes nothing into the folder
    sizes = {f: os.path.getsize(os.path.join(SHIPPED, f)) for f in manifest["files"]}
    assert max(sizes.values()) < 2_000_000, sizes  # committed to git: every file under 2 MB


def test_a_capped_checkpoint_splits_its_data_files_and_reads_back_whole_or_params_only(tmp_path):
    arrays = {f"w{i}": np.random.default_rng(i).normal(size=(256, 300)).astype(np.float32) for i in range(8)}
    one_array = arrays["w0"].nbytes
    moments = {"mu": np.ones((4, 3), np.float32)}
    checkpoint.save(checkpoint.manager(str(tmp_path)), {"params": arrays, "opt_state": moments, "step": np.int64(7)},
                    {"name": "x"}, max_file_bytes=2 * one_array)
    sizes = [os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(tmp_path) for f in fs]
    assert max(sizes) <= 3 * one_array < sum(arrays[k].nbytes for k in arrays)  # a cap plus at most one array
    state, meta, step = checkpoint.restore_good(str(tmp_path), sharding=parallel.replicated(parallel.make_mesh()))
    assert (step, meta) == (7, {"name": "x"})
    np.testing.assert_array_equal(state["opt_state"]["mu"], moments["mu"])
    params_only, _, _ = checkpoint.restore_good(str(tmp_path), sharding=parallel.replicated(parallel.make_mesh()),
                                                keys=("params",))
    assert set(params_only) == {"params"}  # inference never reads the optimiser's moments
    for name, array in arrays.items():
        np.testing.assert_array_equal(state["params"][name], array)
        np.testing.assert_array_equal(params_only["params"][name], array)


def test_a_damaged_missing_or_unlisted_file_is_named(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(SHIPPED, copy)
    manifest = shipped.verify(str(copy))
    name = max(manifest["files"], key=lambda f: os.path.getsize(copy / f))  # a weights file
    blob = bytearray((copy / name).read_bytes())
    blob[len(blob) // 2] ^= 1
    (copy / name).write_bytes(bytes(blob))
    with pytest.raises(errors.DataError, match=f"{name}: checksum differs"):
        shipped.verify(str(copy))
    (copy / name).unlink()
    with pytest.raises(errors.DataError, match=f"{name}: listed in MANIFEST.json but missing"):
        shipped.verify(str(copy))
    shutil.copytree(SHIPPED, copy, dirs_exist_ok=True)
    (copy / "stray.bin").write_bytes(b"x")
    with pytest.raises(errors.DataError, match="stray.bin: not listed"):
        shipped.verify(str(copy))
    (copy / "stray.bin").unlink()
    manifest = json.loads((copy / "MANIFEST.json").read_text())
    for outside in ("../secret.txt", "/etc/hostname"):
        (copy / "MANIFEST.json").write_text(json.dumps({**manifest, "files": {**manifest["files"], outside: "0"}}))
        with pytest.raises(errors.DataError, match="a file outside the folder"):
            shipped.verify(str(copy))
    (copy / "MANIFEST.json").unlink()
    with pytest.raises(errors.DataError, match="no manifest"):
        shipped.verify(str(copy))


def test_export_never_writes_over_a_users_folder_or_the_run(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(SHIPPED, run)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    for out, message in ((mine, "is not an sdfjax export"), (run, "is or holds the run"),
                         (tmp_path, "is or holds the run")):
        with pytest.raises(errors.DataError, match=message):
            shipped.export(str(run), str(out), CONFIG, "chairs256:cpu")
    assert (mine / "notes.txt").read_text() == "my notes" and sorted(os.listdir(mine)) == ["notes.txt"]
    assert shipped.verify(str(run))["config"] == "chairs256:cpu"  # the run untouched
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.slow
def test_export_is_skipped_for_the_same_checkpoints_and_redone_for_a_part_trained_again(tmp_path):
    run, out = str(tmp_path / "run"), str(tmp_path / "out")
    shutil.copytree(SHIPPED, run)  # an export is a run folder: it exports like one
    first = shipped.export(run, out, CONFIG, "chairs256:cpu")
    assert set(first["source_digests"]) == set(shipped.PARTS)
    written = os.path.getmtime(os.path.join(out, shipped.MANIFEST))
    assert shipped.export(run, out, CONFIG, "chairs256:cpu") == first  # nothing changed: left as it is
    assert os.path.getmtime(os.path.join(out, shipped.MANIFEST)) == written
    # the encoder trained again to the same step count (a results stage rerun): other weights, same steps
    sharding = parallel.replicated(parallel.make_mesh())
    encoder_dir = trained.encoder_dir(run)
    state, meta, step = checkpoint.restore_good(encoder_dir, sharding=sharding, keys=("params",))
    shutil.rmtree(encoder_dir)
    moved = jax.tree.map(lambda a: np.asarray(a) + 1.0, state["params"])
    checkpoint.save(checkpoint.manager(encoder_dir), {"params": moved, "step": np.int64(step)}, meta)
    second = shipped.export(run, out, CONFIG, "chairs256:cpu")
    assert second["source_steps"] == first["source_steps"]
    assert second["source_digests"]["encoder"] != first["source_digests"]["encoder"]
    assert {p: second["source_digests"][p] for p in ("decoder", "siamese")} == {
        p: first["source_digests"][p] for p in ("decoder", "siamese")}
    assert not list(tmp_path.glob(".*partial*")) and not list(tmp_path.glob(".*old*"))
    _, exported, _ = trained.load_encoder(out)
    for a, b in zip(jax.tree.leaves(exported), jax.tree.leaves(moved)):
        np.testing.assert_array_equal(a, b)
