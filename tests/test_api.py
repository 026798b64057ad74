"""The library form: configs found from any folder, folders that carry their config, the Python API on the shipped
model, and the sketch launcher with no dataset, run from a folder outside the repository."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import trimesh

import sdfjax
from sdfjax import config_files
from sdfjax.fit import partial
from sdfjax.geometry import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "pretrained", "chairs256_cpu")
USER_SKETCHES = os.path.join(ROOT, "tests", "data", "user_sketches")


def test_a_packaged_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_name = config_files.load("chairs256:cpu")
    by_path = config_files.load(os.path.join(ROOT, "configs", "chairs256.py") + ":cpu")
    assert by_name.to_dict() == by_path.to_dict() and by_name.variant == "cpu"
    assert config_files.load("chair16.py:smoke").to_dict() == config_files.load("configs/chair16.py:smoke").to_dict()
    assert config_files.display(config_files.resolve("chairs256:cpu")) == "chairs256:cpu"
    with pytest.raises(ValueError, match=r"--config=chairs999:cpu: no such file, and no packaged config 'chairs999' "
                                         r"\(packaged: chair16, chairs256, mixed\)"):
        config_files.resolve("chairs999:cpu")


def test_a_folder_carries_its_config_as_data_and_launchers_find_it(tmp_path):
    config = config_files.load("chair16:smoke")
    config.train.num_epochs = 3  # an override must survive the round trip
    config_files.save(config, str(tmp_path))
    again = config_files.saved(str(tmp_path))
    assert again.train.num_epochs == 3 and again.model.to_dict() == json.loads(config.model.to_json())
    argv = config_files.launcher_argv(["prog", f"--workdir={tmp_path}", "--config.seed=3"])
    assert argv[1] == f"--config={config_files.__file__}:{tmp_path}" and argv[2:] == [f"--workdir={tmp_path}",
                                                                                   "--config.seed=3"]
    assert config_files.get_config(str(tmp_path)).train.num_epochs == 3  # what that --config loads
    given = config_files.launcher_argv(["prog", "--config=chair16:cpu", f"--workdir={tmp_path}"])
    assert given[1] == f"--config={config_files.resolve('chair16:cpu')}"  # an explicit --config wins
    assert config_files.saved(str(tmp_path / "empty")) is None
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="config.json: expected a JSON object"):
        config_files.saved(str(tmp_path))


def test_scan_samples_lie_on_both_sides_of_the_surface_along_the_normals():
    points = np.array([[0.0, 0.0, 0.5], [0.2, 0.0, 0.0]])
    normals = np.array([[0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])  # not unit: normalised
    samples = partial.oriented_point_samples(points, normals, offsets=(0.01,), free_points=0)
    np.testing.assert_allclose(samples[:, 3], [0, 0, 0.01, 0.01, -0.01, -0.01], atol=1e-7)
    np.testing.assert_allclose(samples[2, :3], [0.0, 0.0, 0.51], atol=1e-7)
    np.testing.assert_allclose(samples[5, :3], [0.19, 0.0, 0.0], atol=1e-7)
    # a thin slab scanned on both faces: a point pushed through it is outside again, at its distance to the far face
    slab = partial.oriented_point_samples([[0, 0, 0.01], [0, 0, -0.01]], [[0, 0, 1], [0, 0, -1]], offsets=(0.03,),
                                          free_points=0)
    np.testing.assert_allclose(slab[4], [0, 0, -0.02, 0.01], atol=1e-7)  # the top point moved 0.03 down
    # uniform points: their distance to the nearest scan point, signed by its normal
    free = partial.oriented_point_samples(points, normals, offsets=(), free_points=500, seed=3)[2:]
    nearest = np.argmin(np.linalg.norm(free[:, None, :3] - points[None], axis=2), axis=1)
    distance = np.linalg.norm(free[:, :3] - points[nearest], axis=1)
    side = np.sign(np.sum((free[:, :3] - points[nearest]) * normals[nearest], axis=1))
    np.testing.assert_allclose(free[:, 3], side * distance, atol=1e-6)
    for bad, message in (((points, None), "normals: surface points need their normals"),
                         ((points[:, :2], normals), r"points: expected \(N, 3\)"),
                         ((points, normals[:1]), "2 points but 1 normals"),
                         ((points * np.nan, normals), "points: 2 rows are NaN"),
                         ((points, normals * 0), "normals: 2 have zero length")):
        with pytest.raises(ValueError, match=message):
            partial.oriented_point_samples(*bad)


def test_the_package_says_its_version():
    assert sdfjax.__version__ == config_files_version()


def config_files_version() -> str:
    text = open(os.path.join(ROOT, "CITATION.cff")).read()
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("version:"))


@pytest.fixture(scope="module")
def shipped_model():
    return sdfjax.load_pretrained(SHIPPED)


def test_the_api_meshes_evaluates_and_fits_the_shipped_model(shipped_model):
    model = shipped_model
    assert model.latents.shape == (256, model.latent_dim) and len(model.obj_ids) == 256
    z = model.latents[3]
    mesh = model.mesh(z, resolution=64)
    assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) > 100
    assert np.all(np.abs(mesh.vertices) < 1.0)  # the normalised frame: inside the unit sphere
    # the decoder's SDF: ~0 on its own surface, positive far outside, negative just inside along the normals
    on_surface, normals = mesh.vertices[::7], mesh.vertex_normals[::7]
    assert np.median(np.abs(model.sdf(z, on_surface))) < 0.01
    assert np.all(model.sdf(z, np.array([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])) > 0.5)
    assert np.mean(model.sdf(z, on_surface - 0.02 * normals) < 0) > 0.8
    # DeepSDF from a scan: 5,000 surface points with normals of that shape bring the mean latent to it
    points, faces = trimesh.sample.sample_surface(mesh, 5000, seed=0)
    fitted = model.fit(points=points, normals=mesh.face_normals[faces], iterations=150)
    start = model.latents.mean(axis=0)
    assert np.mean(np.abs(model.sdf(fitted, points))) < 0.5 * np.mean(np.abs(model.sdf(start, points)))
    for bad, message in (({}, "give samples"), ({"samples": np.zeros((3, 3))}, r"expected \(N, 4\)"),
                         ({"points": points}, "normals: surface points need their normals")):
        with pytest.raises(ValueError, match=message):
            model.fit(**bad)
    with pytest.raises(ValueError, match=r"latent: expected shape \(64,\)"):
        model.mesh(np.zeros(3))


def test_a_folder_with_no_model_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}: neither an exported model nor a training run"):
        sdfjax.load_pretrained(str(tmp_path))


@pytest.mark.slow
def test_five_lines_outside_the_repository_give_a_mesh_and_the_launcher_shapes_a_png_without_a_dataset(tmp_path):
    script = (f"import sdfjax\n"
              f"model = sdfjax.load_pretrained({SHIPPED!r})\n"
              f"mesh = model.mesh(model.latents.mean(axis=0), resolution=64)\n"
              f"mesh.export('mean.ply')\n"
              f"print(len(mesh.faces))\n")
    assert len(script.strip().splitlines()) <= 5
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 100 and len(trimesh.load(tmp_path / "mean.ply").faces) > 100
    entry = json.loads(open(os.path.join(USER_SKETCHES, "sketches.json")).read())[0]
    png = os.path.join(USER_SKETCHES, entry["file"])
    done = subprocess.run([sys.executable, "-m", "sdfjax.launch.sketch2shape", f"--workdir={SHIPPED}",
                           f"--sketch={png}", f"--azimuths={entry['azimuth']}", f"--elevations={entry['elevation']}",
                           "--config.sketch.iterations=3", "--out_dir=out"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    meshes = list((tmp_path / "out" / "meshes").glob("*.obj"))
    assert len(meshes) == 1 and len(trimesh.load(meshes[0]).faces) > 100
    assert not (tmp_path / "data").exists()  # nothing looked for a dataset in the working folder


@pytest.mark.slow
def test_the_api_shapes_a_drawing_closer_to_its_chair_than_the_mean_chair(shipped_model):
    from sdfjax.data import pipeline

    entry = json.loads(open(os.path.join(USER_SKETCHES, "sketches.json")).read())[0]
    shape = shipped_model.sketch_to_shape(os.path.join(USER_SKETCHES, entry["file"]), entry["azimuth"],
                                          entry["elevation"], resolution=64)
    assert shape.sketch.shape == (64, 64) and shape.latent.shape == (shipped_model.latent_dim,)
    truth = pipeline.surface_record(shipped_model.config, os.path.join(USER_SKETCHES, entry["mesh"]),
                                    entry["obj_id"])["surface_samples"][:, :3]

    def chamfer(mesh):
        return metrics.chamfer_distance(np.asarray(mesh.sample(5000, seed=0), np.float32), truth[:5000])

    assert chamfer(shape.mesh) < chamfer(shipped_model.mesh(shipped_model.latents.mean(axis=0), 64))


def test_drawings_of_known_shapes_are_scored_without_a_dataset(tmp_path):
    from sdfjax import errors
    from sdfjax.sketch2shape import optimize

    entries = json.loads(open(os.path.join(USER_SKETCHES, "sketches.json")).read())[:2]
    config = config_files.load("chairs256:cpu")
    config.data.root = str(tmp_path / "no_dataset")
    batch, records = optimize.user_set_batch(config, os.path.join(USER_SKETCHES, "sketches.json"), 64)
    assert batch.obj_ids[:2] == [e["obj_id"] for e in entries] and batch.sketches.shape[1:] == (1, 64, 64)
    assert records[0]["surface_samples"].shape == (config.data.num_surface_samples, 6)
    assert np.abs(records[0]["normalized_mesh"].vertices).max() < 1.0
    (tmp_path / "sketches.json").write_text(json.dumps([{k: v for k, v in e.items() if k != "mesh"}
                                                        for e in entries]))
    with pytest.raises(errors.DataError, match=f"shapes .*{entries[0]['obj_id']}.* are not in .*no_dataset and "
                                               "have no mesh"):
        optimize.user_set_batch(config, str(tmp_path / "sketches.json"), 64)
