"""Fitting latent codes to SDF samples with the decoder frozen (DeepSDF Sec. 4.2, Eq. 10).

    folded = fold_decoder(decoder, params)                     # once per fit
    result = fit_latents(folded, samples, initial, fit_config)  # many shapes at once

For each shape, z_hat = argmin_z sum_j L(f(z, x_j), s_j) + reg * ||z||^2 over its SDF
samples, by Adam (DESIGN.md "Reconstruction": 800 steps, lr 5e-3 x0.1 at step 400,
8,000 samples per step, half positive and half negative, loss = clamped L1 +
1e-4 * mean(z^2)). One jitted step is `vmap`-ed over shapes and restarts, each with its
own Adam state, and sharded over devices along the shape axis.

Speed. With the decoder frozen, three things are computed once per fit or per shape
instead of once per point:

  * weight norm is folded: w = g * v / ||v|| (and the cast to the compute dtype);
  * the latent's share of the first layer and of each skip layer, z @ W_z + b, is the
    same for every point of a shape: it becomes a per-shape bias, so those layers
    multiply only the xyz (or hidden) columns for each point;
  * in bfloat16 mode both the forward products and the backward product that carries
    the gradient to the activations take bf16 inputs with float32 accumulation
    (`frozen_matmul`'s custom VJP), and no weight gradient is formed at all.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdfjax.models import decoder as decoder_lib
from sdfjax.train import step as step_lib


# --- the frozen, folded decoder -------------------------------------------------------

def _weight(layer_params: dict, weight_norm: bool) -> jax.Array:
    v = layer_params["v"]
    if not weight_norm or "g" not in layer_params:
        return v
    return v * (layer_params["g"] / jnp.linalg.norm(v, axis=0))


def fold_decoder(decoder: decoder_lib.Decoder, params) -> dict:
    """Effective weights of a trained decoder, split by input (latent / xyz / hidden).

    Returns {"layers": [...]} with, per layer, `w_h` (hidden columns, compute dtype;
    absent for layer 0), `w_z` and `w_x` (latent and xyz-feature columns, float32; only
    on layers that see the network input) and `b`.
    """
    dtype = decoder_lib.DTYPES[decoder.compute_dtype]
    p = params["params"]
    latent_dim = decoder.latent_dim
    layers = []
    for i in range(decoder.num_layers + 1):
        hidden = i < decoder.num_layers
        w = _weight(p[f"layer{i}"], decoder.weight_norm and hidden)
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
            pre = features @ layer["w_x"] + biases[0][..., None, :]
        elif biases[i] is not None:
            pre = frozen_matmul(h, layer["w_h"]) + features @ layer["w_x"] + biases[i][..., None, :]
        elif i < len(layers) - 1:
            pre = frozen_matmul(h, layer["w_h"]) + layer["b"]
        else:
            return jnp.tanh((h @ layer["w_h"] + layer["b"])[..., 0])
        h = jax.nn.relu(pre)
    raise AssertionError("unreachable")


# --- fitting ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FitSettings:
    """DeepSDF's reconstruction defaults; `from_config(config.fit, config.train)`."""

    num_iterations: int = 800
    lr: float = 5e-3
    lr_decay_at: int = 400
    lr_decay_factor: float = 0.1
    samples_per_step: int = 8000
    clamp_distance: float = 0.1
    code_reg_weight: float = 1e-4
    fourier_frequencies: int = 0

    @classmethod
    def from_config(cls, config) -> "FitSettings":
        f = config.fit
        return cls(num_iterations=f.num_iterations, lr=f.lr, lr_decay_at=f.lr_decay_at,
                   lr_decay_factor=f.lr_decay_factor, samples_per_step=f.samples_per_step,
                   clamp_distance=config.train.clamp_distance, code_reg_weight=f.code_reg_weight,
                   fourier_frequencies=config.model.get("fourier_frequencies", 0))

    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(optax.piecewise_constant_schedule(self.lr, {self.lr_decay_at: self.lr_decay_factor}))


@dataclasses.dataclass
class ShapeSamples:
    """Padded SDF samples of S shapes, positives first: rows [0, num_positive) have sdf > 0.

    xyz_sdf (S, N_max, 4) float32; num_positive (S,) and num_samples (S,) int32.
    """

    xyz_sdf: np.ndarray
    num_positive: np.ndarray
    num_samples: np.ndarray

    @classmethod
    def from_list(cls, samples: Sequence[np.ndarray]) -> "ShapeSamples":
        if not samples:
            raise ValueError("no shapes to fit")
        n_max = max(len(s) for s in samples)
        out = np.zeros((len(samples), n_max, 4), np.float32)
        num_positive = np.zeros(len(samples), np.int32)
        for i, s in enumerate(samples):
            if len(s) == 0:
                raise ValueError(f"shape {i} has no SDF samples")
            order = np.argsort(s[:, 3] <= 0, kind="stable")
            out[i, :len(s)] = s[order]
            num_positive[i] = int(np.sum(s[:, 3] > 0))
        return cls(out, num_positive, np.asarray([len(s) for s in samples], np.int32))

    def pad_to(self, count: int) -> "ShapeSamples":
        """Repeats the last shape so there are `count` (e.g. a multiple of the devices)."""
        extra = count - len(self.num_samples)
        if extra <= 0:
            return self
        rep = lambda a: np.concatenate([a, np.repeat(a[-1:], extra, axis=0)])  # noqa: E731
        return ShapeSamples(rep(self.xyz_sdf), rep(self.num_positive), rep(self.num_samples))


