"""Sketch to shape: the sketch-to-latent encoder, refinement from sketches, split and user sketches end to end."""

import csv
import functools
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from PIL import Image

from data_gen import user_sketches
from sdfjax import errors
from sdfjax.config_files import load as load_config_file
from sdfjax import trained as trained_lib
from sdfjax.data import tfds_builder
from sdfjax.data.batching import images_and_views
from sdfjax.fit import reconstruct
from sdfjax.fit.folded import fold_decoder
from sdfjax.models import latent_encoder
from sdfjax.render import camera as camera_lib
from sdfjax.render import edges, latent_render, tracer
from sdfjax.sketch2shape import encoders, losses, optimize, sketches
from sdfjax.evaluators import latent_encoder as encoder_evaluation
from sdfjax.train import latent_encoder as encoder_train
from sdfjax.train import logs
from sdfjax.train import siamese

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMERA = camera_lib.Camera(30.0, 20.0, 4.0, 64.0, 32, 32)


# --- the silhouette term on an analytic sphere ------------------------------------------------------


# --- the sketch-to-latent encoder -------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_models(trained_pair):
    """The smoke DeepSDF + Siamese run with a sketch-to-latent encoder trained on view 0 only (view 1 held out)."""
    config, workdir, _ = trained_pair
    config = config.copy_and_resolve_references()
    config.encoder.holdout_views = (1,)
    config.encoder.num_steps = 40
    config.encoder.steps_per_log = 10
    config.encoder.checkpoint_every_steps = 20
    summary = encoder_train.train_encoder(config, workdir, progress=False)
    return config, workdir, summary


@pytest.mark.slow
def test_encoder_training_lowers_latent_error_on_held_out_views(trained_models, tmp_path):
    config, workdir, summary = trained_models
    assert summary["holdout_views"] == [1]
    assert summary["holdout_latent_mse"] < 0.3 * summary["initial_holdout_latent_mse"], summary
    records = logs.read_metrics(trained_lib.encoder_dir(workdir))
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert records[-1]["latent_mse"] < records[0]["latent_mse"] and records[-1]["sdf_l1"] > 0
    assert os.path.isfile(os.path.join(trained_lib.encoder_dir(workdir), "loss.png"))
    model, params, meta = trained_lib.load_encoder(workdir)
    assert meta["latent_dim"] == config.model.latent_dim
    # the val split's shape error, written beside the checkpoints (the smoke set has val shapes)
    saved = json.loads(open(trained_lib.encoder_val_scores_path(workdir)).read())
    assert saved["step"] == 40 and saved["val_shapes"] > 0 and len(saved["val_views"]) == min(
        config.encoder.eval_views, 2)
    assert 0 < summary["val_score_x1000"] == saved["val_score_x1000"]
    assert saved["val_near_x1000"] > 0 and saved["val_far_x1000"] >= 0 and saved["val_mean_latent_score_x1000"] > 0
    # Resumed after an interruption: the same parameters as the run that went through.
    other = str(tmp_path / "resumed")
    os.makedirs(other)
    os.symlink(os.path.join(workdir, "checkpoints"), os.path.join(other, "checkpoints"))
    encoder_train.train_encoder(config, other, progress=False, stop_after_steps=20)
    resumed = encoder_train.train_encoder(config, other, progress=False)
    assert resumed["step"] == 40
    _, again, _ = trained_lib.load_encoder(other)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    changed = config.copy_and_resolve_references()
    changed.encoder.width = 8
    with pytest.raises(ValueError, match="width saved 4 vs config 8"):
        encoder_train.train_encoder(changed, other, progress=False)
    changed = config.copy_and_resolve_references()
    changed.encoder.holdout_views = (0, 1)
    with pytest.raises(ValueError, match="holds out every view"):
        encoder_train.train_encoder(changed, other, progress=False)
    with pytest.raises(ValueError, match="no sketch-to-latent encoder checkpoint"):
        trained_lib.load_encoder(str(tmp_path / "empty"))


