"""Sketch to shape: two-sided silhouette, outline masks, the sketch-to-latent encoder, refinement, user sketches."""

import csv
import dataclasses
import functools
import json
import os
import struct
import subprocess
import sys
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import trimesh
from PIL import Image

from data_gen import user_sketches
from sdfjax import errors
from sdfjax import trained as trained_lib
from sdfjax.data import tfds_builder
from sdfjax.data.batching import images_and_views
from sdfjax.fit import reconstruct
from sdfjax.fit.folded import fold_decoder
from sdfjax.models import latent_encoder
from sdfjax.render import camera as camera_lib
from sdfjax.render import edges, latent_render, tracer
from sdfjax.render.silhouette import silhouette_loss, soft_occupancy_loss
from sdfjax.sketch2shape import encoders, hand_drawn, losses, optimize, sketches
from sdfjax.evaluators import latent_encoder as encoder_evaluation
from sdfjax.train import latent_encoder as encoder_train
from sdfjax.train import logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMERA = camera_lib.Camera(30.0, 20.0, 4.0, 64.0, 32, 32)


# --- the silhouette term on an analytic sphere ------------------------------------------------------

def _fit_radius(start: float, mask, margin: float, hit_threshold: float, steps: int = 150, loss_fn=None) -> float:
    """Adam on a sphere's radius against a target silhouette mask; returns the final radius.

    loss_fn(min_sdf, mask) defaults to the relu form with `margin` and `hit_threshold`."""
    origins, directions = (jnp.asarray(a) for a in CAMERA.rays())
    settings = tracer.TraceSettings()
    sdf = lambda p, x: jnp.linalg.norm(x, axis=-1) - p  # noqa: E731
    loss_fn = loss_fn or (lambda m, k: silhouette_loss(m, k, margin, hit_threshold))

    @jax.jit
    def step(r, opt):
        loss, g = jax.value_and_grad(lambda r: loss_fn(
            tracer.render(sdf, r, origins, directions, settings)["min_sdf"], mask))(r)
        updates, opt = optimizer.update(g, opt)
        return optax.apply_updates(r, updates), opt

    optimizer = optax.adam(0.01)
    r = jnp.float32(start)
    opt = optimizer.init(r)
    for _ in range(steps):
        r, opt = step(r, opt)
    return float(r)


@jax.jit  # traced eagerly, each of the tracer's loops would compile on every call
def _sphere_mask(radius):
    origins, directions = (jnp.asarray(a) for a in CAMERA.rays())
    return tracer.render(lambda p, x: jnp.linalg.norm(x, axis=-1) - p, jnp.float32(radius), origins, directions)["hit"]


@pytest.mark.slow
def test_two_sided_silhouette_shrinks_a_large_sphere_and_grows_a_small_one():
    mask = _sphere_mask(0.5)
    threshold = tracer.TraceSettings().threshold
    assert abs(_fit_radius(0.7, mask, 0.01, threshold) - 0.5) < 0.03
    assert abs(_fit_radius(0.3, mask, 0.01, threshold) - 0.5) < 0.03
    # The one-sided form only inflates: a too-large sphere never shrinks (the bug this replaces).
    assert _fit_radius(0.7, mask, 0.0, 0.0) >= 0.7


@pytest.mark.slow
def test_soft_occupancy_silhouette_is_the_pixel_error_in_the_limit_and_moves_a_sphere_both_ways():
    rng = np.random.default_rng(0)
    min_sdf = jnp.asarray(rng.choice([-1e-4, 1e-4, 0.05, 0.2], size=500).astype(np.float32))
    mask = jnp.asarray(rng.uniform(size=500) < 0.4)
    known = jnp.asarray(rng.uniform(size=500) < 0.8)
    hit = np.asarray(min_sdf) < 2e-4
    pixel_error = np.mean((hit != np.asarray(mask))[np.asarray(known)])
    np.testing.assert_allclose(soft_occupancy_loss(min_sdf, mask, 1e-5, 2e-4, known), pixel_error, atol=1e-5)
    assert abs(float(soft_occupancy_loss(min_sdf, mask, 1e-5, 2e-4)) - np.mean(hit != np.asarray(mask))) < 1e-5
    bad = ml_collections.ConfigDict({"silhouette_form": "nope"})
    with pytest.raises(ValueError, match="config.sketch.silhouette_form='nope'"):
        losses.RefineSettings.from_config(bad, tracer.TraceSettings(), 32)
    sphere = _sphere_mask(0.5)
    soft = lambda m, k: soft_occupancy_loss(m, k, 0.03, tracer.TraceSettings().threshold)  # noqa: E731
    assert abs(_fit_radius(0.7, sphere, 0, 0, loss_fn=soft) - 0.5) < 0.03
    assert abs(_fit_radius(0.3, sphere, 0, 0, loss_fn=soft) - 0.5) < 0.03