def draw_samples(key: jax.Array, xyz_sdf: jax.Array, num_positive: jax.Array, num_samples: jax.Array,
                 count: int) -> jax.Array:
    """`count` samples of one shape, half positive and half negative (DeepSDF), with replacement.

    When a shape has only one sign (e.g. a partial observation), all come from what it has.
    """
    half = count // 2
    has_both = (num_positive > 0) & (num_positive < num_samples)
    pos_hi = jnp.where(has_both, num_positive, num_samples)
    neg_lo = jnp.where(has_both, num_positive, 0)
    k1, k2 = jax.random.split(key)
    pos = jax.random.randint(k1, (half,), 0, pos_hi)
    neg = jax.random.randint(k2, (count - half,), neg_lo, num_samples)
    return xyz_sdf[jnp.concatenate([pos, neg])]


def _shape_loss(folded, z, points, settings: FitSettings):
    pred = folded_sdf(folded, latent_biases(folded, z[None]), points[None, :, :3],
                      settings.fourier_frequencies)[0]
    data = step_lib.sdf_loss(pred, points[:, 3], settings.clamp_distance)
    return data + settings.code_reg_weight * jnp.mean(z**2), data


def make_fit_step(settings: FitSettings):
    """step(folded, state, samples, key) -> (state, loss (S, K)) for S shapes x K restarts.

    state = {"z": (S, K, L), "opt": Adam state of the same leading shape, "step": ()}.
    Each shape draws its own points per step; its K restarts share them.
    """
    optimizer = settings.optimizer()

    def one_shape(folded, z, opt, xyz_sdf, num_positive, num_samples, key):
        points = draw_samples(key, xyz_sdf, num_positive, num_samples, settings.samples_per_step)

        def one_restart(z, opt):
            (loss, _), grad = jax.value_and_grad(_shape_loss, argnums=1, has_aux=True)(folded, z, points, settings)
            updates, opt = optimizer.update(grad, opt, z)
            return optax.apply_updates(z, updates), opt, loss

        return jax.vmap(one_restart)(z, opt)

    def step(folded, state, samples, key):
        keys = jax.random.split(jax.random.fold_in(key, state["step"]), samples["xyz_sdf"].shape[0])
        z, opt, loss = jax.vmap(one_shape, in_axes=(None, 0, 0, 0, 0, 0, 0))(
            folded, state["z"], state["opt"], samples["xyz_sdf"], samples["num_positive"],
            samples["num_samples"], keys)
        return {"z": z, "opt": opt, "step": state["step"] + 1}, loss

    return step


def init_fit_state(settings: FitSettings, initial: jax.Array) -> dict:
    """Adam state per shape and restart for initial latents (S, K, L)."""
    opt = jax.vmap(jax.vmap(settings.optimizer().init))(initial)
    return {"z": initial, "opt": opt, "step": jnp.zeros((), jnp.int32)}


def final_losses(folded, z: jax.Array, samples: dict, settings: FitSettings, key: jax.Array) -> jax.Array:
    """Fitting loss (S, K) of each restart on one fixed draw of each shape's samples."""
    def one_shape(z, xyz_sdf, num_positive, num_samples, key):
        points = draw_samples(key, xyz_sdf, num_positive, num_samples, settings.samples_per_step)
        return jax.vmap(lambda zk: _shape_loss(folded, zk, points, settings)[0])(z)

    keys = jax.random.split(key, z.shape[0])
    return jax.vmap(one_shape)(z, samples["xyz_sdf"], samples["num_positive"], samples["num_samples"], keys)


@dataclasses.dataclass
class FitResult:
    latents: np.ndarray  # (S, L): the best restart of each shape
    losses: np.ndarray  # (S,): its final fitting loss
    restart_losses: np.ndarray  # (S, K)
    loss_curve: np.ndarray  # (num_iterations, S): mean over restarts of each step's loss


