"""Fitting latent codes to SDF samples with the decoder frozen (DeepSDF Sec. 4.2, Eq. 10).

    folded = fold_decoder(decoder, params)                     # sdfjax.fit.folded, once per fit
    result = fit_latents(folded, samples, initial, settings)    # many shapes at once

For each shape, z_hat = argmin_z sum_j L(f(z, x_j), s_j) + reg * ||z||^2 over its SDF
samples, by Adam (docs/design.md, "Published numbers": 800 steps, lr 5e-3 x0.1 at step 400,
8,000 samples per step, half positive and half negative, loss = clamped L1 +
1e-4 * mean(z^2)). One jitted step is `vmap`-ed over shapes and restarts, each with its
own Adam state, and sharded over devices along the shape axis.

Speed: the decoder is folded once (sdfjax.fit.folded): weight norm, the latent's share
of the input layers and bf16 products with float32 accumulation in both directions.
On a CPU each shape's points go through the decoder in chunks of at most
`points_per_chunk` (`chunked_data_loss`, sdfjax.chunking), so a layer's activations stay
in cache.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdfjax import chunking, parallel
from sdfjax.fit.folded import folded_sdf, latent_biases
from sdfjax.fit.optimizer import latent_step
from sdfjax.losses import sdf_interval_errors



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
    points_per_chunk: int = chunking.AUTO  # per decoder pass; -1: chunking.CPU_POINTS_PER_CHUNK on a CPU, else one pass
    platform: str | None = None  # whose choice -1 makes ("cpu", "cuda", "tpu"); None: the running backend

    def __post_init__(self):
        chunking.resolve(self.points_per_chunk, "fit")  # refuses a bad value here, not in a trace

    @classmethod
    def from_config(cls, config) -> "FitSettings":
        f = config.fit
        return cls(num_iterations=f.num_iterations, lr=f.lr, lr_decay_at=f.lr_decay_at,
                   lr_decay_factor=f.lr_decay_factor, samples_per_step=f.samples_per_step,
                   clamp_distance=config.train.clamp_distance, code_reg_weight=f.code_reg_weight,
                   fourier_frequencies=config.model.get("fourier_frequencies", 0),
                   points_per_chunk=f.get("points_per_chunk", cls.points_per_chunk))

    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(optax.piecewise_constant_schedule(self.lr, {self.lr_decay_at: self.lr_decay_factor}))


@dataclasses.dataclass
class ShapeSamples:
    """Padded SDF observations of S shapes, positives first: rows [0, num_positive) have hi > 0.

    xyz_bounds (S, N_max, 5) float32: x, y, z and the interval [lo, hi] the shape's SDF is
    known to lie in at that point: lo = hi = sdf for an exact sample (DeepSDF's samples),
    0 <= sdf <= hi for free space seen by a depth camera (sdfjax.fit.partial).
    num_positive (S,) and num_samples (S,) int32.
    """

    xyz_bounds: np.ndarray
    num_positive: np.ndarray
    num_samples: np.ndarray

    @classmethod
    def from_list(cls, samples: Sequence[np.ndarray]) -> "ShapeSamples":
        """From per-shape (N, 4) exact samples (x, y, z, sdf) or (N, 5) bounded ones (x, y, z, lo, hi)."""
        if not samples:
            raise ValueError("no shapes to fit")
        n_max = max(len(s) for s in samples)
        out = np.zeros((len(samples), n_max, 5), np.float32)
        num_positive = np.zeros(len(samples), np.int32)
        for i, s in enumerate(samples):
            if len(s) == 0:
                raise ValueError(f"shape {i} has no SDF samples")
            if s.shape[1] == 4:
                s = np.concatenate([s, s[:, 3:4]], axis=1)
            order = np.argsort(s[:, 4] <= 0, kind="stable")
            out[i, :len(s)] = s[order]
            num_positive[i] = int(np.sum(s[:, 4] > 0))
        return cls(out, num_positive, np.asarray([len(s) for s in samples], np.int32))

    def pad_to(self, count: int) -> "ShapeSamples":
        """Repeats the last shape so there are `count` (e.g. a multiple of the devices)."""
        extra = count - len(self.num_samples)
        if extra <= 0:
            return self
        rep = lambda a: np.concatenate([a, np.repeat(a[-1:], extra, axis=0)])  # noqa: E731
        return ShapeSamples(rep(self.xyz_bounds), rep(self.num_positive), rep(self.num_samples))


def draw_samples(key: jax.Array, xyz_bounds: jax.Array, num_positive: jax.Array, num_samples: jax.Array,
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
    return xyz_bounds[jnp.concatenate([pos, neg])]


def _errors_sum(folded, z, chunk, settings: FitSettings):
    points, weights = chunk
    pred = folded_sdf(folded, latent_biases(folded, z[None]), points[None, :, :3],
                      settings.fourier_frequencies)[0]
    return jnp.sum(weights * sdf_interval_errors(pred, points[:, 3], points[:, 4], settings.clamp_distance))


def _chunks(points, settings: FitSettings):
    """points (N, 5) as (C, P, 5) chunks and (C, P) weights, 0 on the padding (copies of the last row)."""
    n = points.shape[0]
    count, size = chunking.padded_layout(n, chunking.resolve(settings.points_per_chunk, "fit", settings.platform))
    pad = count * size - n
    padded = jnp.pad(points, ((0, pad), (0, 0)), mode="edge")
    weights = (jnp.arange(count * size) < n).astype(jnp.float32)
    return padded.reshape(count, size, points.shape[1]), weights.reshape(count, size)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def chunked_data_loss(folded, z, points, settings: FitSettings):
    """Mean `sdf_interval_errors` of the folded decoder at z over points (N, 5), in chunks.

    Equal to the unchunked mean (to float32 summation order). Differentiable in z only
    (the decoder is frozen, the points are data): the gradient is formed chunk by chunk
    in the forward pass, so no activation outlives its chunk.
    """
    total = chunking.scan_value(lambda z, chunk, _: _errors_sum(folded, z, chunk, settings), z,
                                _chunks(points, settings))
    return total / points.shape[0]


def _chunked_data_loss_fwd(folded, z, points, settings):
    total, grad = chunking.scan_value_and_grad(lambda z, chunk, _: _errors_sum(folded, z, chunk, settings), z,
                                               _chunks(points, settings))
    return total / points.shape[0], (grad / points.shape[0], folded, points)


def _chunked_data_loss_bwd(settings, residuals, ct):
    grad, folded, points = residuals
    return jax.tree.map(jnp.zeros_like, folded), ct * grad, jnp.zeros_like(points)


chunked_data_loss.defvjp(_chunked_data_loss_fwd, _chunked_data_loss_bwd)


def _shape_loss(folded, z, points, settings: FitSettings):
    data = chunked_data_loss(folded, z, points, settings)
    return data + settings.code_reg_weight * jnp.mean(z**2), data


def make_fit_step(settings: FitSettings, shape_loss: Callable | None = None):
    """step(folded, state, samples, key) -> (state, loss (S, K)) for S shapes x K restarts.

    state = {"z": (S, K, L), "opt": Adam state of the same leading shape, "step": ()}.
    Each shape draws its own points per step; its K restarts share them.
    `shape_loss(model, z (L,), points (N, 5)) -> (loss, data loss)` replaces the folded
    decoder's (`folded` is then whatever model it takes; benchmarks/fit times the unfolded one).
    """
    shape_loss = shape_loss or (lambda folded, z, points: _shape_loss(folded, z, points, settings))
    restarts_step = latent_step(lambda z, folded, points: shape_loss(folded, z, points),
                                settings.optimizer(), in_axes=(None, None))

    def one_shape(folded, z, opt, xyz_bounds, num_positive, num_samples, key):
        points = draw_samples(key, xyz_bounds, num_positive, num_samples, settings.samples_per_step)
        z, opt, loss, _ = restarts_step(z, opt, folded, points)
        return z, opt, loss

    def step(folded, state, samples, key):
        keys = jax.random.split(jax.random.fold_in(key, state["step"]), samples["xyz_bounds"].shape[0])
        z, opt, loss = jax.vmap(one_shape, in_axes=(None, 0, 0, 0, 0, 0, 0))(
            folded, state["z"], state["opt"], samples["xyz_bounds"], samples["num_positive"],
            samples["num_samples"], keys)
        return {"z": z, "opt": opt, "step": state["step"] + 1}, loss

    return step


def init_fit_state(settings: FitSettings, initial: jax.Array) -> dict:
    """Adam state per shape and restart for initial latents (S, K, L)."""
    opt = jax.vmap(jax.vmap(settings.optimizer().init))(initial)
    return {"z": initial, "opt": opt, "step": jnp.zeros((), jnp.int32)}


def final_losses(folded, z: jax.Array, samples: dict, settings: FitSettings, key: jax.Array) -> jax.Array:
    """Fitting loss (S, K) of each restart on one fixed draw of each shape's samples."""
    def one_shape(z, xyz_bounds, num_positive, num_samples, key):
        points = draw_samples(key, xyz_bounds, num_positive, num_samples, settings.samples_per_step)
        return jax.vmap(lambda zk: _shape_loss(folded, zk, points, settings)[0])(z)

    keys = jax.random.split(key, z.shape[0])
    return jax.vmap(one_shape)(z, samples["xyz_bounds"], samples["num_positive"], samples["num_samples"], keys)


@dataclasses.dataclass
class FitResult:
    latents: np.ndarray  # (S, L): the best restart of each shape
    losses: np.ndarray  # (S,): its final fitting loss
    restart_losses: np.ndarray  # (S, K)
    loss_curve: np.ndarray  # (num_iterations, S): mean over restarts of each step's loss


@functools.lru_cache(maxsize=16)
def compiled_steps(settings: FitSettings, mesh):
    """The jitted init, step and final-loss functions (compiled once per settings and mesh)."""
    sharded, replicated = parallel.data_sharded(mesh), parallel.replicated(mesh)
    init_fn = lambda z: init_fit_state(settings, z)  # noqa: E731
    abstract = jax.eval_shape(init_fn, jax.ShapeDtypeStruct((mesh.size, 1, 1), jnp.float32))
    state_sharding = jax.tree.map(lambda _: sharded, abstract)
    state_sharding["step"] = replicated
    data_sharding = {"xyz_bounds": sharded, "num_positive": sharded, "num_samples": sharded}
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
    mesh = mesh or parallel.make_mesh()
    num_shapes = len(samples.num_samples)
    padded = -(-num_shapes // mesh.size) * mesh.size
    samples = samples.pad_to(padded)
    initial = np.concatenate([initial, np.repeat(initial[-1:], padded - num_shapes, axis=0)])
    sharded, replicated = parallel.data_sharded(mesh), parallel.replicated(mesh)
    data = {k: jax.device_put(getattr(samples, k), sharded) for k in ("xyz_bounds", "num_positive", "num_samples")}
    folded = jax.device_put(folded, replicated)
    init, step, evaluate = compiled_steps(dataclasses.replace(settings, num_iterations=0), mesh)
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
