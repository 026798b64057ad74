"""The sketch-to-latent encoder of Sketch2Shape: a sketch -> a DeepSDF latent code.

    model = from_config(config.encoder, config.model.latent_dim)
    params = init_params(model, key, resolution, view_input=config.encoder.view_input)
    z = encode(model, params, sketches, view_angles)   # sketches (B, H, W) [+ (B, 2) degrees] -> (B, L)

The network is the Siamese encoder's ResNet-18-style tower (sdfjax.models.siamese.Tower:
GroupNorm, so it is one pure function in training and at inference) whose last linear
map gives the L latent coordinates, not normalised: the trained latents are its
regression targets (sdfjax.train.latent_encoder).

With `view_input`, the tower also reads the view the sketch was drawn from: every
caller knows it (the dataset's views, a user PNG's --sketch azimuth and elevation, the
page's camera), and the refinement renders from it anyway. The view enters as four
constant image planes beside the sketch's three (sin and cos of azimuth and of
elevation), so every convolution can condition on it; the parameters say which kind an
encoder is (`takes_views`), and a sketch-only encoder ignores the angles it is given.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sdfjax.models import siamese as siamese_lib

SKETCH_CHANNELS = 3  # the sketch as grey RGB, as the Siamese tower reads it
VIEW_CHANNELS = 4  # sin / cos of azimuth and elevation


def from_config(encoder_config, latent_dim: int) -> siamese_lib.Tower:
    return siamese_lib.Tower(width=encoder_config.width, stage_blocks=tuple(encoder_config.stage_blocks),
                             embedding_dim=latent_dim, normalize=False,
                             dtype=siamese_lib.DTYPES[encoder_config.compute_dtype])


def init_params(model: siamese_lib.Tower, key: jax.Array, resolution: int, view_input: bool = False):
    channels = SKETCH_CHANNELS + (VIEW_CHANNELS if view_input else 0)
    return model.init(key, jnp.zeros((1, resolution, resolution, channels), jnp.float32))


def takes_views(params) -> bool:
    """Whether an encoder's parameters read the sketch's view (its stem has the view planes' channels)."""
    return params["params"]["stem"]["kernel"].shape[2] == SKETCH_CHANNELS + VIEW_CHANNELS


def view_planes(view_angles: jax.Array, height: int, width: int) -> jax.Array:
    """(B, 2) azimuth, elevation in degrees (sdfjax.render.camera.Camera's) -> (B, H, W, 4) constant planes."""
    radians = jnp.deg2rad(jnp.asarray(view_angles, jnp.float32))
    features = jnp.concatenate([jnp.sin(radians), jnp.cos(radians)], axis=-1)
    return jnp.broadcast_to(features[:, None, None, :], (len(features), height, width, VIEW_CHANNELS))


def encoder_input(sketches: jax.Array, view_angles: jax.Array | None = None) -> jax.Array:
    """The tower's input: sketches (B, H, W) (uint8 or [0, 1], black lines on white) as (B, H, W, 3) in
    [-1, 1], followed by the view planes of `view_angles` (B, 2) when given."""
    x = siamese_lib.sketch_input(sketches)
    if view_angles is None:
        return x
    return jnp.concatenate([x, view_planes(view_angles, *x.shape[1:3])], axis=-1)


def encode(model: siamese_lib.Tower, params, sketches: jax.Array, view_angles: jax.Array | None = None) -> jax.Array:
    """Latents (B, L) of sketches (B, H, W): uint8 in [0, 255] or float in [0, 1], black lines on white, drawn
    from `view_angles` (B, 2) (azimuth, elevation, degrees). An encoder that reads views needs them; one that
    does not ignores them."""
    if not takes_views(params):
        return model.apply(params, encoder_input(sketches))
    if view_angles is None:
        raise ValueError("this sketch-to-latent encoder was trained with each sketch's view (encoder.view_input): "
                         "pass view_angles (azimuth, elevation in degrees) with the sketches")
    return model.apply(params, encoder_input(sketches, view_angles))
