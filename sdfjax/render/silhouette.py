"""Silhouette losses on the sphere tracer's minimum SDF along each ray.

A ray's `min_sdf` (sdfjax.render.tracer) is positive when the ray misses the shape and
at most the hit threshold when it hits (the tracer stops there, so it is never much
below 0), and it is differentiable in the shape's parameters. A target object mask
pulls the surface onto the rays inside it and pushes it off the rays outside it.

Two-sided form (Sketch2Shape's silhouette term, with a surface epsilon):

    inside the mask:  relu(min_sdf - hit_threshold)   missed rays pulled in; hit rays left alone
    outside the mask: relu(margin - min_sdf)          rays that hit or pass within `margin` pushed off

A margin and hit threshold above 0 matter: a hit ray's min_sdf lies in [0, threshold), so
with both at 0 relu(min_sdf) would push every hit pixel outward and relu(-min_sdf) would be
0 outside: the loss would only inflate.

Soft form (`soft_occupancy_loss`, the sketch refinement's): the share of known pixels whose occupancy disagrees
with the mask, a missed ray being exp(-d / temperature) occupied; it counts wrong pixels
rather than how far they miss. Hit rays outside the mask are carved (pushed off), so it
removes material as well as adding it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def silhouette_loss(min_sdf: jax.Array, mask: jax.Array, margin: float = 0.0, hit_threshold: float = 0.0,
                    known: jax.Array | None = None, balanced: bool = False) -> jax.Array:
    """The module docstring's two-sided loss; rays where `known` is False count 0.

    balanced=False: the mean over all rays. balanced=True: the mean over the known rays
    inside the mask plus the mean over those outside it, so that a thin object (a sketch's
    lines, a few percent of the pixels) weighs as much as its background.
    """
    inside = jax.nn.relu(min_sdf - hit_threshold)
    outside = jax.nn.relu(margin - min_sdf)
    known = jnp.ones_like(mask) if known is None else known
    if balanced:
        inside_rays, outside_rays = known & mask, known & ~mask
        return (jnp.sum(jnp.where(inside_rays, inside, 0.0)) / jnp.maximum(jnp.sum(inside_rays), 1)
                + jnp.sum(jnp.where(outside_rays, outside, 0.0)) / jnp.maximum(jnp.sum(outside_rays), 1))
    return jnp.mean(jnp.where(known, jnp.where(mask, inside, outside), 0.0))


def soft_occupancy_loss(min_sdf: jax.Array, mask: jax.Array, temperature: float, hit_threshold: float,
                        known: jax.Array | None = None, carvable: jax.Array | None = None) -> jax.Array:
    """Mean over the known rays of |occupancy - mask|: a soft pixel error.

    occupancy = exp(-relu(min_sdf - hit_threshold) / temperature): a ray that hits (min_sdf
    below the hit threshold) is occupied, one that misses by d is exp(-d / temperature)
    occupied, so as temperature -> 0 this is the share of known pixels whose hit disagrees
    with the mask. Missed rays inside the mask are pulled in and near misses outside it
    pushed off. A hit ray's occupancy is 1 whatever its min_sdf, so on its own it would
    give a hit outside the mask no gradient and nothing would remove a part the sketch
    does not show: such a ray is carved, its min_sdf
    raised at 1 / temperature per unit, a near miss's slope, by a term whose value is 0
    (the loss stays the pixel error); `carvable` (default: every ray outside the mask) limits
    where (sdfjax.sketch2shape.sketches.view_masks). Hit rays inside the mask carry no gradient. The relu
    form weighs a ray by how far it misses, so a few far misses outweigh many wrong pixels.
    """
    occupancy = jnp.exp(-jax.nn.relu(min_sdf - hit_threshold) / temperature)
    known = jnp.ones_like(mask) if known is None else known
    error = jnp.abs(occupancy - mask.astype(occupancy.dtype))
    carvable = ~mask if carvable is None else carvable & ~mask
    carve = jnp.where(carvable, jax.nn.relu(hit_threshold - min_sdf) / temperature, 0.0)
    error = error + carve - jax.lax.stop_gradient(carve)
    return jnp.sum(jnp.where(known, error, 0.0)) / jnp.maximum(jnp.sum(known), 1)