def test_the_soft_silhouette_carves_hit_rays_outside_the_outline_and_its_value_stays_the_pixel_error():
    threshold, temperature = 2e-4, 0.03
    min_sdf = jnp.asarray([1e-4, 1e-4, 0.05, 0.05, -0.01], jnp.float32)  # hit, hit, miss, miss, overshot hit
    mask = jnp.asarray([True, False, True, False, False])
    value, grad = jax.value_and_grad(lambda m: soft_occupancy_loss(m, mask, temperature, threshold))(min_sdf)
    grad = np.asarray(grad)
    near = np.exp(-(0.05 - threshold) / temperature)
    np.testing.assert_allclose(value, (0 + 1 + (1 - near) + near + 1) / 5, rtol=1e-6)
    np.testing.assert_allclose(grad[[1, 4]], -1.0 / (temperature * 5), rtol=1e-6)  # pushed off the surface
    assert grad[0] == 0.0  # a hit inside the outline stays
    np.testing.assert_allclose(grad[[2, 3]], [near / (temperature * 5), -near / (temperature * 5)], rtol=1e-5)
    spared = jnp.asarray([True, False, True, True, True])  # ray 1 is next to the drawing: not carved
    grad = np.asarray(jax.grad(lambda m: soft_occupancy_loss(m, mask, temperature, threshold, carvable=spared))(
        min_sdf))
    assert grad[1] == 0.0 and grad[4] < 0


def _frame_and_leg() -> np.ndarray:
    """(24, 32) uint8 black-on-white: a closed frame and a leg right of it."""
    frame = np.full((24, 32), 255, np.uint8)
    frame[4, 4:20] = frame[15, 4:20] = frame[4:16, 4] = frame[4:16, 19] = 0
    frame[6:14, 27] = 0
    return frame


def _chessboard_distance(mask: np.ndarray) -> np.ndarray:
    """Brute force: each pixel's chessboard distance to the nearest True pixel of `mask`."""
    rows, cols = np.nonzero(mask)
    ys, xs = np.indices(mask.shape)
    return np.maximum(np.abs(rows - ys[..., None]), np.abs(cols - xs[..., None])).min(axis=-1)


def test_a_line_band_leaves_the_background_next_to_the_lines_unknown():
    frame = _frame_and_leg()
    inside, known = sketches.outline_masks(frame)
    distance = _chessboard_distance(inside)
    for band in (1, 2):
        got_inside, got_known, carvable = sketches.view_masks(frame, line_band=band, carve_margin=band)
        assert (got_inside == inside).all()
        for y in range(24):
            for x in range(32):
                assert got_known[y, x] == (known[y, x] and (inside[y, x] or distance[y, x] > band)), (band, y, x)
        assert not (carvable & ~got_known).any()
    with pytest.raises(ValueError, match="config.sketch.line_band=-1"):
        sketches.view_masks(frame, line_band=-1)


def test_grown_lines_reach_every_pixel_within_the_chessboard_distance_and_keep_the_dtype():
    frame = _frame_and_leg()
    distance = _chessboard_distance(frame < 128)
    for pixels in (0, 1, 2):
        grown = sketches.grown_lines(np.stack([frame, frame[::-1]]), pixels)
        assert grown.dtype == np.uint8
        np.testing.assert_array_equal(grown[0] < 128, distance <= pixels)
        np.testing.assert_array_equal(grown[1], grown[0][::-1])  # each image on its own, not across the batch
    grey = frame.astype(np.float32) / 255.0
    np.testing.assert_array_equal(sketches.grown_lines(grey, 1) < 0.5, distance <= 1)
    with pytest.raises(ValueError, match="config.sketch.encoder_line_growth=-1"):
        sketches.grown_lines(frame, -1)


