"""Latent fitting: the folded decoder, sampling, restarts, inits, sharding, end to end."""

import csv
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import point_cloud_utils as pcu
import pytest
import trimesh

from configs import chair16
from sdfjax import chunking, errors
from sdfjax import trained as trained_lib
from sdfjax.data import tfds_builder
from sdfjax.fit import folded as folded_lib
from sdfjax.evaluators import tables
from sdfjax.fit import meshing, normals, optimizer, partial, reconstruct, sdf_fit, traverse
from sdfjax.geometry import isosurface
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.geometry import sdf as sdf_lib
from sdfjax.render import camera as camera_lib
from sdfjax.render import pictures, tracer
from sdfjax import losses
from sdfjax.models import decoder as decoder_lib
from tests.conftest import train_smoke_decoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _decoder(compute_dtype="float32", **overrides):
    config = chair16.get_config("smoke")
    config.model.compute_dtype = compute_dtype
    config.model.update(overrides)
    decoder = decoder_lib.from_config(config.model)
    params = decoder_lib.init_params(decoder, jax.random.key(0))
    # g != ||v|| so that folding weight norm matters
    params = jax.tree_util.tree_map_with_path(lambda p, x: x * 1.7 if p[-1].key == "g" else x, params)
    return decoder, params


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [{}, {"fourier_frequencies": 2}, {"skip_layers": (1, 3)}])
def test_folded_decoder_equals_the_flax_decoder_and_its_latent_gradient(overrides):
    decoder, params = _decoder(**overrides)
    folded = folded_lib.fold_decoder(decoder, params)
    z = jax.random.normal(jax.random.key(1), (3, decoder.latent_dim))
    xyz = jax.random.uniform(jax.random.key(2), (3, 50, 3), minval=-1, maxval=1)
    f = decoder.fourier_frequencies

    def reference(z):
        return decoder.apply(params, z[:, None, :], xyz)

    def folded_fn(z):
        return folded_lib.folded_sdf(folded, folded_lib.latent_biases(folded, z), xyz, f)

    np.testing.assert_allclose(folded_fn(z), reference(z), atol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda z: folded_fn(z).sum())(z), jax.grad(lambda z: reference(z).sum())(z),
                               atol=1e-5)


@pytest.mark.slow
def test_bfloat16_folded_decoder_is_close_to_float32():
    decoder, params = _decoder("bfloat16")
    folded = folded_lib.fold_decoder(decoder, params)
    assert folded["layers"][1]["w_h"].dtype == jnp.bfloat16
    z = jax.random.normal(jax.random.key(1), (2, decoder.latent_dim))
    xyz = jax.random.uniform(jax.random.key(2), (2, 64, 3), minval=-1, maxval=1)
    ref = decoder.clone(compute_dtype="float32").apply(params, z[:, None, :], xyz)
    np.testing.assert_allclose(folded_lib.folded_sdf(folded, folded_lib.latent_biases(folded, z), xyz), ref, atol=2e-2)


def test_draw_samples_takes_half_positive_half_negative_and_copes_with_one_sign():
    samples = sdf_fit.ShapeSamples.from_list([np.array([[0, 0, 0, 0.1], [1, 1, 1, -0.2], [2, 2, 2, 0.3]], np.float32),
                                             np.array([[0, 0, 0, 0.5], [1, 1, 1, 0.4]], np.float32)])
    assert list(samples.num_positive) == [2, 2] and list(samples.num_samples) == [3, 2]
    assert np.all(samples.xyz_bounds[0, :2, 3] > 0) and samples.xyz_bounds[0, 2, 3] < 0
    drawn = sdf_fit.draw_samples(jax.random.key(0), samples.xyz_bounds[0], 2, 3, 100)
    assert np.all(drawn[:50, 3] > 0) and np.all(drawn[50:, 3] < 0)
    only_positive = sdf_fit.draw_samples(jax.random.key(0), samples.xyz_bounds[1], 2, 2, 100)
    assert np.all(only_positive[:, 3] > 0)  # never the zero padding
    with pytest.raises(ValueError, match="no SDF samples"):
        sdf_fit.ShapeSamples.from_list([np.zeros((0, 4), np.float32)])


