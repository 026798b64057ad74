"""The DeepSDF decoder f(z, x) -> sdf (Park et al. 2019, Sec. 4 and the chairs spec).

    decoder = Decoder()                                     # 8 x 512, skip at layer 4
    params = decoder.init(key, z, xyz)                      # z (..., 256), xyz (..., 3)
    sdf = decoder.apply(params, z, xyz)                     # (...,) in (-1, 1)
    sdf = decoder.apply(params, z, xyz, train=True, rngs={"dropout": key})

`z` broadcasts against `xyz`'s leading axes, so one code per shape serves all of its
points: z (B, 1, L) with xyz (B, S, 3). Coordinates are in the normalised frame.

Layers follow DeepSDF's released `deep_sdf_decoder.py`: hidden layer i takes the output
of layer i-1, and before each layer in `skip_layers` the network input [z, x] is
concatenated again; the layer before a skip outputs `hidden_dim - input_dim` so the
concatenation is `hidden_dim` wide. Weight normalisation (Salimans & Kingma 2016) on the
hidden layers is w = g * v / ||v|| per output unit, with g initialised to ||v|| as
PyTorch's `weight_norm` does, so at initialisation w = v. Initial v and biases follow
PyTorch's `nn.Linear` (uniform in +-1/sqrt(fan_in)).

The latent's share of the first layer and of each skip layer is computed at z's own
shape, z @ W_z, and broadcast onto the points: with z (B, 1, L) and xyz (B, S, 3) it is
B products instead of B x S (fitting's folded decoder does the same), and autodiff sums
its gradient over the scene's points. The result equals the concatenated product
[z, x] @ W to rounding.

`compute_dtype="bfloat16"` feeds the hidden layers' matmuls bf16 inputs with float32
accumulation, forward and backward (`matmul`'s custom VJP: the activation and weight
gradients are bf16 x bf16 -> f32 products too); parameters, the network input's
products (latent and xyz columns) and everything else stay float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sdfjax import parallel

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _torch_linear_init(fan_in: int):
    bound = 1.0 / np.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def matmul(x: jax.Array, w: jax.Array, compute_dtype) -> jax.Array:
    """x @ w with inputs cast to compute_dtype and float32 accumulation and result.

    In bfloat16 the backward products are bf16 x bf16 -> f32 as well (`_low_precision_matmul`);
    plain autodiff of the forward product would form them from the float32 cotangent.
    """
    if jnp.dtype(compute_dtype) == jnp.float32:
        return jnp.matmul(x, w, preferred_element_type=jnp.float32)
    return _low_precision_matmul(x, w, compute_dtype)


NARROW = 8  # input blocks at most this wide (xyz) are multiplied as broadcast sums, not as products


def narrow_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x (..., K) @ w (K, N) in float32 as a sum of K broadcast products, for small K (xyz: K = 3).

    A K = 3 product is a pass of its own over the (..., N) output (and two more backward) at a
    few GFLOP/s; as elementwise work XLA fuses it into the bias, ReLU and dropout around it,
    and its weight gradient becomes a reduction.
    """
    x = x.astype(jnp.float32)
    out = x[..., 0:1] * w[0]
    for k in range(1, x.shape[-1]):
        out = out + x[..., k:k + 1] * w[k]
    return out


def input_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w in float32 for a block of the network's input: `narrow_matmul` up to `NARROW` columns."""
    if x.shape[-1] <= NARROW:
        return narrow_matmul(x, w)
    return matmul(x.astype(jnp.float32), w, jnp.float32)


