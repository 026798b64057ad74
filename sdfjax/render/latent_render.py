"""Rendering DeepSDF latent shapes: the decoder as a traceable SDF, and its normal maps.

    sdf_fn = decoder_sdf(decoder)                   # sdf_fn({"decoder": params, "z": z}, xyz)
    render = views_renderer(sdf_fn, settings)       # compiled once: render(params, origins, directions)
    images = render_normal_maps(render, params, cameras)   # (V, H, W, 3) in [0, 1]
    grid = latents_picture(decoder, decoder_params, latents, cameras, settings)  # a row per latent
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sdfjax.render import camera as camera_lib
from sdfjax.render import pictures, tracer


def decoder_sdf(decoder, relu_grad_beta: float = 100.0):
    """sdf_fn(p, xyz (n, 3)) with p = {"decoder": Flax params, "z": (L,) latent}.

    Values and normals are the decoder's; its ReLUs take softplus_beta's second derivative
    (`decoder.relu_smooth_grad`), so that rendered normals have a derivative in z
    (0: plain ReLUs, whose normals are piecewise constant in z).
    """
    decoder = decoder.clone(relu_grad_beta=relu_grad_beta)

    def sdf(p, x):
        return decoder.apply(p["decoder"], p["z"][None], x)
    return sdf


def render_views(sdf_fn, params, cameras, settings: tracer.TraceSettings) -> dict:
    """Renders of several same-size cameras: every output with a leading view axis (V, H*W, ...)."""
    origins, directions = camera_lib.stack_rays(cameras)
    return jax.vmap(lambda o, d: tracer.render(sdf_fn, params, o, d, settings))(origins, directions)


# Rays per traced chunk of `views_renderer`: one 64 x 64 sketch view; larger pictures are several chunks.
RENDER_CHUNK_RAYS = 4096
# A ray that starts outside the unit sphere and points away from it: it never enters, so it finishes at
# once (the padding of a last chunk).
_MISSING_ORIGIN, _MISSING_DIRECTION = np.float32([0.0, 0.0, 4.0]), np.float32([0.0, 0.0, 1.0])


def views_renderer(sdf_fn, settings: tracer.TraceSettings, chunk: int = RENDER_CHUNK_RAYS,
                   marching_only: bool = False):
    """`render(params, origins (V, N, 3), directions (V, N, 3))` -> per-ray outputs of `tracer.render` (hit,
    depth, points, normals, min_sdf, steps, unfinished) as numpy arrays (V, N, ...), for pictures; with
    `marching_only`, those of `tracer.trace` (hit, t, min_sdf, steps, unfinished, ...: no normals, about
    two thirds of the time), for silhouettes.

    The rays are traced `chunk` at a time by one jitted program, the last chunk padded with rays
    that miss: every latent, camera count and resolution shares one compilation, instead of one
    per ray count. Each ray is traced on its own; another batch size only rounds the decoder's
    products differently (a grazing ray may stop elsewhere in its hit band). Not for losses (no
    gradient leaves numpy); those trace their rays in one program.
    """
    trace = tracer.trace if marching_only else tracer.render
    traced = jax.jit(lambda p, o, d: trace(sdf_fn, p, o, d, settings))

    def render(params, origins, directions) -> dict[str, np.ndarray]:
        origins, directions = np.asarray(origins, np.float32), np.asarray(directions, np.float32)
        views, rays = origins.shape[:2]
        total = views * rays
        padding = -total % chunk
        flat_origins = np.concatenate([origins.reshape(total, 3), np.tile(_MISSING_ORIGIN, (padding, 1))])
        flat_directions = np.concatenate([directions.reshape(total, 3), np.tile(_MISSING_DIRECTION, (padding, 1))])
        parts = jax.device_get([traced(params, flat_origins[i:i + chunk], flat_directions[i:i + chunk])
                                for i in range(0, total + padding, chunk)])  # dispatched before waiting
        per_ray = [k for k, v in parts[0].items() if np.ndim(v) and len(v) == chunk]
        return {k: np.concatenate([part[k] for part in parts])[:total].reshape(views, rays, *parts[0][k].shape[1:])
                for k in per_ray}

    return render


def render_normal_maps(render, params, cameras) -> np.ndarray:
    """(V, H, W, 3) float images (n + 1) / 2 on white of same-size `cameras`, traced by `render`, a
    `views_renderer`: a loop over latents, cameras and sizes compiles once, not once per call."""
    origins, directions = camera_lib.stack_rays(cameras)
    out = render(params, origins, directions)
    h, w = cameras[0].height, cameras[0].width
    return np.asarray(jax.vmap(lambda n, m: tracer.normal_image(n, m, h, w))(out["normals"], out["hit"]))


def latents_picture(decoder, decoder_params, latents, cameras, settings: tracer.TraceSettings) -> np.ndarray:
    """uint8 picture grid: one row per latent (L,), one column per camera, normal maps on white."""
    render = views_renderer(decoder_sdf(decoder), settings)
    rows = [list(render_normal_maps(render, {"decoder": decoder_params, "z": jnp.asarray(z)}, cameras))
            for z in latents]
    return pictures.picture_grid(rows)
