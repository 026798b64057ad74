"""Rendering DeepSDF latent shapes: the decoder as a traceable SDF, and its normal maps.

    sdf_fn = decoder_sdf(decoder)                   # sdf_fn({"decoder": params, "z": z}, xyz)
    render = views_renderer(sdf_fn, settings)       # jitted once: render(params, origins, directions)
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


def views_renderer(sdf_fn, settings: tracer.TraceSettings):
    """`render(params, origins (V, N, 3), directions (V, N, 3))` -> outputs with a leading view axis, jitted once.

    One compiled program per ray count, whatever the latent and the cameras: what loops over
    latents and views (pictures, the page) call, instead of compiling a closure per call.
    """
    return jax.jit(lambda p, o, d: jax.vmap(lambda oo, dd: tracer.render(sdf_fn, p, oo, dd, settings))(o, d))


def render_normal_maps(render, params, cameras) -> np.ndarray:
    """(V, H, W, 3) float images (n + 1) / 2 on white of same-size `cameras`, traced by `render`, a
    `views_renderer`: a loop over latents or cameras compiles once per ray count, not once per call."""
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