def column_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x (..., K) @ w (K, 1) in float32 as a row sum: the output layer's one column, whose
    backward product (an outer product writing (..., K)) then fuses into the ReLU mask."""
    return jnp.sum(x.astype(jnp.float32) * w[:, 0], axis=-1, keepdims=True)


def _product(x, w, dtype):
    return jnp.matmul(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _low_precision_matmul(x: jax.Array, w: jax.Array, dtype) -> jax.Array:
    return _product(x, w, dtype)


def _low_precision_matmul_fwd(x, w, dtype):
    return _product(x, w, dtype), (x.astype(dtype), w.astype(dtype))


def _low_precision_matmul_bwd(dtype, residuals, ct):
    x, w = residuals  # already in dtype
    ct = ct.astype(dtype)
    dx = jnp.matmul(ct, w.T, preferred_element_type=jnp.float32)
    lead = tuple(range(x.ndim - 1))
    dw = jnp.tensordot(x, ct, axes=(lead, lead), preferred_element_type=jnp.float32)
    return dx, dw


_low_precision_matmul.defvjp(_low_precision_matmul_fwd, _low_precision_matmul_bwd)


def normalized_weight(v: jax.Array, g: jax.Array) -> jax.Array:
    """w = g * v / ||v||, the norm per output unit (a column of v; Salimans & Kingma 2016, Eq. 2)."""
    return v * (g / jnp.linalg.norm(v, axis=0))


class LayerParams(nn.Module):
    """One layer's parameters, PyTorch `nn.Linear`-initialised: `v` (fan_in, features), `bias` and, weight-normalised,
    `g` = ||v|| per output unit. Returns the effective weight w = g * v / ||v|| (or v) and the bias."""

    fan_in: int
    features: int
    weight_norm: bool = True

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        init = _torch_linear_init(self.fan_in)
        v = self.param("v", init, (self.fan_in, self.features))
        bias = self.param("bias", init, (self.features,))
        if not self.weight_norm:
            return v, bias
        g = self.param("g", lambda _: jnp.linalg.norm(v, axis=0))
        return normalized_weight(v, g), bias


def split_layer(w: jax.Array, b: jax.Array, sees_input: bool, latent_dim: int, input_width: int) -> dict:
    """One layer's weight (rows: [hidden, latent, xyz features], as the network's input is concatenated) split by
    input block: {"w_h" (absent on layer 0), "w_z", "w_x" (on layers that see the input), "b"}."""
    if not sees_input:
        return {"w_h": w, "b": b}
    h_width = w.shape[0] - input_width
    layer = {"w_z": w[h_width:h_width + latent_dim], "w_x": w[h_width + latent_dim:], "b": b}
    if h_width:
        layer["w_h"] = w[:h_width]
    return layer


def latent_terms(layers: Sequence[dict], z: jax.Array) -> list[jax.Array | None]:
    """Per layer, z @ W_z + b for the layers that see the input (None for the others), at z's own shape (..., L):
    the latent's share of a layer is the same for every point of a shape, so it is computed once per shape."""
    return [z @ layer["w_z"] + layer["b"] if "w_z" in layer else None for layer in layers]


def forward(layers: Sequence[dict], terms: Sequence[jax.Array | None], features: jax.Array, hidden_matmul,
            activation=jax.nn.relu, dropout_fn=None) -> jax.Array:
    """f(z, x): DeepSDF's MLP on split layers (`split_layer`), the one forward pass of training, fitting and rendering.

    `terms` are `latent_terms` broadcasting against features (..., P, F) (the xyz features); `hidden_matmul(h, w)`
    multiplies hidden activations (training: `matmul` in the compute dtype; fitting: a frozen product); the
    network's input blocks and the one-column output layer are float32 (`input_matmul`, `column_matmul`).
    `dropout_fn(h, i)` drops units of layer i's output (training). Returns (..., P) signed distances in (-1, 1).
    """
    h = None
    for i, layer in enumerate(layers[:-1]):
        parts = [] if h is None else [hidden_matmul(h, layer["w_h"])]
        if "w_x" in layer:
            parts.append(input_matmul(features, layer["w_x"]))
        parts.append(terms[i] if terms[i] is not None else layer["b"])
        pre = parts[0]
        for part in parts[1:]:  # hidden, xyz, then latent columns: one order of sums for every caller
            pre = pre + part
        h = activation(pre)
        if dropout_fn is not None:
            h = dropout_fn(h, i)
    return jnp.tanh((column_matmul(h, layers[-1]["w_h"]) + layers[-1]["b"])[..., 0])


