"""The sketch loss: the silhouette terms on an analytic sphere, the loss's terms and the Gaussian prior."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from sdfjax.render import camera as camera_lib
from sdfjax.render import tracer
from sdfjax.render.silhouette import silhouette_loss, soft_occupancy_loss
from sdfjax.sketch2shape import losses

CAMERA = camera_lib.Camera(30.0, 20.0, 4.0, 64.0, 32, 32)


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