def _target_samples(folded, z_true, rng, count=4000):
    xyz = rng.uniform(-1, 1, (count, 3)).astype(np.float32)
    sdf = np.asarray(folded_lib.folded_sdf(folded, folded_lib.latent_biases(folded, jnp.asarray(z_true)[None]),
                                       xyz[None]))[0]
    return np.concatenate([xyz, sdf[:, None]], axis=1)


@pytest.mark.slow
def test_fitting_recovers_a_shape_of_the_decoder_and_keeps_the_best_restart():
    decoder, params = _decoder()
    folded = folded_lib.fold_decoder(decoder, params)
    rng = np.random.default_rng(0)
    truths = rng.normal(0, 0.5, (3, decoder.latent_dim)).astype(np.float32)
    samples = sdf_fit.ShapeSamples.from_list([_target_samples(folded, z, rng) for z in truths])
    settings = sdf_fit.FitSettings(num_iterations=150, lr_decay_at=120, lr=2e-2, samples_per_step=512,
                                  code_reg_weight=0.0)
    initial = optimizer.initial_latents("normal", 3, 2, decoder.latent_dim, truths, rng)
    steps = []
    result = sdf_fit.fit_latents(folded, samples, initial, settings, jax.random.key(0), progress=steps.append)
    assert steps[-1] == 150 and result.latents.shape == (3, decoder.latent_dim)
    assert result.loss_curve.shape == (150, 3)
    assert np.all(result.loss_curve[-10:].mean(0) < 0.3 * result.loss_curve[:3].mean(0))
    np.testing.assert_array_equal(result.losses, result.restart_losses.min(axis=1))
    assert np.all(result.losses < 1e-2)


@pytest.mark.slow
def test_one_shape_alone_fits_like_in_a_batch_and_sharding_over_8_devices_agrees():
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {ROOT!r})
        import jax
        jax.config.update("jax_num_cpu_devices", 8)
        import numpy as np
        from sdfjax import parallel
        from sdfjax.fit import folded as folded_lib, optimizer, sdf_fit
        from tests.test_fit import _decoder, _target_samples
        decoder, params = _decoder()
        folded = folded_lib.fold_decoder(decoder, params)
        rng = np.random.default_rng(0)
        samples = sdf_fit.ShapeSamples.from_list(
            [_target_samples(folded, rng.normal(0, .5, decoder.latent_dim), rng) for _ in range(5)])
        initial = optimizer.initial_latents("normal", 5, 2, decoder.latent_dim, None, rng)
        settings = sdf_fit.FitSettings(num_iterations=20, lr_decay_at=10, samples_per_step=256)
        one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1],
                            axis_types=(jax.sharding.AxisType.Auto,))
        a = sdf_fit.fit_latents(folded, samples, initial, settings, jax.random.key(3), mesh=one)
        b = sdf_fit.fit_latents(folded, samples, initial, settings, jax.random.key(3))  # 8 devices, padded
        assert jax.device_count() == 8
        np.testing.assert_allclose(a.latents, b.latents, atol=1e-5)
        np.testing.assert_allclose(a.losses, b.losses, rtol=1e-4)
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_initial_latents_follow_each_option():
    rng = np.random.default_rng(0)
    trained = rng.normal(2.0, 0.5, (40, 8))
    mean = optimizer.initial_latents("mean", 3, 2, 8, trained, rng)
    np.testing.assert_allclose(mean[:, 0], np.broadcast_to(trained.mean(0), (3, 8)), rtol=1e-6)
    assert not np.allclose(mean[:, 1], mean[:, 0])  # restarts after the first are perturbed
    prior = optimizer.initial_latents("prior", 2, 1, 8, trained, rng, rows=[[5], [7]])
    np.testing.assert_allclose(prior[:, 0], trained[[5, 7]], rtol=1e-6)
    by_category = optimizer.initial_latents("category_mean", 2, 2, 8, trained, rng, rows=[[0, 1, 2], [3, 9]])
    np.testing.assert_allclose(by_category[:, 0], [trained[:3].mean(0), trained[[3, 9]].mean(0)], rtol=1e-6)
    assert 0 < np.abs(by_category[:, 1] - by_category[:, 0]).max() < 0.1  # restarts nearby
    np.testing.assert_allclose(optimizer.initial_latents("3", 2, 1, 8, trained, rng)[:, 0], trained[[3, 3]], rtol=1e-6)
    normal = optimizer.initial_latents("normal", 500, 1, 8, trained, rng, init_std=0.01)
    assert abs(normal.std() - 0.01) < 1e-3 and abs(normal.mean()) < 1e-3
    random = optimizer.initial_latents("random", 2000, 1, 8, trained, rng)
    np.testing.assert_allclose(random[:, 0].mean(0), trained.mean(0), atol=0.05)
    for bad, message in (("prior", "train split"), ("category_mean", "category"), ("99", "rows 0..39"),
                         ("median", "expected normal")):
        with pytest.raises(ValueError, match=message):
            optimizer.initial_latents(bad, 1, 1, 8, trained, rng)