def _mix32(x: jax.Array) -> jax.Array:
    """A bijective avalanche of uint32 words (the "lowbias32" integer hash: xor-shift, multiply, twice)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def dropout_bits(key: jax.Array, n: int) -> jax.Array:
    """n uint32 words for dropout masks: a counter-based hash of (index, two 32-bit words drawn from `key`).

    The generator's own bits (threefry) cost as much as a 512 x 512 layer's product on a CPU
    (benchmarks/train_step measures both); two rounds of an integer hash over a counter cost
    a fraction of that. Word i is mix(mix(i * phi + s0) + s1): the first
    seed alone would make two keys' masks shifted copies of one another, the second breaks that.
    Good enough for dropout (unbiased and uncorrelated bits, tested), not for cryptography.
    """
    return hashed_bits(jax.random.bits(key, (2,), jnp.uint32), n)


GOLDEN = 0x9E3779B9  # 2^32 / phi, odd: i * GOLDEN spreads consecutive counters over the words


def hashed_bits(seeds: jax.Array, n: int) -> jax.Array:
    """(n,) uint32: mix(mix(i * GOLDEN + seeds[0]) + seeds[1]) for i < n (see `dropout_bits`)."""
    counter = jax.lax.iota(jnp.uint32, n) * jnp.uint32(GOLDEN)
    return _mix32(_mix32(counter + seeds[0]) + seeds[1])


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout whose mask uses 16 hashed bits per unit (`dropout_bits`).

    Each 32-bit word decides two units: a unit is kept when its 16-bit half is
    >= round(rate * 2^16), i.e. with probability 1 - rate to within 2^-17.
    """
    n = x.size
    words = dropout_bits(key, (n + 1) // 2)
    halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:n].reshape(x.shape)
    keep = halves >= jnp.uint16(round(rate * 65536))
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def fourier_features(xyz: jax.Array, num_frequencies: int) -> jax.Array:
    """[x, sin(2^k pi x), cos(2^k pi x)] for k < num_frequencies (NeRF's positional encoding)."""
    if num_frequencies == 0:
        return xyz
    scaled = xyz[..., None, :] * (2.0 ** jnp.arange(num_frequencies) * jnp.pi)[:, None]
    scaled = scaled.reshape(*xyz.shape[:-1], -1)
    return jnp.concatenate([xyz, jnp.sin(scaled), jnp.cos(scaled)], axis=-1)


@jax.custom_jvp
def relu_smooth_grad(x: jax.Array, beta: float) -> jax.Array:
    """ReLU with ReLU's value and derivative, but softplus_beta's second derivative.

    A ReLU network's gradient in x is piecewise constant in its inputs and latent, so
    normals by autodiff (grad_x f) carry no derivative in z. Here the derivative is the
    step function plus sigmoid(beta x) - sg(sigmoid(beta x)): equal to ReLU's, so
    values and normals are exact, while differentiating it again gives softplus_beta's
    curvature beta s (1 - s) (IGR and SAL use softplus with beta = 100 for the same reason).
    """
    return jax.nn.relu(x)


@relu_smooth_grad.defjvp
def _relu_smooth_grad_jvp(primals, tangents):
    x, beta = primals
    dx, _ = tangents
    smooth = jax.nn.sigmoid(beta * x)
    step = (x > 0).astype(x.dtype)
    return jax.nn.relu(x), (step + smooth - jax.lax.stop_gradient(smooth)) * dx