@functools.lru_cache(maxsize=16)
def _compiled(settings: FitSettings, mesh):
    """The jitted init, step and final-loss functions (compiled once per settings and mesh)."""
    from sdfjax import parallel

    sharded, replicated = parallel.data_sharded(mesh), parallel.replicated(mesh)
    init_fn = lambda z: init_fit_state(settings, z)  # noqa: E731
    abstract = jax.eval_shape(init_fn, jax.ShapeDtypeStruct((mesh.size, 1, 1), jnp.float32))
    state_sharding = jax.tree.map(lambda _: sharded, abstract)
    state_sharding["step"] = replicated
    data_sharding = {"xyz_sdf": sharded, "num_positive": sharded, "num_samples": sharded}
    init = jax.jit(init_fn, out_shardings=state_sharding)
    step = jax.jit(make_fit_step(settings), donate_argnums=1,
                   in_shardings=(replicated, state_sharding, data_sharding, replicated),
                   out_shardings=(state_sharding, sharded))
    evaluate = jax.jit(lambda f, z, d, k: final_losses(f, z, d, settings, k),
                       in_shardings=(replicated, sharded, data_sharding, replicated), out_shardings=sharded)
    return init, step, evaluate


def fit_latents(folded: dict, samples: ShapeSamples, initial: np.ndarray, settings: FitSettings,
                key: jax.Array, mesh=None, progress=None) -> FitResult:
    """Fits initial latents (S, K, L) of S shapes with K restarts each; keeps the best restart.

    Shapes are split over the devices of `mesh` (default: all devices); the shape count is
    padded to a multiple of the device count. `progress(steps_done)` is called per step.
    """
    from sdfjax import parallel

    mesh = mesh or parallel.make_mesh()
    num_shapes = len(samples.num_samples)
    padded = -(-num_shapes // mesh.size) * mesh.size
    samples = samples.pad_to(padded)
    initial = np.concatenate([initial, np.repeat(initial[-1:], padded - num_shapes, axis=0)])
    sharded, replicated = parallel.data_sharded(mesh), parallel.replicated(mesh)
    data = {k: jax.device_put(getattr(samples, k), sharded) for k in ("xyz_sdf", "num_positive", "num_samples")}
    folded = jax.device_put(folded, replicated)
    init, step, evaluate = _compiled(dataclasses.replace(settings, num_iterations=0), mesh)
    state = init(jax.device_put(jnp.asarray(initial, jnp.float32), sharded))
    fit_key, eval_key = jax.random.split(key)
    curve = []
    for i in range(settings.num_iterations):
        state, loss = step(folded, state, data, fit_key)
        curve.append(loss)
        if progress is not None:
            progress(i + 1)
    losses = np.asarray(evaluate(folded, state["z"], data, eval_key))
    z = np.asarray(state["z"])
    best = np.argmin(losses, axis=1)
    curve = np.stack([np.asarray(c).mean(axis=1) for c in curve]) if curve else np.zeros((0, padded))
    return FitResult(latents=z[np.arange(padded), best][:num_shapes],
                     losses=losses[np.arange(padded), best][:num_shapes],
                     restart_losses=losses[:num_shapes], loss_curve=curve[:, :num_shapes])


# --- initialisation -------------------------------------------------------------------

INIT_CHOICES = "normal | mean | random | prior | <row index>"


def initial_latents(init: str, num_shapes: int, restarts: int, latent_dim: int, trained: np.ndarray,
                    rng: np.random.Generator, init_std: float = 0.01,
                    prior_rows: Sequence[int] | None = None) -> np.ndarray:
    """Initial codes (S, K, L), Sketch2Shape's `prior_idx` options plus DeepSDF's default.

      normal   N(0, init_std^2) per dimension (DeepSDF's reconstruct.py, std 0.01);
      mean     the mean of the trained latents;
      random   a draw from the per-dimension normal fitted to the trained latents;
      prior    each shape's own trained latent (`prior_rows`: training shapes only);
      <int>    the trained latent of that row, for every shape.

    Deterministic choices (mean, prior, row) get N(0, init_std^2) noise on restarts
    after the first, so K restarts explore K starting points.
    """
    shape = (num_shapes, restarts, latent_dim)
    noise = rng.normal(0.0, init_std, shape)
    if init == "normal":
        return noise.astype(np.float32)
    if init == "random":
        mu, sigma = trained.mean(axis=0), trained.std(axis=0)
        return (mu + sigma * rng.normal(size=shape)).astype(np.float32)
    if init == "mean":
        base = np.broadcast_to(trained.mean(axis=0), shape)
    elif init == "prior":
        if prior_rows is None:
            raise ValueError("fit.init=prior needs the shapes' own trained latents: use it on the train split")
        base = np.broadcast_to(trained[np.asarray(prior_rows)][:, None, :], shape)
    elif init.lstrip("-").isdigit():
        row = int(init)
        if not 0 <= row < len(trained):
            raise ValueError(f"fit.init={init}: the checkpoint has trained latent rows 0..{len(trained) - 1}")
        base = np.broadcast_to(trained[row], shape)
    else:
        raise ValueError(f"fit.init={init!r}: expected {INIT_CHOICES}")
    noise[:, 0] = 0.0
    return (base + noise).astype(np.float32)
