"""The sketch-to-latent encoder of Sketch2Shape: a sketch -> a DeepSDF latent code.

    model = from_config(config.encoder, config.model.latent_dim)
    params = init_params(model, key, resolution)
    z = encode(model, params, sketches)        # uint8 / [0, 1] sketches (B, H, W) -> (B, L)

The network is the Siamese encoder's ResNet-18-style tower (sdfjax.models.siamese.Tower:
GroupNorm, so it is one pure function in training and at inference) whose last linear
map gives the L latent coordinates, not normalised: the trained latents are its
regression targets (sdfjax.train.encoder).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sdfjax.models import siamese as siamese_lib


def from_config(encoder_config, latent_dim: int) -> siamese_lib.Tower:
    return siamese_lib.Tower(width=encoder_config.width, stage_blocks=tuple(encoder_config.stage_blocks),
                             embedding_dim=latent_dim, normalize=False,
                             dtype=siamese_lib.DTYPES[encoder_config.compute_dtype])


def init_params(model: siamese_lib.Tower, key: jax.Array, resolution: int):
    return model.init(key, jnp.zeros((1, resolution, resolution, 3), jnp.float32))


def encode(model: siamese_lib.Tower, params, sketches: jax.Array) -> jax.Array:
    """Latents (B, L) of sketches (B, H, W): uint8 in [0, 255] or float in [0, 1], black lines on white."""
    return model.apply(params, siamese_lib.sketch_input(sketches))