def test_the_carvable_mask_spares_the_rays_next_to_the_drawing_and_every_ray_of_a_drawing_with_gaps():
    frame = _frame_and_leg()
    inside, known = sketches.outline_masks(frame)
    distance = _chessboard_distance(inside)
    for margin in (0, 1, 3):
        got = sketches.view_masks(frame, tolerance=2, carve_margin=margin)[2]
        for y in range(24):
            for x in range(32):
                assert got[y, x] == (known[y, x] and distance[y, x] > margin), (margin, y, x)
    broken = frame.copy()
    broken[4, 10:13] = 255  # a 3-pixel gap in the top line: the drawing has gaps
    assert not sketches.view_masks(broken, tolerance=2, carve_margin=1)[2].any()
    assert sketches.view_masks(broken, carve_margin=1)[2].any()  # no tolerance: no gap rule
    # ... unless it may be carved far enough from its lines
    broken_known = sketches.outline_masks(broken, tolerance=2)[1]
    from_lines = _chessboard_distance(broken < 128)
    for margin in (2, 4):
        got = sketches.view_masks(broken, tolerance=2, carve_margin=1, gap_carve_margin=margin)[2]
        np.testing.assert_array_equal(got, broken_known & (from_lines > margin))
        assert got.any()
    with pytest.raises(ValueError, match="config.sketch.carve_margin=-1"):
        sketches.view_masks(frame, carve_margin=-1)


@pytest.mark.slow
def test_without_the_siamese_term_the_sketch_loss_never_renders_for_the_tower_and_keeps_its_other_terms():
    origins, directions = (jnp.asarray(a)[None] for a in CAMERA.rays())  # one view
    inside = _sphere_mask(0.5)[None]
    views = {"origins": origins, "directions": directions, "targets": jnp.zeros((1, 4)), "inside": inside,
             "known": jnp.ones_like(inside), "carvable": ~inside}
    sdf = lambda p, x: jnp.linalg.norm(x, axis=-1) - 0.3 - p["z"][0]  # noqa: E731  (z[0] grows the sphere)
    prior = {"mean": jnp.zeros(2), "whiten": jnp.eye(2)}
    z = jnp.asarray([0.1, 0.2])
    settings = losses.RefineSettings(tracer.TraceSettings(), CAMERA.width, embedding_weight=1.0,
                                     silhouette_weight=10.0, prior_weight=0.5, temperature=0.03)

    def loss(settings, encoder):
        return losses.sketch_loss(sdf, encoder, settings, None, prior, z, views)

    full, (embedding, silhouette, prior_term) = loss(settings, lambda images: jnp.ones((len(images), 4)))
    np.testing.assert_allclose(embedding, 2.0, rtol=1e-5)  # |(1, 1, 1, 1) - 0|
    np.testing.assert_allclose(full, 2.0 + 10.0 * silhouette + 0.5 * prior_term, rtol=1e-5)
    settings = dataclasses.replace(settings, embedding_weight=0.0)

    def no_tower(images):
        raise AssertionError("the Siamese tower ran with embedding_weight 0")

    alone, (none, same_silhouette, same_prior) = loss(settings, no_tower)
    assert float(none) == 0.0 and float(same_silhouette) == float(silhouette) > 0
    np.testing.assert_allclose(alone, full - 2.0, rtol=1e-5)
    np.testing.assert_allclose(same_prior, np.mean(np.square(z)), rtol=1e-6)


