"""Rendering DeepSDF latent shapes: the decoder as a traceable SDF, normal maps, picture grids.

    sdf_fn = decoder_sdf(decoder)                   # sdf_fn({"decoder": params, "z": z}, xyz)
    images = render_normal_maps(sdf_fn, params, cameras, settings)   # (V, H, W, 3) in [0, 1]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sdfjax.render import camera as camera_lib
from sdfjax.render import tracer


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


def render_normal_maps(sdf_fn, params, cameras, settings: tracer.TraceSettings) -> np.ndarray:
    """(V, H, W, 3) float images (n + 1) / 2 on white."""
    out = jax.jit(lambda p: render_views(sdf_fn, p, cameras, settings))(params)
    h, w = cameras[0].height, cameras[0].width
    return np.asarray(jax.vmap(lambda n, m: tracer.normal_image(n, m, h, w))(out["normals"], out["hit"]))


def to_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def picture_grid(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """A white-separated grid of equally sized images (uint8 or [0, 1] float; grey or RGB)."""
    def rgb(im):
        im = to_uint8(im)
        return np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im

    rows = [[rgb(im) for im in row] for row in rows]
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            grid[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = im
    return grid
