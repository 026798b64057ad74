"""The one latent optimiser of every fit: Adam on latent codes, vmapped over many at once.

    optimizer = optax.adam(lr)
    step = latent_step(loss_fn, optimizer, in_axes)      # loss_fn(z, *args) -> (loss, aux)
    z, opt, loss, aux = step(z, opt, *args)                # z (B, ..., L), opt: B optimiser states
    initial = initial_latents("mean", S, K, L, trained.latents, rng)

The decoder (and any encoder) stays frozen: the gradient is taken with respect to z
only. SDF fitting (sdfjax.fit.sdf_fit, over shapes and restarts), normal-map fitting
(sdfjax.fit.normals) and sketch optimisation (sdfjax.sketch2shape.optimize) all step
through `latent_step`; each latent keeps its own optimiser state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np
import optax


def latent_step(loss_fn: Callable, optimizer: optax.GradientTransformation, in_axes: Sequence):
    """One optimiser step on a batch of latents: `step(z, opt, *args) -> (z, opt, loss, aux)`.

    `loss_fn(z, *args) -> (loss, aux)` is the loss of one latent; `in_axes` says for each
    of `args` which axis is the batch axis (None: shared by all latents). The step is
    vmapped over z's leading axis; jit (and shard) it where it is used.
    """
    def one(z, opt, *args):
        (loss, aux), grad = jax.value_and_grad(loss_fn, has_aux=True)(z, *args)
        updates, opt = optimizer.update(grad, opt, z)
        return optax.apply_updates(z, updates), opt, loss, aux

    return jax.vmap(one, in_axes=(0, 0, *in_axes))


def init_states(optimizer: optax.GradientTransformation, z: jax.Array):
    """The optimiser state of each latent of z (B, ..., L), for `latent_step`."""
    return jax.vmap(optimizer.init)(z)


INIT_CHOICES = "normal | mean | category_mean | random | prior | <row index>"


def initial_latents(init: str, num_shapes: int, restarts: int, latent_dim: int, trained: np.ndarray,
                    rng: np.random.Generator, init_std: float = 0.01,
                    rows: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Initial codes (S, K, L), Sketch2Shape's `prior_idx` options plus DeepSDF's default.

      normal   N(0, init_std^2) per dimension (DeepSDF's reconstruct.py, std 0.01);
      mean     the mean of the trained latents;
      category_mean  per shape, the mean of the trained latents of its own category (`rows`: the
               latent rows of each shape's category): in a model of several categories the
               overall mean lies between them, in no category's part of the latent space;
      random   a draw from the per-dimension normal fitted to the trained latents;
      prior    each shape's own trained latent (`rows`: [its row] per shape, training shapes only);
      <int>    the trained latent of that row, for every shape.

    Deterministic choices (mean, category_mean, prior, row) get N(0, init_std^2) noise on restarts
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
    elif init in ("prior", "category_mean"):
        if rows is None:
            raise ValueError(f"fit.init={init} needs " + ("the shapes' own trained latents: use it on the train split"
                                                          if init == "prior" else "each shape's category"))
        means = np.stack([trained[np.asarray(r, np.int64)].mean(axis=0) for r in rows])
        base = np.broadcast_to(means[:, None, :], shape)
    elif init.lstrip("-").isdigit():
        row = int(init)
        if not 0 <= row < len(trained):
            raise ValueError(f"fit.init={init}: the checkpoint has trained latent rows 0..{len(trained) - 1}")
        base = np.broadcast_to(trained[row], shape)
    else:
        raise ValueError(f"fit.init={init!r}: expected {INIT_CHOICES}")
    noise[:, 0] = 0.0
    return (base + noise).astype(np.float32)
