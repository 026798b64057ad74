"""Using the trained encoders: batches of images in, embeddings or latents out.

    model, params, meta = sdfjax.trained.load_siamese(workdir)
    embed_sketches = embedder(model, params, "sketch")        # numpy images -> numpy (N, D)
    encode_normals = normal_map_encoder(model, params)        # traced (B, H, W, 3) -> (B, D), differentiable
    predict_latents = latent_predictor(*sdfjax.trained.load_encoder(workdir)[:2])
    z = predict_latents(sketches, view_angles)              # (N, H, W), (N, 2) degrees -> (N, L) latents
"""

from __future__ import annotations

import jax

from sdfjax.geometry import isosurface
from sdfjax.models import latent_encoder
from sdfjax.models import siamese as siamese_lib
from sdfjax.sketch2shape.sketches import grown_lines


def embedder(model, params, modality: str, batch: int = 64):
    """numpy (N, H, W[, 3]) uint8 or [0, 1] images -> (N, D) embeddings, compiled once per image size."""
    fn = jax.jit(lambda images: siamese_lib.embed(model, params, images, modality))
    return isosurface.chunked(fn, batch)


def normal_map_encoder(model, params):
    """images (B, H, W, 3) in [0, 1] -> (B, D): the normal-map tower as a traceable function (for losses)."""
    return lambda images: model.apply(params, siamese_lib.normal_input(images), "normal")


def latent_predictor(model, params, batch: int = 64, line_growth: int = 0):
    """(numpy sketches (N, H, W) uint8 or [0, 1], their views (N, 2): azimuth, elevation in degrees) -> (N, L)
    latents of the sketch-to-latent encoder (an encoder without view input ignores the views), the sketches'
    lines grown by `line_growth` pixels first (config.sketch.encoder_line_growth)."""
    fn = isosurface.chunked(jax.jit(lambda sketches, view_angles: latent_encoder.encode(model, params, sketches,
                                                                                         view_angles)), batch)
    if not line_growth:
        return fn
    return lambda sketches, view_angles: fn(grown_lines(sketches, line_growth), view_angles)
