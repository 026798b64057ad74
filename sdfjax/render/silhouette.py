"""Silhouette losses on the sphere tracer's minimum SDF along each ray.

A ray's `min_sdf` (sdfjax.render.tracer) is positive when the ray misses the shape and
at most the hit threshold when it hits, and it is differentiable in the shape's
parameters, so a target object mask pulls the surface onto the rays inside it and
pushes it off the rays outside it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def silhouette_loss(min_sdf: jax.Array, mask: jax.Array) -> jax.Array:
    """mean over rays of relu(min_sdf) inside the target mask and relu(-min_sdf) outside it."""
    return jnp.mean(jnp.where(mask, jax.nn.relu(min_sdf), jax.nn.relu(-min_sdf)))
