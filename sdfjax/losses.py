"""Losses of training and fitting, as pure functions of arrays.

  sdf_loss           DeepSDF's clamped L1 (Park et al. 2019, Eq. 9), with Curriculum DeepSDF's
                     tolerance and hard-sample weight (Duan et al. 2020, Eq. 4-5) (training).
  sdf_interval_loss  the clamped L1 to an interval of possible SDF values; equal to sdf_loss
                     for exact samples (latent fitting, shape completion from a depth view).
  triplet_loss       batch-hard and batch-all triplet losses (Hermans et al. 2017) of the
                     Siamese encoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TRIPLET_KINDS = ("batch_hard", "batch_all")


def sdf_loss(pred: jax.Array, sdf: jax.Array, delta: float, eps=0.0, gamma=0.0) -> jax.Array:
    """Mean clamped L1 (DeepSDF), with Curriculum DeepSDF's eps and gamma when non-zero."""
    pred_c, sdf_c = jnp.clip(pred, -delta, delta), jnp.clip(sdf, -delta, delta)
    error = jnp.maximum(jnp.abs(pred_c - sdf_c) - eps, 0.0)
    weight = 1.0 + gamma * jnp.sign(sdf) * jnp.sign(sdf - pred)
    return jnp.mean(weight * error)


def sdf_interval_loss(pred: jax.Array, lo: jax.Array, hi: jax.Array, delta: float) -> jax.Array:
    """Mean clamped distance of f to the interval [lo, hi] its true SDF is known to lie in.

    With c = clamp(., +-delta): mean relu(c(lo) - c(f)) + relu(c(f) - c(hi)). An exact
    sample (lo = hi = s) costs |c(f) - c(s)|, DeepSDF's clamped L1 (Eq. 9); a free-space
    point seen by a depth camera (0 <= sdf <= hi) costs only where f is negative or
    beyond what the observed surface allows.
    """
    return jnp.mean(sdf_interval_errors(pred, lo, hi, delta))


def sdf_interval_errors(pred: jax.Array, lo: jax.Array, hi: jax.Array, delta: float) -> jax.Array:
    """Per point, the clamped distance that `sdf_interval_loss` averages."""
    pred_c, lo_c, hi_c = (jnp.clip(a, -delta, delta) for a in (pred, lo, hi))
    return jax.nn.relu(lo_c - pred_c) + jax.nn.relu(pred_c - hi_c)


def pairwise_distances(embeddings: jax.Array) -> jax.Array:
    """(N, N) Euclidean distances, with a finite gradient where two embeddings coincide."""
    sq = jnp.sum(embeddings**2, axis=-1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * embeddings @ embeddings.T, 0.0)
    safe = jnp.where(d2 > 1e-12, d2, 1.0)
    return jnp.where(d2 > 1e-12, jnp.sqrt(safe), 0.0)


def triplet_loss(embeddings: jax.Array, labels: jax.Array, margin: float, kind: str = "batch_hard"):
    """(loss, stats) of a batch of embeddings (N, D) with shape labels (N,); Euclidean distances d, margin m.

        batch_hard: mean_a relu(max_{p: y_p = y_a} d(a, p) - min_{n: y_n != y_a} d(a, n) + m)   (Eq. 5)
        batch_all:  sum_{a,p,n valid} relu(d(a, p) - d(a, n) + m) / #{terms > 0}             ("BA != 0")

    stats: active triplet share, mean positive and negative distance.
    """
    if kind not in TRIPLET_KINDS:
        raise ValueError(f"siamese.triplet={kind!r}: expected one of {TRIPLET_KINDS}")
    d = pairwise_distances(embeddings)
    same = labels[:, None] == labels[None, :]
    eye = jnp.eye(len(labels), dtype=bool)
    positive, negative = same & ~eye, ~same
    stats = {"positive_distance": jnp.sum(jnp.where(positive, d, 0)) / jnp.maximum(jnp.sum(positive), 1),
             "negative_distance": jnp.sum(jnp.where(negative, d, 0)) / jnp.maximum(jnp.sum(negative), 1)}
    if kind == "batch_hard":
        hardest_positive = jnp.max(jnp.where(positive, d, -jnp.inf), axis=1)
        hardest_negative = jnp.min(jnp.where(negative, d, jnp.inf), axis=1)
        valid = jnp.any(positive, axis=1) & jnp.any(negative, axis=1)
        terms = jnp.where(valid, jax.nn.relu(hardest_positive - hardest_negative + margin), 0.0)
        loss = jnp.sum(terms) / jnp.maximum(jnp.sum(valid), 1)
        active = jnp.sum(terms > 0) / jnp.maximum(jnp.sum(valid), 1)
    else:
        valid = positive[:, :, None] & negative[:, None, :]  # (anchor, positive, negative)
        terms = jnp.where(valid, jax.nn.relu(d[:, :, None] - d[:, None, :] + margin), 0.0)
        num_active = jnp.sum(terms > 1e-16)
        loss = jnp.sum(terms) / jnp.maximum(num_active, 1)
        active = num_active / jnp.maximum(jnp.sum(valid), 1)
    return loss, {**stats, "active_triplets": active}