class Decoder(nn.Module):
    """DeepSDF's auto-decoder MLP; defaults are the chairs spec (1,843,195 parameters)."""

    latent_dim: int = 256
    hidden_dim: int = 512
    num_layers: int = 8
    skip_layers: Sequence[int] = (4,)
    dropout_rate: float = 0.2
    weight_norm: bool = True
    compute_dtype: str = "float32"
    fourier_frequencies: int = 0
    relu_grad_beta: float = 0.0  # > 0: ReLU with softplus_beta's derivative (differentiable normals; rendering)

    @nn.compact
    def __call__(self, z: jax.Array, xyz: jax.Array, train: bool = False) -> jax.Array:
        features = fourier_features(xyz.astype(jnp.float32), self.fourier_frequencies)
        z = z.astype(jnp.float32)
        z = z.reshape((1,) * (features.ndim - z.ndim) + z.shape)  # broadcastable, never broadcast
        layers = []
        for i, (fan_in, width) in enumerate(self.layer_shapes()):
            hidden = i < self.num_layers
            w, b = LayerParams(fan_in, width, self.weight_norm and hidden, name=f"layer{i}")()
            layers.append(split_layer(w, b, i == 0 or i in self.skip_layers, self.latent_dim, self.input_width))
        dropout_fn = None
        if self.dropout_rate > 0 and train:
            keys = [self.make_rng("dropout") for _ in range(self.num_layers)]
            dropout_fn = lambda h, i: dropout(h, self.dropout_rate, keys[i])  # noqa: E731
        beta = self.relu_grad_beta
        activation = (lambda h: relu_smooth_grad(h, beta)) if beta > 0 else jax.nn.relu  # noqa: E731
        hidden_matmul = partial(matmul, compute_dtype=DTYPES[self.compute_dtype])
        return forward(layers, latent_terms(layers, z), features, hidden_matmul, activation, dropout_fn)

    @property
    def input_width(self) -> int:
        """Width of the network's input [z, xyz features]."""
        return self.latent_dim + 3 * (1 + 2 * self.fourier_frequencies)

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(fan_in, outputs) of each layer: the layer before a skip outputs hidden_dim - input_width, so the skip
        layer's input [h, z, features] is hidden_dim wide (DeepSDF)."""
        shapes, previous = [], 0
        for i in range(self.num_layers):
            width = self.hidden_dim - self.input_width if i + 1 in self.skip_layers else self.hidden_dim
            shapes.append((previous + (self.input_width if i == 0 or i in self.skip_layers else 0), width))
            previous = width
        return shapes + [(previous, 1)]


def from_config(model_config, platform: str | None = None) -> Decoder:
    """The decoder `model_config` describes, its "auto" compute dtype chosen for `platform` (default: this
    backend; sdfjax.parallel.fast_compute_dtype)."""
    return Decoder(
        latent_dim=model_config.latent_dim,
        hidden_dim=model_config.hidden_dim,
        num_layers=model_config.num_layers,
        skip_layers=tuple(model_config.skip_layers),
        dropout_rate=model_config.dropout_rate,
        weight_norm=model_config.weight_norm,
        compute_dtype=parallel.resolve_compute_dtype(model_config.compute_dtype, platform),
        fourier_frequencies=model_config.get("fourier_frequencies", 0),
    )


def init_params(decoder: Decoder, key: jax.Array):
    return decoder.init(key, jnp.zeros((1, decoder.latent_dim)), jnp.zeros((1, 3)))


def fold_weight_norm(params):
    """Params of the same decoder built with `weight_norm=False`: each weight-normalised layer's
    `normalized_weight(v, g)` as its `v`, without `g`.

    `decoder.clone(weight_norm=False).apply(fold_weight_norm(params), ...)` equals
    `decoder.apply(params, ...)`; differentiating through this function once carries the
    gradients of w back to v and g, so a step over many chunks of points normalises once.
    """
    def fold(layer):
        if "g" not in layer:
            return layer
        return {"v": normalized_weight(layer["v"], layer["g"]), "bias": layer["bias"]}

    return {"params": {name: fold(layer) for name, layer in params["params"].items()}}


def count_params(params) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
