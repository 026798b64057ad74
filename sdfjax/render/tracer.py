"""Differentiable sphere tracing of signed distance functions (docs/design.md, "Conventions").

    out = render(sdf_fn, params, origins, directions, settings)

`sdf_fn(params, points (n, 3)) -> (n,)` is any pure JAX SDF (the DeepSDF decoder with its
latent in `params`, or an analytic one); `params` is what gradients flow to. Per ray the
result holds `hit` (bool), `depth` (distance along the unit direction), `points`,
`normals` (unit, object frame; zero off the surface) and `min_sdf` (the smallest SDF
value met along the ray: the soft silhouette, <= 0 where the ray hits).

Marching. Each ray starts where it enters the unit bounding sphere (rays that miss it
are background at once) and steps by the SDF value, at most `max_step`, until it is
within `threshold` of the surface or leaves the sphere. A DeepSDF decoder is trained on
distances clamped to +-delta (Park et al. 2019, Eq. 9): beyond delta its value is only
"more than delta", often several times the true distance, and a step of that length
jumps through thin parts (a chair's back seen from behind vanishes). So a trained
decoder is traced with `max_step` = delta, as Sketch2Shape's renderer clamps its steps
to 0.1; `march_densely` is the reference that assumes nothing of the field.

The steps run under `stop_gradient` in `lax` loops, in stages: after each stage the
rays still marching are gathered to the front and only a shrinking number of them
(`stage_fractions` of all rays) is marched in the next, so converged rays stop costing
decoder evaluations. Then finishing rounds of `round_steps` steps march the rays still
going, `finish_fraction` of all rays at a time and compacted again each round, until
every ray has hit, left the sphere, or used `max_steps` steps: only such a ray is not
finished, and it is reported (`unfinished`), never silently turned into a miss. A trained decoder (clamped
training: small values far from its surface) needs these rounds for its grazing rays.

Gradients. The hit point is made differentiable once, by implicit differentiation
(IDR, Yariv et al. 2020, Eq. 3): with x0 the converged point and v the ray direction,

    x = x0 - v * (F(x0) - sg(F(x0))) / sg(grad F(x0) . v)

whose derivative in the parameters is exact to first order; memory does not grow with
the number of steps. Its value here is x0 moved by one (bounded) Newton step along the
ray, sg(F(x0) / (grad F(x0) . v)), which leaves the derivative unchanged and takes the
depth error from the hit threshold to about its square. Normals are normalize(grad_x F(x)) by
autodiff, so they are differentiable too (second order). `min_sdf` is F at the point
where the minimum was met, evaluated again with gradients.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sdfjax.geometry import isosurface

SdfFn = Callable[[object, jax.Array], jax.Array]
_MAX_NEWTON_STEP = 0.01


@dataclasses.dataclass(frozen=True)
class TraceSettings:
    """Sphere-tracing settings (module docstring): the staged bulk, then finishing rounds up to a budget."""

    stage_steps: Sequence[int] = (6, 6, 8, 16, 32)
    stage_fractions: Sequence[float] = (1.0, 0.5, 0.25, 0.125, 0.0625)
    threshold: float = 2e-4  # |sdf| below which a ray has hit
    step_scale: float = 1.0  # < 1 for SDFs that overestimate distances
    bound_radius: float = 1.0
    max_steps: int = 400  # per ray: a ray still marching after this many steps is reported unfinished
    finish_fraction: float = 0.0625  # rays marched per finishing round (the stragglers, compacted)
    round_steps: int = 16  # steps per finishing round
    max_step: float = float("inf")  # longest step: a trained decoder's clamp delta (module docstring)

    @classmethod
    def from_config(cls, render_config) -> "TraceSettings":
        return cls(stage_steps=tuple(render_config.stage_steps), stage_fractions=tuple(render_config.stage_fractions),
                   threshold=render_config.threshold, step_scale=render_config.step_scale,
                   max_steps=int(render_config.get("max_steps", 400)),
                   finish_fraction=float(render_config.get("finish_fraction", 0.0625)),
                   round_steps=int(render_config.get("round_steps", 16)),
                   max_step=float(render_config.get("max_step", float("inf"))))


def sphere_entry(origins: jax.Array, directions: jax.Array, radius: float = 1.0):
    """(t_in, t_out, hits) of each ray with the sphere |x| = radius (t_in clamped at 0)."""
    b = jnp.sum(origins * directions, axis=-1)
    c = jnp.sum(origins * origins, axis=-1) - radius**2
    disc = b * b - c
    root = jnp.sqrt(jnp.maximum(disc, 0.0))
    return jnp.maximum(-b - root, 0.0), -b + root, disc > 0


def _march(sdf_fn, params, origins, directions, state, steps: int, settings: TraceSettings):
    """Up to `steps` sphere-tracing steps of the rays in `state`; (state, steps run).

    A ray marches while active and within its budget (`steps` per ray counts its own
    steps); the loop ends early once no ray of `state` marches.
    """

    def body(carry):
        i, s = carry
        points = origins + s["t"][:, None] * directions
        marching = s["active"] & (s["steps"] < settings.max_steps)
        f = sdf_fn(params, points)
        f = jnp.where(marching, f, jnp.inf)
        closer = f < s["min_sdf"]
        min_sdf = jnp.where(closer, f, s["min_sdf"])
        t_min = jnp.where(closer, s["t"], s["t_min"])
        hit = marching & (f < settings.threshold)
        t = jnp.where(marching & ~hit, s["t"] + settings.step_scale * jnp.minimum(f, settings.max_step), s["t"])
        left = t > s["t_out"]
        active = s["active"] & ~hit & ~left
        return i + 1, {**s, "t": t, "hit": s["hit"] | hit, "active": active, "min_sdf": min_sdf, "t_min": t_min,
                       "steps": s["steps"] + marching.astype(jnp.int32)}

    def cond(carry):
        i, s = carry
        return (i < steps) & jnp.any(s["active"] & (s["steps"] < settings.max_steps))

    run, state = jax.lax.while_loop(cond, body, (0, state))
    return state, run


def _march_compacted(sdf_fn, params, origins, directions, state, capacity: int, steps: int, settings):
    """`_march` of the first `capacity` rays still marching (gathered to the front); (state, evaluations)."""
    marching = state["active"] & (state["steps"] < settings.max_steps)  # out-of-budget rays take no room
    order = jnp.argsort(~marching, stable=True)[:capacity]
    sub = {k: v[order] for k, v in state.items()}
    sub, run = _march(sdf_fn, params, origins[order], directions[order], sub, steps, settings)
    return {k: v.at[order].set(sub[k]) for k, v in state.items()}, capacity * run


def trace(sdf_fn: SdfFn, params, origins: jax.Array, directions: jax.Array,
          settings: TraceSettings = TraceSettings()) -> dict:
    """The marching part (no gradients): per-ray t, hit, unfinished, min_sdf, t_min, steps; and evaluation counts.

    Every ray that enters the bounding sphere marches until it hits, leaves the sphere,
    or has used `settings.max_steps` steps; only then is it reported `unfinished` (never
    silently a miss). `decoder_evals` counts the points the SDF was evaluated at (rays x
    steps run in each stage and round, padding included).
    """
    params = jax.lax.stop_gradient(params)
    n = origins.shape[0]
    t_in, t_out, enters = sphere_entry(origins, directions, settings.bound_radius)
    state = {"t": t_in, "t_out": t_out, "active": enters, "hit": jnp.zeros(n, bool),
             "min_sdf": jnp.full(n, jnp.inf), "t_min": t_in, "steps": jnp.zeros(n, jnp.int32)}
    evaluated = jnp.zeros((), jnp.int32)
    for steps, fraction in zip(settings.stage_steps, settings.stage_fractions):
        capacity = max(1, min(n, int(round(fraction * n))))
        state, evals = _march_compacted(sdf_fn, params, origins, directions, state, capacity, steps, settings)
        evaluated += evals
    # Finishing rounds: the stragglers (grazing rays, a learned field's small steps far from
    # its surface), compacted again each round so none waits for ever, until all are done.
    capacity = max(1, min(n, int(round(settings.finish_fraction * n))))

    def unfinished_rays(s):
        return s["active"] & (s["steps"] < settings.max_steps)

    def round_body(carry):
        s, e = carry
        s, evals = _march_compacted(sdf_fn, params, origins, directions, s, capacity, settings.round_steps, settings)
        return s, e + evals

    state, evaluated = jax.lax.while_loop(lambda c: jnp.any(unfinished_rays(c[0])), round_body, (state, evaluated))
    state["unfinished"] = state["active"]  # out of budget, neither hit nor out of the sphere
    state["hit"] = state["hit"] & ~state["active"]
    state["min_sdf"] = jnp.where(enters, state["min_sdf"], jnp.inf)
    state["decoder_evals"] = evaluated
    return jax.lax.stop_gradient(state)


def render(sdf_fn: SdfFn, params, origins: jax.Array, directions: jax.Array,
           settings: TraceSettings = TraceSettings()) -> dict:
    """Differentiable render of rays (n, 3): hit, depth, points, normals, min_sdf (module docstring)."""
    marched = trace(sdf_fn, params, origins, directions, settings)
    hit = marched["hit"]
    x0 = origins + marched["t"][:, None] * directions

    def f_single(p, x):
        return sdf_fn(p, x[None])[0]

    grad_x = jax.vmap(jax.grad(f_single, argnums=1), in_axes=(None, 0))
    f0 = sdf_fn(params, x0)
    g0 = jax.lax.stop_gradient(grad_x(params, x0))
    denom = jnp.sum(g0 * directions, axis=-1)
    denom = jnp.where(jnp.abs(denom) < 1e-6, jnp.where(denom < 0, -1e-6, 1e-6), denom)
    denom = jax.lax.stop_gradient(denom)
    # Value: one Newton step along the ray from x0 (bounded, for grazing rays), which takes
    # the depth error from ~threshold to ~threshold^2. Derivative: IDR's implicit one.
    newton = jax.lax.stop_gradient(jnp.clip(f0 / denom, -_MAX_NEWTON_STEP, _MAX_NEWTON_STEP))
    correction = newton + (f0 - jax.lax.stop_gradient(f0)) / denom
    points = x0 - directions * jnp.where(hit, correction, 0.0)[:, None]
    depth = jnp.sum((points - origins) * directions, axis=-1)
    gradients = grad_x(params, points)
    # A missed ray may end where a trained decoder is flat (all ReLUs off: a zero gradient), and the
    # norm's derivative at zero is NaN, which jnp.where below would not stop in the backward pass.
    normals = gradients / jnp.sqrt(jnp.sum(gradients**2, axis=-1, keepdims=True) + 1e-24)
    normals = jnp.where(hit[:, None], normals, 0.0)
    t_min = jnp.where(jnp.isfinite(marched["min_sdf"]), marched["t_min"], 0.0)
    min_sdf = jnp.where(jnp.isfinite(marched["min_sdf"]), sdf_fn(params, origins + t_min[:, None] * directions),
                        1.0)
    return {"hit": hit, "depth": jnp.where(hit, depth, 0.0), "points": points, "normals": normals,
            "min_sdf": min_sdf, "decoder_evals": marched["decoder_evals"], "steps": marched["steps"],
            "unfinished": marched["unfinished"]}


@functools.partial(jax.jit, static_argnames=("sdf_fn", "samples", "threshold", "radius"))
def _march_rays_densely(sdf_fn: SdfFn, params, origins, directions, samples: int, threshold: float,
                        radius: float) -> jax.Array:
    """(n, 2) [hit, depth] of `march_densely` for rays (n, 3) along their chords of the sphere |x| = radius."""
    t_in, t_out, enters = sphere_entry(origins, directions, radius)
    ts = t_in[:, None] + jnp.linspace(0.0, 1.0, samples)[None] * (t_out - t_in)[:, None]
    rows = jnp.arange(len(origins))
    values = sdf_fn(params, (origins[:, None] + ts[..., None] * directions[:, None]).reshape(-1, 3))
    below = values.reshape(len(origins), samples) < threshold
    first = jnp.argmax(below, axis=1)
    hit = enters & below.any(axis=1)
    lo, hi = ts[rows, jnp.maximum(first - 1, 0)], ts[rows, first]

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        outside = sdf_fn(params, origins + mid[:, None] * directions) >= threshold
        return jnp.where(outside, mid, lo), jnp.where(outside, hi, mid)

    _, depth = jax.lax.fori_loop(0, 30, bisect, (lo, jnp.where(first > 0, hi, lo)))
    return jnp.stack([hit.astype(depth.dtype), jnp.where(hit, depth, 0.0)], axis=-1)


def march_densely(sdf_fn: SdfFn, params, origins: jax.Array, directions: jax.Array, samples: int = 1000,
                  threshold: float = 2e-4, radius: float = 1.0, rays_per_call: int = 256) -> dict[str, np.ndarray]:
    """The slow reference for `trace`: {"hit", "depth"} per ray (n, 3) from `samples` evenly spaced SDF values
    along each ray's chord of the bounding sphere; a ray hits at its first sample below `threshold`, and its
    depth is the crossing found by bisection between that sample and the one before.

    It assumes nothing of the field (no distance bound), so it finds any part at least one
    spacing thick (2 x radius / samples at most), at `samples` evaluations per ray. Rays are
    marched `rays_per_call` at a time by one compiled program per `sdf_fn`.
    """
    march = functools.partial(_march_rays_densely, sdf_fn, params, samples=samples, threshold=threshold,
                              radius=radius)
    out = isosurface.chunked(march, rays_per_call)(origins, directions)
    return {"hit": out[:, 0] > 0.5, "depth": out[:, 1]}


def normal_image(normals: jax.Array, hit: jax.Array, height: int, width: int) -> jax.Array:
    """(H, W, 3) float image (n + 1) / 2 on a white background (docs/design.md, "Conventions")."""
    image = jnp.where(hit[:, None], (normals + 1.0) / 2.0, 1.0)
    return image.reshape(height, width, 3)