@pytest.mark.slow
def test_each_drawn_view_adds_its_silhouette_and_the_embedding_term_stays_a_mean():
    origins, directions = (jnp.asarray(a)[None] for a in CAMERA.rays())
    inside = _sphere_mask(0.5)[None]
    sdf = lambda p, x: jnp.linalg.norm(x, axis=-1) - 0.3 - p["z"][0]  # noqa: E731
    prior = {"mean": jnp.zeros(2), "whiten": jnp.eye(2)}
    z = jnp.asarray([0.1, 0.2])
    settings = losses.RefineSettings(tracer.TraceSettings(), CAMERA.width, embedding_weight=1.0,
                                     silhouette_weight=10.0, prior_weight=0.0, temperature=0.03)

    def loss(count):
        times = lambda a: jnp.concatenate([a] * count)  # noqa: E731  (the same drawing, `count` times)
        views = {"origins": times(origins), "directions": times(directions), "targets": jnp.zeros((count, 4)),
                 "inside": times(inside), "known": jnp.ones_like(times(inside)), "carvable": ~times(inside)}
        return losses.sketch_loss(sdf, lambda images: jnp.ones((len(images), 4)), settings, None, prior, z, views)

    (one, (embedding_one, silhouette_one, _)), (two, (embedding_two, silhouette_two, _)) = loss(1), loss(2)
    assert float(silhouette_one) > 0
    np.testing.assert_allclose(silhouette_two, 2 * silhouette_one, rtol=1e-5)
    np.testing.assert_allclose(embedding_two, embedding_one, rtol=1e-6)
    np.testing.assert_allclose(two - one, 10.0 * silhouette_one, rtol=1e-5)


def test_outline_masks_leave_enclosed_background_unknown():
    sketch = np.full((40, 40), 255, np.uint8)
    sketch[5, 5:35] = sketch[34, 5:35] = sketch[5:35, 5] = sketch[5:35, 34] = 0  # a square frame
    inside, known = sketches.outline_masks(sketch)
    assert inside[5, 10] and known[5, 10]  # on a line: object
    assert not inside[0, 0] and known[0, 0]  # background reaching the border: not object
    assert not known[20, 20]  # enclosed by the lines: could be a face or a hole


def test_outline_tolerance_closes_a_broken_stroke():
    sketch = np.full((40, 40), 255, np.uint8)
    sketch[5, 5:35] = sketch[34, 5:35] = sketch[5:35, 5] = sketch[5:35, 34] = 0  # a square frame ...
    sketch[34, 18:22] = 255  # ... whose bottom side has a 4-pixel gap, as a hand leaves
    inside, known = sketches.outline_masks(sketch)
    assert known[20, 20] and not inside[20, 20]  # without tolerance the outside flows in: "not object"
    assert sketches.outline_masks(sketch, tolerance=1)[1][20, 20]  # 1 pixel closes gaps of 2, not 4
    inside, known = sketches.outline_masks(sketch, tolerance=2)
    assert not known[20, 20]  # enclosed again: unknown
    assert known[0, 0] and not inside[0, 0]  # far outside: still outside
    assert not known[3, 20] and known[1, 20]  # within 2 pixels of a line: unknown; farther: outside
    assert inside[5, 10] and known[5, 10]  # the lines themselves: object
    assert (sketches.outline_masks(sketch, tolerance=0)[1] == sketches.outline_masks(sketch)[1]).all()
    closed_frame = sketch.copy()
    closed_frame[34, 18:22] = 0  # the same frame drawn closed: the tolerance leaves its masks as they are
    for got, plain in zip(sketches.outline_masks(closed_frame, tolerance=2), sketches.outline_masks(closed_frame)):
        np.testing.assert_array_equal(got, plain)
    assert sketches.outline_masks(closed_frame, tolerance=2)[1][3, 20]  # next to its lines: known background
    with pytest.raises(ValueError, match="config.sketch.outline_tolerance=-1"):
        sketches.outline_masks(sketch, tolerance=-1)


def test_gaussian_prior_whitens_the_trained_latents():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(4, 4))
    latents = rng.normal(size=(5000, 4)) @ mixing.T + 3.0
    prior = losses.gaussian_prior(latents, shrinkage=0.0)
    white = (latents - prior["mean"]) @ prior["whiten"].T
    np.testing.assert_allclose(np.cov(white.T), np.eye(4), atol=0.05)
    assert float(losses.prior_energy(jnp.asarray(prior["mean"]), prior)) == pytest.approx(0.0, abs=1e-6)
    far = prior["mean"] + 10 * np.linalg.inv(prior["whiten"])[:, 0]  # 10 standard deviations along one axis
    assert float(losses.prior_energy(jnp.asarray(far), prior)) == pytest.approx(100 / 4, rel=1e-3)