@pytest.mark.slow
def test_shape_errors_equal_the_fitting_loss_written_out(trained_models):
    config, workdir, _ = trained_models
    deepsdf = trained_lib.load_trained(config, workdir)
    model, params, _ = trained_lib.load_encoder(workdir)
    source = tfds_builder.data_source(config, "train")
    rows = encoder_train.latent_rows(config, deepsdf)
    clamp, points = config.train.clamp_distance, 256
    own = deepsdf.latents[rows[0]]
    settings = config.copy_and_resolve_references()
    settings.encoder.eval_points, settings.seed = points, 5
    encoded, at_own = encoder_evaluation.shape_errors_on_split(model, params, deepsdf, source, np.asarray([1, 0]), settings,
                                                          baseline=own)
    # written out: the same samples (the seeded generator's draws: near, then far), one decoder call per region,
    # DeepSDF's clamp; the far error is zero wherever the prediction is also farther than the clamp distance
    samples = np.asarray(source[0]["sdf_samples"], np.float32)
    rng = np.random.default_rng([5, 9])
    for region, pool in enumerate((samples[np.abs(samples[:, 3]) < clamp], samples[np.abs(samples[:, 3]) >= clamp])):
        picked = pool[rng.choice(len(pool), points // 2, replace=len(pool) < points // 2)]
        sdf = np.asarray(deepsdf.decoder.apply(deepsdf.params, np.tile(own, (len(picked), 1)), picked[:, :3]))
        expected = np.mean(np.abs(np.clip(sdf.reshape(-1), -clamp, clamp) - np.clip(picked[:, 3], -clamp, clamp)))
        np.testing.assert_allclose(at_own[0, region], expected, rtol=1e-4, atol=1e-7)
    assert at_own[0, 0] > 0
    # the encoder's path: view v's sketch of record 0 scored at the latent the encoder gives that sketch
    sketches, _, views = images_and_views(source[0])
    z_1 = encoders.latent_predictor(model, params)(sketches[1:2], views[1:2, :2])[0]
    _, at_z_1 = encoder_evaluation.shape_errors_on_split(model, params, deepsdf, source, np.asarray([1]), settings,
                                                    baseline=z_1)
    np.testing.assert_allclose(encoded[0, 0], at_z_1[0], rtol=1e-4)
    assert encoded.shape == (len(source), 2, 2) and not np.allclose(encoded[0], encoded[1])


def test_view_planes_are_the_sines_and_cosines_of_each_sketchs_angles():
    planes = np.asarray(latent_encoder.view_planes(np.asarray([[90.0, -30.0], [180.0, 0.0]]), 3, 5))
    assert planes.shape == (2, 3, 5, latent_encoder.VIEW_CHANNELS)
    np.testing.assert_allclose(planes[0, 2, 4], [1.0, -0.5, 0.0, np.sqrt(3) / 2], atol=1e-6)
    np.testing.assert_allclose(planes[1, 0, 0], [0.0, 0.0, -1.0, 1.0], atol=1e-6)
    assert np.all(planes == planes[:, :1, :1])  # constant over the image


@pytest.mark.slow
def test_an_encoder_that_reads_views_trains_and_answers_each_view_differently(trained_models, tmp_path):
    config, workdir, _ = trained_models
    config = config.copy_and_resolve_references()
    config.encoder.view_input = True
    config.encoder.holdout_views = ()
    config.encoder.num_steps = 12
    other = str(tmp_path / "views")
    os.makedirs(other)
    os.symlink(os.path.join(workdir, "checkpoints"), os.path.join(other, "checkpoints"))
    summary = encoder_train.train_encoder(config, other, progress=False)
    assert summary["step"] == 12 and np.isfinite(summary["loss"]) and summary["val_score_x1000"] > 0
    model, params, meta = trained_lib.load_encoder(other)
    assert latent_encoder.takes_views(params) and meta["encoder"]["view_input"]
    source = tfds_builder.data_source(config, "train")
    drawn, _, views = images_and_views(source[0])
    predict = encoders.latent_predictor(model, params)
    one_sketch = np.repeat(drawn[:1], 2, axis=0)
    at_views = predict(one_sketch, views[:2, :2])
    assert not np.allclose(at_views[0], at_views[1]), "the same sketch at two views gave one latent"
    np.testing.assert_allclose(predict(one_sketch[:1], views[:1, :2])[0], at_views[0], atol=1e-5)
    with pytest.raises(ValueError, match="pass view_angles"):
        latent_encoder.encode(model, params, drawn[:1])
    # a sketch-only encoder ignores the angles it is given
    plain_model, plain, _ = trained_lib.load_encoder(workdir)
    assert not latent_encoder.takes_views(plain)
    plain_at_views = encoders.latent_predictor(plain_model, plain)(one_sketch, views[:2, :2])
    np.testing.assert_allclose(plain_at_views[0], plain_at_views[1], atol=1e-6)
    # config.sketch.encoder_line_growth: the encoder reads the sketch with its lines grown, nothing else changes
    grown_predict = encoders.latent_predictor(model, params, line_growth=1)
    np.testing.assert_allclose(grown_predict(one_sketch, views[:2, :2]),
                               predict(sketches.grown_lines(one_sketch, 1), views[:2, :2]), atol=1e-6)
    assert not np.allclose(grown_predict(one_sketch[:1], views[:1, :2]), at_views[:1], atol=1e-4)
    # resuming with the other kind is refused, naming the field; an encoder saved before the field existed
    # read sketches only
    config.encoder.view_input = False
    with pytest.raises(ValueError, match="view_input saved True vs config False"):
        encoder_train.train_encoder(config, other, progress=False)
    legacy = {k: v for k, v in trained_lib.load_encoder(workdir)[2]["encoder"].items() if k != "view_input"}
    config.encoder.view_input = True
    with pytest.raises(ValueError, match="view_input saved False vs config True"):
        trained_lib.check_encoder_matches({"encoder": legacy, "latent_dim": config.model.latent_dim}, config.encoder,
                                          config.model.latent_dim)


@pytest.mark.slow
def test_encoder_sdf_term_is_the_clamped_l1_to_each_sketchs_own_latent(trained_models):
    config, workdir, _ = trained_models
    deepsdf = trained_lib.load_trained(config, workdir)
    model, params, _ = trained_lib.load_encoder(workdir)
    source = tfds_builder.data_source(config, "train")
    rows = encoder_train.latent_rows(config, deepsdf)
    clamp = config.train.clamp_distance
    # Two sketches whose targets are in the opposite order of the records, so a gather by position would differ.
    drawn = np.stack([images_and_views(source[i])[0][0] for i in (0, 1)])
    angles = np.stack([images_and_views(source[i])[2][0, :2] for i in (0, 1)])
    targets = deepsdf.latents[np.asarray([rows[1], rows[0]])]
    points = np.random.default_rng(0).uniform(-1.0, 1.0, (2, 5, 3)).astype(np.float32)
    folded = fold_decoder(deepsdf.decoder, deepsdf.params)
    clamped = functools.partial(encoder_train.clamped_sdf, folded, clamp_distance=clamp,
                                fourier_frequencies=deepsdf.decoder.fourier_frequencies)
    batch = {"sketches": jnp.asarray(drawn, jnp.float32) / 255.0, "targets": targets, "points": points,
             "view_angles": angles if config.encoder.view_input else None, "target_sdf": clamped(targets, points)}
    loss, parts = encoder_train.encoder_loss(model, params, batch, clamped, 2.0)
    # written out with the decoder module itself
    predicted = encoders.latent_predictor(model, params)(drawn, angles)
    decode = lambda z: np.clip(np.asarray(deepsdf.decoder.apply(deepsdf.params, z[:, None], points)).reshape(2, 5),  # noqa: E731
                               -clamp, clamp)
    expected_sdf = np.mean(np.abs(decode(predicted) - decode(targets)))
    expected_mse = np.mean((predicted - targets) ** 2)
    np.testing.assert_allclose(float(parts["sdf_l1"]), expected_sdf, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(float(parts["latent_mse"]), expected_mse, rtol=1e-4)
    np.testing.assert_allclose(float(loss), expected_mse + 2.0 * expected_sdf, rtol=1e-3)
    assert float(parts["sdf_l1"]) > 0


# --- refinement -------------------------------------------------------------------------------------

def _jitted_tracer(sdf_fn):
    """trace(params, origins, directions) -> `tracer.render`'s outputs, compiled once per ray count."""
    return jax.jit(lambda p, o, d: tracer.render(sdf_fn, p, o, d))


def _decoder_sketch(trace, decoder_params, z, camera):
    """The sketch the dataset pipeline would draw of the decoder's shape z from `camera` (`trace`: a
    `_jitted_tracer` of the decoder)."""
    o, d = (jnp.asarray(a) for a in camera.rays())
    out = trace({"decoder": decoder_params, "z": jnp.asarray(z)}, o, d)
    h, w = camera.height, camera.width
    normals = (np.asarray(tracer.normal_image(out["normals"], out["hit"], h, w)) * 255).astype(np.uint8)
    return edges.sketch_from_render(normals, np.asarray(out["depth"]).reshape(h, w),
                                    np.asarray(out["hit"]).reshape(h, w))


def _refinement_case(trained_models, elevation: float, azimuths: tuple[float, float]):
    """(config, trained run, Siamese model and params, decoder SDF, its tracer, the first training latent, two
    32 px cameras and the sketches of that latent from them) for the refinement tests."""
    config, workdir, _ = trained_models
    trained = trained_lib.load_trained(config, workdir)
    model, enc_params, _ = trained_lib.load_siamese(workdir)
    sdf_fn = latent_render.decoder_sdf(trained.decoder)
    truth = trained.latents[0]
    cameras = [camera_lib.Camera(a, elevation, 4.0, 64.0, 32, 32) for a in azimuths]
    trace = _jitted_tracer(sdf_fn)
    drawn = np.stack([_decoder_sketch(trace, trained.params, truth, c) for c in cameras])
    return config, trained, model, enc_params, sdf_fn, trace, truth, cameras, drawn


@pytest.mark.slow
def test_refinement_from_two_views_moves_a_perturbed_latent_toward_the_truth(trained_models):
    config, trained, model, enc_params, sdf_fn, trace, truth, cameras, drawn = _refinement_case(
        trained_models, 10.0, (30.0, 120.0))
    sk = config.sketch.copy_and_resolve_references()
    sk.lr, sk.embedding_weight, sk.prior_weight = 0.02, 0.0, 0.0
    settings = losses.RefineSettings.from_config(sk, tracer.TraceSettings(), 32)
    optimizer, step = optimize.make_step(sdf_fn, encoders.normal_map_encoder(model, enc_params), settings, sk.lr)
    start = truth + 0.5 * np.random.default_rng(1).normal(size=truth.shape).astype(np.float32)
    targets = encoders.embedder(model, enc_params, "sketch")(drawn)
    views = {k: jnp.asarray(a) for k, a in optimize.object_views(drawn[None], [cameras], targets[None], sk).items()}
    prior = {k: jnp.asarray(a) for k, a in losses.gaussian_prior(trained.latents).items()}
    best, curve = optimize.optimize_batch((optimizer, step), trained.params, prior, start[None], views, 40)

    def hits(z):
        return [np.asarray(trace({"decoder": trained.params, "z": jnp.asarray(z)}, *c.rays())["hit"])
                for c in cameras]

    want = hits(truth)

    def silhouette_iou(z):
        got = hits(z)
        return np.sum(np.logical_and(got, want)) / np.sum(np.logical_or(got, want))

    points = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (4096, 3)), jnp.float32)

    def sdf_error(z):  # clamped L1 in SDF space: two latents far apart can be one shape
        def f(z):
            return jnp.clip(sdf_fn({"decoder": trained.params, "z": jnp.asarray(z)}, points), -0.1, 0.1)
        return float(jnp.mean(jnp.abs(f(z) - f(truth))))

    assert curve.shape == (41, 1) and curve[:, 0].min() < 0.7 * curve[0, 0], curve[:, 0]
    assert sdf_error(best[0]) < 0.75 * sdf_error(start), (sdf_error(best[0]), sdf_error(start))
    assert silhouette_iou(best[0]) > silhouette_iou(start) + 0.1, (silhouette_iou(best[0]), silhouette_iou(start))


@pytest.mark.slow
def test_refinement_keeps_a_latent_whose_renders_already_match_a_drawing_with_gaps(trained_models):
    _, trained, model, enc_params, sdf_fn, _, truth, cameras, drawn = _refinement_case(
        trained_models, 25.0, (40.0, 320.0))
    rng = np.random.default_rng(0)
    for sketch in drawn:  # a hand's gaps: a few pieces of line left out
        rows, cols = np.nonzero(sketch < 128)
        for k in rng.choice(len(rows), 4, replace=False):
            sketch[max(rows[k] - 1, 0):rows[k] + 2, max(cols[k] - 1, 0):cols[k] + 2] = 255
    sk = load_config_file("chairs256:cpu").sketch  # the shipped model's refinement settings, with a 10% gate
    margin = 0.1
    settings = losses.RefineSettings.from_config(sk, tracer.TraceSettings(), 32)
    optimizer, step = optimize.make_step(sdf_fn, encoders.normal_map_encoder(model, enc_params), settings, sk.lr)
    targets = encoders.embedder(model, enc_params, "sketch")(drawn)
    views = {k: jnp.asarray(a) for k, a in optimize.object_views(drawn[None], [cameras], targets[None], sk).items()}
    prior = {k: jnp.asarray(a) for k, a in losses.gaussian_prior(trained.latents).items()}
    best, curve = optimize.optimize_batch((optimizer, step), trained.params, prior, truth[None], views, 10,
                                          min_improvement=margin)
    np.testing.assert_array_equal(best[0], truth, err_msg=str(curve[:, 0]))  # the gaps are no evidence to move
    assert curve[:, 0].min() < curve[0, 0]  # though the loss alone would have moved it a little
    ungated, _ = optimize.optimize_batch((optimizer, step), trained.params, prior, truth[None], views, 10)
    assert not np.array_equal(ungated[0], truth)
    far = truth + 0.5 * np.random.default_rng(1).normal(size=truth.shape).astype(np.float32)
    _, far_curve = optimize.optimize_batch((optimizer, step), trained.params, prior, far[None], views, 10)
    # a start that does not match the drawing has more to gain
    assert far_curve[0, 0] - far_curve[:, 0].min() > curve[0, 0] - curve[:, 0].min()


# --- whole runs and user files ----------------------------------------------------------------------

def _drawing(h, w):
    image = np.ones((h, w), np.float32)
    image[h // 4:h // 4 + 3, w // 5:4 * w // 5] = 0.0  # a seat
    image[h // 4:3 * h // 4, w // 5:w // 5 + 3] = 0.0  # a leg
    image[h // 4:3 * h // 4, 4 * w // 5 - 3:4 * w // 5] = 0.0
    image[h // 10:h // 4, 4 * w // 5 - 3:4 * w // 5] = 0.0  # a back
    return image


@pytest.mark.slow
def test_split_sketches_of_one_shape_from_several_views_make_one_object(trained_models):
    config, _, _ = trained_models
    config = config.copy_and_resolve_references()
    config.sketch.views = (0, 1)
    config.sketch.style = "hand_drawn"
    resolution = config.render.resolution
    apart, records = optimize.split_batch(config, resolution)
    config.sketch.views_together = True
    together, together_records = optimize.split_batch(config, resolution)
    assert apart.names == ["chair_000_0002_v00", "chair_000_0002_v01"] and apart.sketches.shape[1] == 1
    assert together.names == ["chair_000_0002_v00+01"] and together.obj_ids == ["chair_000_0002"]
    assert together.sketches.shape == (1, 2, resolution, resolution) and len(together.cameras[0]) == 2
    # The same (hand-drawn) strokes and cameras as the one-view objects, in view order.
    np.testing.assert_array_equal(together.sketches[0], apart.sketches[:, 0])
    assert together.cameras[0] == [c[0] for c in apart.cameras] and together.cameras[0][0] != together.cameras[0][1]
    assert len(together_records) == 1 and len(records) == 2


def _meshes(out_dir) -> list[str]:
    folder = out_dir / "meshes"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


@pytest.mark.slow
def test_sketch_to_shape_on_split_and_user_sketches_with_launchers(trained_models, tmp_path):
    config, workdir, _ = trained_models
    config = config.copy_and_resolve_references()
    summary = optimize.sketch_to_shape(config, workdir, progress=False, out_dir=str(tmp_path / "split"))
    with open(tmp_path / "split" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    name = "chair_000_0002_v00"
    assert [(r["obj_id"], r["method"]) for r in rows] == [
        (name, "sketch2shape"), (name, "encoder"), (name, "retrieval"), (name, "sdf_fit"),
        ("mean_metric", "sketch2shape"), ("mean_metric", "encoder"), ("mean_metric", "retrieval"),
        ("mean_metric", "sdf_fit")]
    assert rows[2]["retrieved"] in ("chair_000_0000", "chair_000_0001")
    assert np.isfinite(float(rows[2]["chamfer"])) and np.isfinite(float(rows[3]["chamfer"]))
    # The best iterate is chosen by the loss alone, the start included: never worse than the start.
    assert float(rows[0]["fit_loss"]) <= float(rows[0]["start_loss"])
    # A mesh is written exactly when the refined shape has a surface: the 20-epoch smoke decoder's refined
    # latent may have none (its row then has NaN metrics and a warning), depending on the CPU's arithmetic.
    assert _meshes(tmp_path / "split") == ([f"{name}.obj"] if np.isfinite(float(rows[0]["chamfer"])) else [])
    assert summary["losses"].shape == (config.sketch.iterations + 1, 1)
    np.testing.assert_allclose(np.load(tmp_path / "split" / "latents.npz")["start_encoder"], summary["initial"])
    picture = np.asarray(Image.open(tmp_path / "split" / "pictures" / f"{name}.png"))
    size = config.render.preview_resolution
    assert picture.shape[:2] == (2 * size + 2, 5 * size + 4 * 2)  # sketch | retrieval | encoder | refined | truth
    # User-style PNGs of a dataset shape, drawn outside the dataset pipeline, scored against that shape; their
    # SDF-fit rows read from the split run's metrics.csv instead of fitting again.
    config.sketch.sdf_fit_dir = str(tmp_path / "split" / "sdf_fit")
    config.sketch.iterations = 1
    mesh = trimesh.load(reconstruct.normalized_mesh_path(config, "chair_000_0002"), force="mesh", process=False)
    (tmp_path / "users").mkdir()
    entries = []
    for k, (azimuth, elevation) in enumerate(((40.0, 25.0), (120.0, 10.0))):
        drawing = user_sketches.draw_user_sketch(mesh, azimuth, elevation, seed=k, width=150, height=110)
        assert 0.01 < np.mean(drawing < 128) < 0.3
        Image.fromarray(drawing).save(tmp_path / "users" / f"u{k}.png")
        entries.append({"file": f"u{k}.png", "obj_id": "chair_000_0002", "azimuth": azimuth, "elevation": elevation})
    (tmp_path / "users" / "sketches.json").write_text(json.dumps(entries))
    users = optimize.sketch_to_shape(config, workdir, progress=False, out_dir=str(tmp_path / "users_out"),
                                     user_set=str(tmp_path / "users" / "sketches.json"))
    assert users["names"] == ["u0", "u1"] and set(users["means"]) == {"sketch2shape", "encoder", "retrieval", "sdf_fit"}
    assert not os.path.exists(tmp_path / "users_out" / "sdf_fit")
    assert users["means"]["sdf_fit"]["chamfer"] == pytest.approx(summary["means"]["sdf_fit"]["chamfer"], rel=1e-4)
    assert sorted(os.listdir(tmp_path / "users_out" / "pictures")) == ["u0.png", "u1.png"]
    np.testing.assert_allclose(np.load(tmp_path / "users_out" / "latents.npz")["framings"],  # fixed: as config says
                               [[[config.sketch.fill, 0.0, 0.0]]] * 2)
    (tmp_path / "users" / "bad.json").write_text(json.dumps([{"file": "u0.png", "obj_id": "chair_999"}]))
    with pytest.raises(errors.DataError, match="bad.json: expected a JSON list"):
        optimize.sketch_to_shape(config, workdir, progress=False, user_set=str(tmp_path / "users" / "bad.json"))

    for view, (h, w) in (("front", (200, 150)), ("side", (120, 260))):
        Image.fromarray((_drawing(h, w) * 255).astype(np.uint8)).save(tmp_path / f"my {view}.png")
    flags = [f"--config={ROOT}/configs/chair16.py:smoke", f"--config.data.root={config.data.root}",
             f"--workdir={workdir}"]
    out = subprocess.run([sys.executable, "-m", "sdfjax.launch.sketch2shape", *flags,
                          f"--sketch={tmp_path / 'my front.png'},{tmp_path / 'my side.png'}",
                          "--azimuths=0,90", "--elevations=10,10", f"--out_dir={tmp_path / 'user'}",
                          "--config.sketch.user_framing=fit"],  # each drawing framed where the encoder agrees
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(set(os.listdir(tmp_path / "user")) - {"meshes"}) == ["latents.npz", "pictures"]
    saved = np.load(tmp_path / "user" / "latents.npz")
    assert saved["latents"].shape == (1, config.model.latent_dim)  # one latent for both drawings
    fills = saved["framings"][0, :, 0]  # (fill, centre right, centre down) per drawing, among the tried fills
    assert saved["framings"].shape == (1, 2, 3) and np.all((fills >= 0.55) & (fills <= 1.0))
    assert _meshes(tmp_path / "user") in (["my front+my side.obj"], [])  # [] only if the shape has no surface
    picture = np.asarray(Image.open(tmp_path / "user" / "pictures" / "my front+my side.png"))
    assert picture.shape[0] == 2 * size + 2  # a row per drawing
    with pytest.raises(ValueError, match="1 sketches but 2 views"):
        optimize.user_batch(config, [str(tmp_path / "my front.png")], [(0, 10), (90, 10)], 32)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    out = subprocess.run([sys.executable, "-m", "sdfjax.launch.sketch2shape", *flags,
                          f"--sketch={tmp_path / 'bad.png'}"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode != 0 and "bad.png: not a readable image" in out.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_sketches_at_128_px_flow_through_both_encoders_the_refinement_and_the_page(trained_pair, tmp_path):
    """The smoke decoder with its dataset re-rendered at 128 px: both encoders train at 128, and the page's
    service frames a drawing at 128, encodes it, refines it and meshes it."""
    from sdfjax.app.service import ShapeService
    from sdfjax.data import pipeline

    config, workdir, _ = trained_pair
    config = config.copy_and_resolve_references()
    root, run = tmp_path / "chairs128", tmp_path / "run128"
    shutil.copytree(config.data.root, root)
    shutil.copytree(os.path.join(workdir, "checkpoints"), run / "checkpoints")  # the decoder alone
    config.data.root = str(root)
    config.render.focal *= 128 / config.render.resolution  # the same field of view
    config.render.resolution = 128
    pipeline.preprocess_dataset(config, stages=("render", "tfds"), overwrite=True, progress=False)
    assert tfds_builder.data_source(config, "train", renders=True)[0]["sketches"].shape[-2:] == (128, 128)
    config.siamese.num_steps, config.encoder.num_steps = 4, 4
    siamese.train_siamese(config, str(run), progress=False)
    encoder_train.train_encoder(config, str(run), progress=False)
    assert trained_lib.load_siamese(str(run))[2]["resolution"] == 128
    assert trained_lib.load_encoder(str(run))[2]["resolution"] == 128

    config.sketch.iterations = 3
    service = ShapeService(config, str(run), max_views=1, out_root=str(tmp_path / "answers"), warm_views=1)
    assert service.resolution == 128
    drawing = (_drawing(300, 360) * 255).astype(np.uint8)
    view = service.view_of(drawing, "sketch 1", 40.0, 25.0)
    assert view.sketch.shape == (128, 128) and (view.sketch < 128).any()
    steps = []
    answers = list(service.shape([view], on_step=lambda k, n: steps.append((k, n))))
    assert [a.stage for a in answers] == ["encoder", "refined"]
    assert steps[-1] == (4, 4)  # the start and 3 steps
    assert all(np.all(np.isfinite(a.latent)) and a.latent.shape == (config.model.latent_dim,) for a in answers)
