"""The model shipped in pretrained/: it verifies, loads like a run with its own config, and damage is named."""

import os
import shutil

import numpy as np
import pytest

from sdfjax import errors, pretrained, trained
from sdfjax.launch.common import load_config_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "pretrained", "chairs256_cpu")


def test_the_shipped_model_verifies_and_loads_with_the_config_its_manifest_names():
    manifest = pretrained.verify(SHIPPED)
    assert manifest["bytes"] < 10e6  # a few MB: parameters only, no optimiser state
    config = load_config_file(os.path.join(ROOT, manifest["config"]))
    model = trained.load_trained(config, SHIPPED)
    assert model.step == manifest["source_steps"]["decoder"]
    assert model.latents.shape == (config.data.num_train, config.model.latent_dim)
    assert np.isfinite(model.latents).all() and np.abs(model.latents).max() > 0
    _, _, meta = trained.load_encoder(SHIPPED)
    assert meta["latent_dim"] == config.model.latent_dim
    trained.load_siamese(SHIPPED)
    assert pretrained.verify(SHIPPED) == manifest  # loading writes nothing into the folder


def test_a_damaged_missing_or_unlisted_file_is_named(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(SHIPPED, copy)
    manifest = pretrained.verify(str(copy))
    name = max(manifest["files"], key=lambda f: os.path.getsize(copy / f))  # a weights file
    blob = bytearray((copy / name).read_bytes())
    blob[len(blob) // 2] ^= 1
    (copy / name).write_bytes(bytes(blob))
    with pytest.raises(errors.DataError, match=f"{name}: checksum differs"):
        pretrained.verify(str(copy))
    (copy / name).unlink()
    with pytest.raises(errors.DataError, match=f"{name}: listed in MANIFEST.json but missing"):
        pretrained.verify(str(copy))
    shutil.copytree(SHIPPED, copy, dirs_exist_ok=True)
    (copy / "stray.bin").write_bytes(b"x")
    with pytest.raises(errors.DataError, match="stray.bin: not listed"):
        pretrained.verify(str(copy))
    (copy / "MANIFEST.json").unlink()
    with pytest.raises(errors.DataError, match="no manifest"):
        pretrained.verify(str(copy))