def test_hand_drawn_style_moves_strokes_a_little_and_is_reproducible():
    sketch = np.full((64, 64), 255, np.uint8)
    sketch[10, 10:54] = sketch[50, 10:54] = sketch[10:51, 10] = sketch[10:51, 53] = 0  # a frame
    sketch[10:51, 32] = 0  # and a bar: junctions where it meets the frame
    a = hand_drawn.hand_drawn(sketch, np.random.default_rng(3))
    b = hand_drawn.hand_drawn(sketch, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sketch)
    drawn, original = np.argwhere(a < 128), np.argwhere(sketch < 128)
    assert 0.5 < len(drawn) / len(original) < 2.0
    # every drawn pixel stays near an original line: strokes are moved a little, not scattered
    nearest = np.min(np.linalg.norm(drawn[:, None] - original[None], axis=-1), axis=1)
    assert np.median(nearest) <= 2.0 and nearest.max() <= 6.0


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


@pytest.mark.slow
def test_refinement_from_two_views_moves_a_perturbed_latent_toward_the_truth(trained_models):
    config, workdir, _ = trained_models
    trained = trained_lib.load_trained(config, workdir)
    model, enc_params, _ = trained_lib.load_siamese(workdir)
    sdf_fn = latent_render.decoder_sdf(trained.decoder)
    truth = trained.latents[0]
    cameras = [camera_lib.Camera(a, 10.0, 4.0, 64.0, 32, 32) for a in (30.0, 120.0)]
    trace = _jitted_tracer(sdf_fn)
    drawn = np.stack([_decoder_sketch(trace, trained.params, truth, c) for c in cameras])
    sk = config.sketch.copy_and_resolve_references()
    sk.lr, sk.embedding_weight, sk.prior_weight = 0.02, 0.0, 0.0
    settings = losses.RefineSettings.from_config(sk, tracer.TraceSettings(), 32)
    optimizer, step = optimize.make_step(sdf_fn, encoders.normal_map_encoder(model, enc_params), settings, sk.lr)
    start = truth + 0.5 * np.random.default_rng(1).normal(size=truth.shape).astype(np.float32)
    targets = encoders.embedder(model, enc_params, "sketch")(drawn)
    views = {k: jnp.asarray(a) for k, a in optimize.object_views(drawn[None], [cameras], targets[None], sk).items()}
    prior = {k: jnp.asarray(a) for k, a in losses.gaussian_prior(trained.latents).items()}
    best, curve = optimize.optimize_batch(step, optimizer, trained.params, prior, start[None], views, 40)

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


# --- whole runs and user files ----------------------------------------------------------------------

def _drawing(h, w):
    image = np.ones((h, w), np.float32)
    image[h // 4:h // 4 + 3, w // 5:4 * w // 5] = 0.0  # a seat
    image[h // 4:3 * h // 4, w // 5:w // 5 + 3] = 0.0  # a leg
    image[h // 4:3 * h // 4, 4 * w // 5 - 3:4 * w // 5] = 0.0
    image[h // 10:h // 4, 4 * w // 5 - 3:4 * w // 5] = 0.0  # a back
    return image


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels over a few bytes of data (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                + chunk(b"IEND", b""))


def test_bad_sketch_files_are_refused_with_their_name(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(errors.DataError, match="notes.png: not a readable image"):
        sketches.load_image(str(tmp_path / "notes.png"))
    Image.fromarray(np.full((50, 50), 200, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(errors.DataError, match="blank.png: the image is blank"):
        sketches.normalize_sketch(sketches.load_image(str(tmp_path / "blank.png")), 32,
                                  name=str(tmp_path / "blank.png"))
    Image.new("L", (4100, 4100), 255).save(tmp_path / "huge.png")
    with pytest.raises(errors.DataError, match="huge.png: the image is 4100 x 4100 pixels"):
        sketches.load_image(str(tmp_path / "huge.png"))
    _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(errors.DataError, match="bomb.png: "):
        sketches.load_image(str(tmp_path / "bomb.png"))


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
    for k, (azimuth, elevation) in enumerate(((40.0, -30.0), (120.0, -10.0))):
        drawing = user_sketches.draw_user_sketch(mesh, azimuth, elevation, width=150, height=110, line_width=2)
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
