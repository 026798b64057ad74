"""A trained DeepSDF decoder folded for fitting latents: the same function, less work per point.

    folded = fold_decoder(decoder, params)                   # once per fit
    sdf = folded_sdf(folded, latent_biases(folded, z), xyz)  # equals decoder.apply(params, z, xyz)

With the decoder frozen, three things are computed once per fit or per shape instead
of once per point:

  * weight norm is folded: w = g * v / ||v|| (and the cast to the compute dtype);
  * the latent's share of the first layer and of each skip layer, z @ W_z + b, is the
    same for every point of a shape: it becomes a per-shape bias, so those layers
    multiply only the xyz (or hidden) columns for each point;
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
    """Effective weights of a trained decoder, split by input (latent / xyz / hidden).

    Returns {"layers": [...]} with, per layer, `w_h` (hidden columns, compute dtype;
    absent for layer 0), `w_z` and `w_x` (latent and xyz-feature columns, float32; only
    on layers that see the network input) and `b`.
    """
    dtype = decoder_lib.DTYPES[decoder.compute_dtype]
    p = decoder_lib.fold_weight_norm(params)["params"] if decoder.weight_norm else params["params"]
    latent_dim = decoder.latent_dim
    layers = []
    for i in range(decoder.num_layers + 1):
        hidden = i < decoder.num_layers
        w = p[f"layer{i}"]["v"]
        layer = {"b": p[f"layer{i}"]["bias"]}
        if i == 0:
            layer.update(w_z=w[:latent_dim], w_x=w[latent_dim:])
        elif i in decoder.skip_layers:  # input order: [h, z, features]
            h_width = w.shape[0] - _input_width(decoder)
            layer.update(w_h=w[:h_width].astype(dtype), w_z=w[h_width:h_width + latent_dim],
                         w_x=w[h_width + latent_dim:])
        else:
            layer["w_h"] = w.astype(dtype if hidden else jnp.float32)
        layers.append(layer)
    return {"layers": layers}


def _input_width(decoder: decoder_lib.Decoder) -> int:
    f = decoder.fourier_frequencies
    return decoder.latent_dim + 3 * (1 + 2 * f)


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
    return [z @ layer["w_z"] + layer["b"] if "w_z" in layer else None for layer in folded["layers"]]


def folded_sdf(folded: dict, biases: Sequence[jax.Array | None], xyz: jax.Array,
               fourier_frequencies: int = 0) -> jax.Array:
    """f(z, xyz) of the folded decoder; equals `Decoder.apply` (eval mode) to rounding.

    `biases` come from `latent_biases` (shape (..., width) broadcasting against xyz's
    leading axes); xyz (..., 3) in the normalised frame. Returns (...,) signed distances.
    """
    features = decoder_lib.fourier_features(xyz.astype(jnp.float32), fourier_frequencies)
    layers = folded["layers"]
    h = None
    for i, layer in enumerate(layers):
        if i == 0:
            pre = decoder_lib.input_matmul(features, layer["w_x"]) + biases[0][..., None, :]
        elif biases[i] is not None:
            pre = (frozen_matmul(h, layer["w_h"]) + decoder_lib.input_matmul(features, layer["w_x"])
                   + biases[i][..., None, :])
        elif i < len(layers) - 1:
            pre = frozen_matmul(h, layer["w_h"]) + layer["b"]
        else:
            return jnp.tanh((decoder_lib.column_matmul(h, layer["w_h"]) + layer["b"])[..., 0])
        h = jax.nn.relu(pre)
    raise AssertionError("unreachable")
