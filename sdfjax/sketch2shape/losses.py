"""The loss that compares a rendered latent with one or several sketches of one object (Sketch2Shape).

For sketches S_v (v = 1..V, one object drawn from V views) seen from cameras C_v, with
N(z, C) the normal map the sphere tracer renders of latent z (differentiable through
the IDR hit point and the autodiff normals), E the Siamese encoder's towers, min_sdf
the smallest SDF along each pixel's ray, and each sketch's masks (inside, known,
carvable) from sdfjax.sketch2shape.sketches.view_masks:

    L(z) = w_e * mean_v || E_sketch(S_v) - E_normal(N(z, C_v)) ||_2
           + w_s * sum_v silhouette(min_sdf_v; inside_v, known_v, carvable_v)
           + w_p * mean_dims (W (z - mu))^2                              a Gaussian prior

Each view's outline is evidence of its own, so the silhouette term sums over the views: a
mean would give each of three drawings a third of one drawing's pull against the prior
and the Siamese term. One drawing's loss is the same either way.

The silhouette term (sdfjax.render.silhouette) has two forms. `soft`, a soft pixel error
(`soft_occupancy_loss`: a ray missing by d counts exp(-d / T) occupied; hit rays outside
the outline are carved), counts wrong pixels rather than how far they miss, so a few far
misses cannot outweigh many wrong pixels: the form for an encoder's start, already close.
`relu`, two-sided and balanced between the object's and the background's rays
(`silhouette_loss`, margin `surface_eps`), pulls a ray in by how far it misses, so it also
moves a start whose outline is far off (a small, barely trained decoder). mu and W = (Sigma + lambda I)^(-1/2) come from the trained latent table
(`gaussian_prior`), so the prior is the squared Mahalanobis distance per dimension: about 1
for a trained latent, and large where the decoder never learned a shape.

One object's views travel as a dict of arrays (`VIEW_KEYS`, each with a leading V axis), so
that a batch of objects is the same dict with a leading B axis and the step vmaps over it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sdfjax.render import tracer
from sdfjax.render.silhouette import silhouette_loss, soft_occupancy_loss

# One object's views: origins, directions (V, R*R, 3) of the sketch cameras' rays, targets (V, D) the
# sketches' Siamese embeddings E_sketch(S_v), inside, known, carvable (V, R*R) bool the outline masks.
VIEW_KEYS = ("origins", "directions", "targets", "inside", "known", "carvable")
SILHOUETTE_FORMS = ("soft", "relu")


@dataclasses.dataclass(frozen=True)
class RefineSettings:
    """What the sketch loss weighs and how it traces: config.sketch's weights, the refinement's tracing."""

    trace: tracer.TraceSettings
    resolution: int  # sketch pixels per side
    embedding_weight: float = 1.0  # w_e
    silhouette_weight: float = 1.0  # w_s
    prior_weight: float = 1e-2  # w_p
    form: str = "soft"  # one of SILHOUETTE_FORMS
    temperature: float = 0.03  # soft: T, in SDF units
    surface_eps: float = 0.003  # relu: rays outside the outline are pushed this far off the surface

    @classmethod
    def from_config(cls, sketch_config, trace: tracer.TraceSettings, resolution: int) -> RefineSettings:
        sk = sketch_config
        if sk.silhouette_form not in SILHOUETTE_FORMS:
            raise ValueError(f"config.sketch.silhouette_form={sk.silhouette_form!r}: expected one of "
                             f"{SILHOUETTE_FORMS}")
        return cls(trace, int(resolution), float(sk.embedding_weight), float(sk.silhouette_weight),
                   float(sk.prior_weight), sk.silhouette_form, float(sk.silhouette_temperature),
                   float(sk.surface_eps))


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


def sketch_loss(sdf_fn, encoder, settings: RefineSettings, decoder_params, prior: dict, z: jax.Array,
                views: dict) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """(loss, (embedding distance, silhouette, prior)) of the module docstring for one object.

    `sdf_fn(params, xyz)` is the decoder's SDF (params {"decoder", "z"}); `encoder` maps normal maps
    (V, R, R, 3) to embeddings (sdfjax.sketch2shape.encoders); `prior` is a `gaussian_prior`; `views`
    holds the object's `VIEW_KEYS`.
    """
    s = settings
    params = {"decoder": decoder_params, "z": z}
    out = jax.vmap(lambda o, d: tracer.render(sdf_fn, params, o, d, s.trace))(views["origins"], views["directions"])
    if s.embedding_weight:
        images = jax.vmap(lambda n, h: tracer.normal_image(n, h, s.resolution, s.resolution))(out["normals"],
                                                                                              out["hit"])
        distances = jnp.sum((encoder(images) - views["targets"]) ** 2, axis=-1)
        embedding = jnp.mean(jnp.sqrt(distances + 1e-12))
    else:  # no Siamese term: neither the normal maps nor the tower are computed (nor, unused, the normals)
        embedding = jnp.zeros(())
    if s.form == "relu":
        one_view = lambda m, i, k, c: silhouette_loss(m, i, s.surface_eps, s.trace.threshold, k,  # noqa: E731
                                                      balanced=True)
    else:
        one_view = lambda m, i, k, c: soft_occupancy_loss(m, i, s.temperature, s.trace.threshold, k, c)  # noqa: E731
    silhouette = jnp.sum(jax.vmap(one_view)(out["min_sdf"], views["inside"], views["known"], views["carvable"]))
    prior_term = prior_energy(z, prior)
    loss = s.embedding_weight * embedding + s.silhouette_weight * silhouette + s.prior_weight * prior_term
    return loss, (embedding, silhouette, prior_term)