def test_category_rows_are_each_categorys_trained_rows_and_a_category_without_any_is_named():
    trained = ["chair", "table", "chair", "table", "sofa"]
    assert reconstruct.category_rows(trained, ["table", "chair", "table"]) == [[1, 3], [0, 2], [1, 3]]
    assert reconstruct.category_rows(["", "", ""], ["", ""]) == [[0, 1, 2], [0, 1, 2]]  # one category: every row
    with pytest.raises(ValueError, match="no trained shape of category lamp"):
        reconstruct.category_rows(trained, ["chair", "lamp"])


def _depth_view(mesh, azimuth=0.0, elevation=0.0, resolution=64, seed=0):
    camera = camera_lib.Camera(azimuth, elevation, 4.0, 128.0 * resolution / 64, resolution, resolution)
    return partial.depth_observations(mesh.vertices, mesh.faces, camera, np.random.default_rng(seed)), camera


def test_a_depth_view_of_a_sphere_observes_its_visible_cap_and_the_free_space_in_front():
    r = 0.5
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=r)
    observed, camera = _depth_view(sphere)
    xyz, lo, hi = observed[:, :3], observed[:, 3], observed[:, 4]
    on_surface = hi == 0
    assert on_surface.sum() > 500 and (~on_surface).sum() > 2 * on_surface.sum()
    # Hit points lie on the cap the camera sees: the tangent cone from distance 4 touches z = r^2 / 4.
    np.testing.assert_allclose(np.linalg.norm(xyz[on_surface], axis=1), r, atol=2e-3)
    assert xyz[on_surface, 2].min() > r**2 / 4 - 2e-3
    # Nothing behind the visible surface: every point is outside the sphere or on it.
    true_sdf = np.linalg.norm(xyz, axis=1) - r
    assert true_sdf.min() > -2e-3
    # The true SDF lies in every observation's interval; free space has lo = 0.
    assert np.all(lo == 0) and np.all(true_sdf <= hi + 2e-3)
    # Free-space bounds are tight just in front of the surface, where DeepSDF samples densely.
    near = ~on_surface & (true_sdf < 0.02)
    assert near.sum() > 200 and np.median(hi[near] - true_sdf[near]) < 0.02


def test_a_depth_view_of_a_concave_chair_never_claims_what_it_cannot_see():
    from data_gen import synthetic

    chair = synthetic.make_shape("chair", 0, 3)
    normalization = mesh_lib.compute_normalization(chair)
    chair = mesh_lib.normalize_mesh(chair, normalization)
    observed, camera = _depth_view(chair, azimuth=30.0, elevation=20.0, resolution=96)
    true_sdf = sdf_lib.SignedDistanceField.from_mesh(chair)(observed[:, :3].astype(np.float64))
    lo, hi = observed[:, 3], observed[:, 4]
    assert np.mean(true_sdf >= lo - 1e-3) > 0.999 and np.mean(true_sdf <= hi + 1e-3) > 0.999
    assert len(observed) > 5000
    # Every surface observation is the first thing its ray from the camera meets (no hidden part).
    surface = observed[observed[:, 4] == 0, :3].astype(np.float64)
    to_point = surface - camera.position
    distance = np.linalg.norm(to_point, axis=1)
    _, _, first = pcu.ray_mesh_intersection(np.asarray(chair.vertices, np.float64), np.asarray(chair.faces, np.int32),
                                            np.broadcast_to(camera.position, surface.shape).copy(),
                                            to_point / distance[:, None])
    assert len(surface) > 1000 and np.mean(np.abs(first - distance) < 1e-3) > 0.999


