"""A trained DeepSDF decoder folded for fitting latents: the same forward pass, less work per point.

    folded = fold_decoder(decoder, params)                   # once per fit
    sdf = folded_sdf(folded, latent_biases(folded, z), xyz)  # equals decoder.apply(params, z, xyz)

The decoder's own forward pass (sdfjax.models.decoder.forward) runs on the model's own
parameters, with three things computed once per fit or per shape instead of once per
point, since the decoder is frozen:

  * weight norm is folded: w = g * v / ||v|| (and the cast to the compute dtype);
  * the latent's share of the first layer and of each skip layer, z @ W_z + b, is the
    same for every point of a shape: `latent_biases` computes it once per shape, so a
    step that scans chunks of points never recomputes it;
  * in bfloat16 mode both the forward products and the backward product that carries
    the gradient to the activations take bf16 inputs with float32 accumulation
    (`frozen_matmul`'s custom VJP), and no weight gradient is formed at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from sdfjax.models import decoder as decoder_lib


def fold_decoder(decoder: decoder_lib.Decoder, params) -> dict:
    """The decoder's layers as `decoder_lib.split_layer` gives them, weight norm folded, the hidden columns
    `w_h` of the hidden layers in the compute dtype: {"layers": [...]}."""
    dtype = decoder_lib.DTYPES[decoder.compute_dtype]
    p = decoder_lib.fold_weight_norm(params)["params"] if decoder.weight_norm else params["params"]
    layers = []
    for i in range(decoder.num_layers + 1):
        layer = decoder_lib.split_layer(p[f"layer{i}"]["v"], p[f"layer{i}"]["bias"], i == 0 or i in decoder.skip_layers,
                                        decoder.latent_dim, decoder.input_width)
        if "w_h" in layer and i < decoder.num_layers:
            layer["w_h"] = layer["w_h"].astype(dtype)
        layers.append(layer)
    return {"layers": layers}


@jax.custom_vjp
def frozen_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w for a constant w already in the compute dtype; float32 accumulation both ways."""
    return jnp.matmul(x.astype(w.dtype), w, preferred_element_type=jnp.float32)


def _frozen_matmul_fwd(x, w):
    return frozen_matmul(x, w), w


def _frozen_matmul_bwd(w, ct):
    dx = jnp.matmul(ct.astype(w.dtype), w.T, preferred_element_type=jnp.float32)
    return dx, jnp.zeros_like(w)  # the decoder is frozen: this cotangent is never used


frozen_matmul.defvjp(_frozen_matmul_fwd, _frozen_matmul_bwd)


def latent_biases(folded: dict, z: jax.Array) -> list[jax.Array | None]:
    """Per layer, z @ W_z + b for layers that see the input (None for the others). z (..., L)."""
    return decoder_lib.latent_terms(folded["layers"], z)


def folded_sdf(folded: dict, biases: Sequence[jax.Array | None], xyz: jax.Array,
               fourier_frequencies: int = 0) -> jax.Array:
    """f(z, xyz) of the folded decoder; equals `Decoder.apply` (eval mode) to rounding.

    `biases` come from `latent_biases` (shape (..., width) broadcasting against xyz's
    leading axes); xyz (..., P, 3) in the normalised frame. Returns (..., P) signed distances.
    """
    features = decoder_lib.fourier_features(xyz.astype(jnp.float32), fourier_frequencies)
    terms = [None if b is None else b[..., None, :] for b in biases]
    return decoder_lib.forward(folded["layers"], terms, features, frozen_matmul)
