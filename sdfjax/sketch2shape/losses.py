"""The loss that compares a rendered latent with one or several sketches of one object (Sketch2Shape).

For sketches S_v (v = 1..V, one object drawn from V views) seen from cameras C_v, with
N(z, C) the normal map the sphere tracer renders of latent z (differentiable through
the IDR hit point and the autodiff normals), E the Siamese encoder's towers, min_sdf
the smallest SDF along each pixel's ray, and each sketch's outline masks (inside,
known) from sdfjax.sketch2shape.sketches.outline_masks:

    L(z) = w_e * mean_v || E_sketch(S_v) - E_normal(N(z, C_v)) ||_2
           + w_s * sum_v silhouette(min_sdf_v; inside_v, known_v, margin = surface_eps)
           + w_p * mean_dims (W (z - mu))^2                              a Gaussian prior
           + w_t * mean_dims (z - z0)^2                                  a trust region
           + w_h * mean_k |f(z, a_k) - f(z0, a_k)|                       the hidden surface stays

with a_k the start's surface points that no sketch of the object shows
(sdfjax.sketch2shape.hidden_surface): what the drawings cannot see keeps the shape the
start gave it.

Each view's outline is evidence of its own, so the silhouette term sums over the views: a
mean would give each of three drawings a third of one drawing's pull against the prior
and the Siamese term (12 test chairs drawn from views 11, 47 and 62 together, README:
weight 10 as a mean, median Chamfer 1.890, better than the start on 8 of 12; the sum's
equivalent, 30, 1.747 and 10 of 12). One drawing's loss is the same either way.

The silhouette term is two-sided and balanced between the object's and the background's
rays (sdfjax.render.silhouette), or with `silhouette_form="soft"` a soft pixel error
(`soft_occupancy_loss`: a ray missing by d counts exp(-d / T) occupied). mu and
W = (Sigma + lambda I)^(-1/2) come from the trained latent table (`gaussian_prior`), so the prior is the
squared Mahalanobis distance per dimension: about 1 for a trained latent, and large
where the decoder never learned a shape. z0 is where the optimisation started (the
encoder's latent): the trust region keeps the refinement near a good start.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sdfjax.render import tracer
from sdfjax.render.silhouette import silhouette_loss, soft_occupancy_loss


def shrunk_gaussian(latents: np.ndarray, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean (L,), covariance (L, L)) float64 of latents (T, L), the covariance shrunk towards its mean variance
    (Ledoit-Wolf style, weight `shrinkage`) so that it is invertible with fewer latents than dimensions."""
    latents = np.asarray(latents, np.float64)
    mean = latents.mean(axis=0)
    centred = latents - mean
    cov = centred.T @ centred / max(len(latents) - 1, 1)
    level = float(np.trace(cov)) / len(cov) if np.trace(cov) > 0 else 1.0
    return mean, (1.0 - shrinkage) * cov + shrinkage * level * np.eye(len(cov))


def gaussian_prior(latents: np.ndarray, shrinkage: float = 1e-2) -> dict[str, np.ndarray]:
    """{"mean" (L,), "whiten" (L, L)} of a Gaussian fitted to trained latents (T, L) (`shrunk_gaussian`)."""
    mean, cov = shrunk_gaussian(latents, shrinkage)
    values, vectors = np.linalg.eigh(cov)
    whiten = vectors @ np.diag(1.0 / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T
    return {"mean": mean.astype(np.float32), "whiten": whiten.astype(np.float32)}


def prior_energy(z: jax.Array, prior: dict) -> jax.Array:
    """mean_dims (W (z - mu))^2: the squared Mahalanobis distance of z per dimension."""
    return jnp.mean((prior["whiten"] @ (z - prior["mean"])) ** 2)


def one_view_silhouette(sketch_config, hit_threshold: float):
    """silhouette(min_sdf (R*R,), inside, known, carvable) of one view, in config.sketch.silhouette_form
    (`carvable`: where the soft form may carve; the relu form pushes every known outside ray off)."""
    sk = sketch_config
    form = sk.get("silhouette_form", "relu")
    if form == "relu":
        return lambda m, i, k, c: silhouette_loss(m, i, sk.surface_eps, hit_threshold, k, balanced=True)
    if form == "soft":
        return lambda m, i, k, c: soft_occupancy_loss(m, i, sk.silhouette_temperature, hit_threshold, k, c)
    raise ValueError(f"config.sketch.silhouette_form={form!r}: expected 'relu' or 'soft'")


def hidden_surface_change(sdf_fn, decoder_params, z, z0, anchor_points, anchor_weights) -> jax.Array:
    """sum_k w_k |f(z, a_k) - f(z0, a_k)| / max(sum_k w_k, 1): how far (in SDF units) the surface moved at
    anchors a_k (K, 3) weighted w_k (K,); 0 when no anchor has weight."""
    now = sdf_fn({"decoder": decoder_params, "z": z}, anchor_points)
    start = jax.lax.stop_gradient(sdf_fn({"decoder": decoder_params, "z": z0}, anchor_points))
    return jnp.sum(anchor_weights * jnp.abs(now - start)) / jnp.maximum(jnp.sum(anchor_weights), 1.0)


def sketch_loss(sdf_fn, decoder_params, z, encoder, target_embeddings, origins, directions, inside, known, z0,
                prior, settings, resolution: int, sketch_config, anchors=None, carvable=None):
    """(loss, (embedding distance, silhouette, prior)) of the module docstring for one object.

    `encoder` maps normal maps (V, R, R, 3) to embeddings (sdfjax.sketch2shape.encoders);
    `target_embeddings` are E_sketch(S_v) (V, D); origins and directions (V, R*R, 3) are
    the sketch cameras' rays and `inside`, `known` (V, R*R) bool the outline masks;
    z0 (L,) is the start of the trust region and `prior` a `gaussian_prior`; `anchors` (points (K, 3),
    weights (K,)) are the hidden surface's (none: no hidden-surface term); `carvable` (V, R*R) bool where the soft
    silhouette may carve (sdfjax.sketch2shape.sketches.view_masks; None: every ray outside the outline).
    """
    sk = sketch_config
    params = {"decoder": decoder_params, "z": z}
    out = jax.vmap(lambda o, d: tracer.render(sdf_fn, params, o, d, settings))(origins, directions)
    if sk.embedding_weight:
        images = jax.vmap(lambda n, h: tracer.normal_image(n, h, resolution, resolution))(out["normals"], out["hit"])
        rendered = encoder(images)
        embedding = jnp.mean(jnp.sqrt(jnp.sum((rendered - target_embeddings) ** 2, axis=-1) + 1e-12))
    else:  # no Siamese term: neither the normal maps nor the tower are computed (nor, unused, the normals)
        embedding = jnp.zeros(())
    one_view = one_view_silhouette(sk, settings.threshold)
    silhouette = jnp.sum(jax.vmap(one_view)(out["min_sdf"], inside, known, carvable))
    prior_term = prior_energy(z, prior)
    loss = (sk.embedding_weight * embedding + sk.silhouette_weight * silhouette + sk.prior_weight * prior_term
            + sk.trust_weight * jnp.mean((z - z0) ** 2))
    if anchors is not None and sk.get("hidden_weight", 0.0):
        loss += sk.hidden_weight * hidden_surface_change(sdf_fn, decoder_params, z, z0, *anchors)
    return loss, (embedding, silhouette, prior_term)