@pytest.mark.slow
def test_completion_from_one_depth_view_recovers_a_shape_of_the_decoder():
    """Fit to one depth view of the decoder's own shape: the whole field (hidden side too) gets closer."""
    decoder, params = _decoder()
    folded = folded_lib.fold_decoder(decoder, params)
    rng = np.random.default_rng(3)
    z_true = rng.normal(0, 0.5, decoder.latent_dim).astype(np.float32)
    true_fn = meshing.decoder_sdf_fn(folded, z_true, 65536)
    mesh = isosurface.marching_cubes(isosurface.sdf_grid_dense(true_fn, 48))
    observed, _ = _depth_view(mesh, azimuth=30.0, elevation=20.0, seed=3)
    settings = sdf_fit.FitSettings(num_iterations=150, lr_decay_at=120, lr=2e-2, samples_per_step=512,
                                   code_reg_weight=0.0)
    initial = optimizer.initial_latents("normal", 1, 2, decoder.latent_dim, None, rng)
    result = sdf_fit.fit_latents(folded, sdf_fit.ShapeSamples.from_list([observed]), initial, settings,
                                 jax.random.key(0))
    points = rng.uniform(-1, 1, (40_000, 3)).astype(np.float32)
    points = points[np.linalg.norm(points, axis=1) < 1]  # the region the camera's rays cross
    truth = np.clip(true_fn(points), -0.1, 0.1)
    error = lambda z: np.mean(np.abs(np.clip(meshing.decoder_sdf_fn(folded, z, 65536)(points), -0.1, 0.1) - truth))
    assert error(result.latents[0]) < 0.5 * error(initial[0, 0])
    signs = np.mean((meshing.decoder_sdf_fn(folded, result.latents[0], 65536)(points) > 0) == (truth > 0))
    assert signs > 0.95


def test_interval_loss_is_the_clamped_l1_for_exact_samples_and_one_sided_for_free_space():
    pred = jnp.array([0.3, -0.05, 0.02, 0.0, 0.04])
    exact = jnp.array([0.2, 0.05, -0.3, 0.01, 0.04])
    np.testing.assert_allclose(losses.sdf_interval_loss(pred, exact, exact, 0.1), losses.sdf_loss(pred, exact, 0.1),
                               rtol=1e-6)
    lo, hi = jnp.zeros(5), jnp.array([0.5, 0.5, 0.01, 0.5, 0.03])
    # outside: 0; -0.05 below 0; 0.02 above 0.01; inside; 0.04 above 0.03
    np.testing.assert_allclose(losses.sdf_interval_loss(pred, lo, hi, 0.1), np.mean([0, 0.05, 0.01, 0, 0.01]),
                               rtol=1e-5)


def test_interpolation_endpoints_and_slerp_keeps_norms():
    a, b = np.array([1.0, 0, 0]), np.array([0, 2.0, 0])
    lin = traverse.interpolate(a, b, 5)
    np.testing.assert_allclose(lin[0], a)
    np.testing.assert_allclose(lin[-1], b)
    np.testing.assert_allclose(lin[2], (a + b) / 2)
    s = traverse.interpolate(a, np.array([0, 1.0, 0]), 5, "slerp")
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(s[2], [np.sqrt(0.5), np.sqrt(0.5), 0], atol=1e-6)
    with pytest.raises(ValueError, match="interpolation"):
        traverse.interpolate(a, b, 5, "cubic")


@pytest.fixture(scope="module")
def trained_smoke(tmp_path_factory):
    """A smoke decoder trained on 2 procedural chairs, with 1 val and 1 test chair."""
    return train_smoke_decoder(tmp_path_factory.mktemp("fit"))


@pytest.mark.slow
def test_fit_split_writes_metrics_meshes_and_latents(trained_smoke, tmp_path):
    config, workdir = trained_smoke
    config = config.copy_and_resolve_references()
    config.fit.restarts = 2
    summary = reconstruct.fit_split(config, workdir, progress=False, out_dir=str(tmp_path / "out"))
    with open(tmp_path / "out" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["obj_id"] for r in rows] == ["chair_000_0002", "mean_metric"]
    assert list(rows[0]) == list(tables.CSV_COLUMNS)
    for name in ("chamfer", "emd", "fscore@0.01", "normal_consistency"):
        assert np.isfinite(float(rows[0][name])) and rows[0][name] == rows[1][name]
    assert os.path.isfile(tmp_path / "out" / "meshes" / "chair_000_0002.obj")
    assert os.path.isfile(tmp_path / "out" / "fit_loss.png")
    saved = np.load(tmp_path / "out" / "latents.npz")
    assert saved["latents"].shape == (1, config.model.latent_dim) and saved["restart_losses"].shape == (1, 2)
    assert summary["mean"]["chamfer"] == pytest.approx(float(rows[1]["chamfer"]), rel=1e-5)


@pytest.mark.slow
def test_partial_fit_and_prior_init_on_train_shapes(trained_smoke, tmp_path):
    config, workdir = trained_smoke
    config = config.copy_and_resolve_references()
    config.fit.split, config.fit.init, config.fit.partial = "train", "prior", True
    config.fit.save_mesh = False
    summary = reconstruct.fit_split(config, workdir, progress=False, out_dir=str(tmp_path / "out"))
    assert [r["obj_id"] for r in summary["rows"]] == ["chair_000_0000", "chair_000_0001"]
    assert not os.path.exists(tmp_path / "out" / "meshes")


@pytest.mark.slow
@pytest.mark.parametrize("field,value,message", [
    ("fit.obj_ids", "chair_000_0000", "not in the preprocessed val split"),
    ("fit.split", "holdout", "expected one of"),
    ("fit.init", "prior", "has none"),
    ("model.hidden_dim", 64, "does not match config.model"),
])
def test_bad_input_is_refused_before_fitting(trained_smoke, tmp_path, field, value, message):
    config, workdir = trained_smoke
    config = config.copy_and_resolve_references()
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=message):
        reconstruct.fit_split(config, workdir, progress=False, out_dir=str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_no_checkpoint_and_missing_split_are_clear(trained_smoke, tmp_path):
    config, workdir = trained_smoke
    with pytest.raises(ValueError, match="no checkpoint"):
        reconstruct.fit_split(config, str(tmp_path / "empty"), progress=False)
    empty = config.copy_and_resolve_references()
    empty.data.root = str(tmp_path / "nothing")
    with pytest.raises(errors.DataError, match="no TFDS dataset"):
        tfds_builder.split_index(empty, "val")


@pytest.mark.slow
def test_fit_launcher_and_traverse_launcher(trained_smoke, tmp_path):
    config, workdir = trained_smoke
    overrides = [f"--config={ROOT}/configs/chair16.py:smoke", f"--config.data.root={config.data.root}",
                 f"--workdir={workdir}", f"--config.train.num_epochs={config.train.num_epochs}"]
    out = subprocess.run([sys.executable, "-m", "sdfjax.launch.fit", *overrides, "--config.fit.split=test"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "chair_000_0003" in out.stdout and "mean_metric" in out.stdout
    out = subprocess.run([sys.executable, "-m", "sdfjax.launch.fit", *overrides, "--config.fit.obj_ids=nope"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode != 0 and out.stderr.strip().splitlines()[-1].startswith("error: config.fit.obj_ids: nope")
    out = subprocess.run([sys.executable, "-m", "sdfjax.launch.traverse", *overrides,
                          "--config.traverse.start=chair_000_0000", "--config.traverse.end=1",
                          "--config.traverse.interpolation=slerp"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = os.listdir(os.path.join(workdir, "traverse"))
    files = sorted(os.listdir(os.path.join(workdir, "traverse", runs[0])))
    assert files == ["latents.npz", "step=000.obj", "step=001.obj", "step=002.obj"]


@pytest.mark.slow
def test_fitting_to_normal_maps_writes_latents_pictures_and_metrics(trained_smoke, tmp_path):
    # That the step lowers its loss is test_normal_map_fitting_step_recovers_a_sphere's job: on this
    # 20-epoch smoke decoder the loss rises (the rendered shape inflates; see the sketch issue).
    config, workdir = trained_smoke
    config = config.copy_and_resolve_references()
    config.fit.init, config.fit.normal_iterations = "mean", 3
    summary = normals.fit_normals_split(config, workdir, progress=False, out_dir=str(tmp_path / "out"))
    assert summary["losses"].shape == (3, 1) and np.all(np.isfinite(summary["losses"]))
    saved = np.load(tmp_path / "out" / "latents.npz")
    assert saved["latents"].shape == (1, config.model.latent_dim) and saved["loss_curve"].shape == (3, 1)
    assert os.path.isfile(tmp_path / "out" / "pictures" / "chair_000_0002.png")
    assert os.path.isfile(tmp_path / "out" / "metrics.csv")
    config.fit.normal_views = (0, 7)
    with pytest.raises(ValueError, match="normal_views"):
        normals.fit_normals_split(config, workdir, progress=False)


@pytest.mark.slow
def test_normal_map_fitting_step_recovers_a_sphere():
    """The batched step on an analytic SDF: z = (centre, radius offset) of a sphere."""
    def sdf(p, x):
        return jnp.linalg.norm(x - p["z"][:3], axis=-1) - 0.4 - p["z"][3]

    cameras = [camera_lib.Camera(a, 20.0, 4.0, 64.0, 32, 32) for a in (0.0, 90.0)]
    origins, directions = (a.reshape(-1, 3) for a in camera_lib.stack_rays(cameras))
    settings = tracer.TraceSettings()
    truth = {"decoder": {}, "z": jnp.array([0.1, -0.05, 0.0, 0.1])}
    out = tracer.render(sdf, truth, origins, directions, settings)
    gt_n, gt_mask = out["normals"][None], out["hit"][None]
    fit_config = ml_collections.ConfigDict({"normal_lr": 1e-2, "silhouette_weight": 1.0, "code_reg_weight": 0.0})
    optimizer, step = normals.make_step(sdf, settings, fit_config)
    z = jnp.zeros((1, 4))
    opt = jax.vmap(optimizer.init)(z)
    losses = []
    for _ in range(60):
        z, opt, loss = step({}, z, opt, origins, directions, gt_n, gt_mask)
        losses.append(float(loss[0]))
    assert losses[-1] < 0.2 * losses[0]
    np.testing.assert_allclose(z[0], truth["z"], atol=0.02)


def test_gt_normals_decode_the_png_convention():
    image = np.full((1, 2, 2, 3), 255, np.uint8)
    image[0, 0, 0] = [128, 128, 255]  # (0, 0, 1)
    n, mask = normals.gt_normals(image)
    assert mask.tolist() == [[True, False, False, False]]
    np.testing.assert_allclose(n[0, 0], [0, 0, 1], atol=0.01)



@pytest.mark.slow
def test_pictures_trace_every_latent_and_ray_count_with_one_program_and_match_a_single_trace(trained_smoke,
                                                                                               monkeypatch):
    from sdfjax.render import latent_render

    config, workdir = trained_smoke
    trained = trained_lib.load_trained(config, workdir)
    settings = tracer.TraceSettings.from_config(config.render)
    sdf_fn = latent_render.decoder_sdf(trained.decoder)
    traces = []
    render_rays = tracer.render
    monkeypatch.setattr(tracer, "render", lambda *a, **k: traces.append(1) or render_rays(*a, **k))
    render = latent_render.views_renderer(sdf_fn, settings, chunk=1500)
    cameras = [camera_lib.Camera(a, 10.0, 4.0, 32.0, 32, 32) for a in (0.0, 90.0)]
    latents = [trained.latents[0], trained.latents[1], trained.latents.mean(axis=0)]
    grid = latent_render.latents_picture(trained.decoder, trained.params, latents, cameras, settings)
    assert grid.shape == (3 * 32 + 2 * 2, 2 * 32 + 2, 3)
    assert np.abs(grid[:32].astype(int) - grid[34:66]).max() > 0  # another latent, another picture
    params = {"decoder": trained.params, "z": jnp.asarray(latents[1])}
    big = camera_lib.Camera(30.0, 20.0, 4.0, 64.0, 48, 48)
    traces.clear()
    for views in ([big], cameras, [big, big.scaled(48)]):  # 2,304, 2,048 and 4,608 rays: 2, 2 and 4 chunks
        origins, directions = camera_lib.stack_rays(views)
        chunked = render(params, origins, directions)
        alone = jax.device_get(jax.jit(jax.vmap(lambda o, d: render_rays(sdf_fn, params, o, d, settings)))(
            origins, directions))  # every view's rays in one trace, no padding
        np.testing.assert_array_equal(chunked["hit"], alone["hit"])
        # Another batch size can round the decoder's products differently: a grazing ray may then stop
        # elsewhere in its hit band (|sdf| < 2e-4 where the SDF changes slowly along the ray).
        np.testing.assert_allclose(chunked["depth"], alone["depth"], atol=2e-3)
        assert np.mean(np.abs(chunked["depth"] - alone["depth"]) < 1e-5) > 0.99
        np.testing.assert_allclose(chunked["normals"], alone["normals"], atol=2e-2)
        assert chunked["hit"].any() and chunked["normals"].shape == origins.shape
    assert len(traces) == 1  # three ray counts, one program (the single traces above call the original)
    # marching only (the framing's silhouettes): the same hits, without normals
    marched = latent_render.views_renderer(sdf_fn, settings, chunk=1500, marching_only=True)(params, origins,
                                                                                              directions)
    np.testing.assert_array_equal(marched["hit"], chunked["hit"])
    assert "normals" not in marched and len(traces) == 1
    row = pictures.to_uint8(latent_render.render_normal_maps(render, params, cameras)[1])
    assert np.abs(grid[34:66, 34:66].astype(int) - row).max() <= 1  # latent 1 from 90 degrees


@pytest.mark.slow
@pytest.mark.parametrize("num_points,points_per_chunk", [(1000, 300), (1001, 300), (512, 0), (64, 512)])
def test_chunked_fitting_loss_and_gradient_equal_one_pass(num_points, points_per_chunk):
    decoder, params = _decoder()
    folded = folded_lib.fold_decoder(decoder, params)
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.uniform(-1, 1, (num_points, 3)), rng.normal(0, 0.05, (num_points, 1))], axis=1)
    points = jnp.asarray(np.concatenate([points, points[:, 3:]], axis=1), jnp.float32)
    points = points.at[: num_points // 3, 4].add(0.2)  # some intervals, not only exact samples
    z = jnp.asarray(rng.normal(0, 0.3, decoder.latent_dim), jnp.float32)
    settings = sdf_fit.FitSettings(points_per_chunk=points_per_chunk)

    def one_pass(z):
        pred = folded_lib.folded_sdf(folded, folded_lib.latent_biases(folded, z[None]), points[None, :, :3])[0]
        return losses.sdf_interval_loss(pred, points[:, 3], points[:, 4], settings.clamp_distance)

    value, grad = jax.value_and_grad(lambda z: sdf_fit.chunked_data_loss(folded, z, points, settings))(z)
    want_value, want_grad = jax.value_and_grad(one_pass)(z)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    np.testing.assert_allclose(sdf_fit.chunked_data_loss(folded, z, points, settings), want_value, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-7)
    assert float(jnp.abs(want_grad).max()) > 1e-4  # the gradient compared is not zero


def test_chunk_layouts_cover_the_points_with_little_padding():
    assert chunking.padded_layout(8000, 512) == (16, 500)
    assert chunking.padded_layout(2048, 512) == (4, 512)
    assert chunking.padded_layout(1000, 300) == (4, 250)
    assert chunking.padded_layout(1001, 300) == (4, 251)  # 3 padding rows, weighted 0
    assert chunking.padded_layout(300, 0) == (1, 300)
    assert chunking.padded_layout(300, 512) == (1, 300)
    assert chunking.divisor_layout(16, 1024, 1024) == 16
    assert chunking.divisor_layout(64, 16384, 1024) == 1024
    assert chunking.divisor_layout(8, 2048, 1024) == 16
    assert chunking.divisor_layout(16, 1000, 1024) == 20  # 16 x 50 = 800 points per chunk
    assert chunking.divisor_layout(1, 1021, 512) == 1  # prime: only 1-point chunks would divide it
    assert chunking.divisor_layout(16, 1024, 0) == 1 and chunking.divisor_layout(2, 256, 1024) == 1
    assert chunking.resolve(chunking.AUTO, "fit") == (512 if jax.default_backend() == "cpu" else 0)
    assert chunking.resolve(chunking.AUTO, "train", platform="cpu") == 1024
    assert chunking.resolve(chunking.AUTO, "train", platform="tpu") == 0
    assert chunking.resolve(chunking.AUTO, "fit", platform="cuda") == 0
    assert chunking.resolve(0, "fit") == 0 and chunking.resolve(300, "fit") == 300
    with pytest.raises(ValueError, match="points_per_chunk=-2"):
        sdf_fit.FitSettings(points_per_chunk=-2)
