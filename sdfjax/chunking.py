"""A batch of points through the decoder in cache-sized chunks: the same value and gradient, less memory traffic.

    count, size = padded_layout(8000, 512)                     # (16, 500): fitting, any point count
    count = divisor_layout(16, 1024, 1024)                    # 16: training, equal chunks of whole scenes' rows
    value, grads = scan_value_and_grad(fn, params, chunked)   # fn(params, chunk, index) -> scalar

On a CPU, one decoder layer's activations for a whole batch (512 float32 per point: 32 MB
for 16,384 points) do not fit in cache, and XLA runs the products and the elementwise
passes between them (bias, ReLU, dropout, their backward) one after another over the
whole batch: each pass is a round trip through memory, which two cores share. Running
each chunk's forward and backward pass back to back (a `lax.scan` over chunks, the
gradient summed in the carry) keeps a chunk's activations in cache (benchmarks/fit and
benchmarks/train_step measure both forms; too small chunks make the weight-gradient
products too thin).

GPUs and TPUs want the opposite (one wide pass keeps them busy), so `resolve` turns the
configs' `auto` (-1) into a chunk size on a CPU and into 0 (one pass) elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

AUTO = -1


# Points per chunk on a CPU, per job (benchmarks/train_step and benchmarks/fit measure them): the training step's
# weight-gradient products get too thin in smaller chunks; fitting forms no weight gradient.
CPU_POINTS_PER_CHUNK = {"train": 1024, "fit": 512}


def resolve(points_per_chunk: int, job: str, platform: str | None = None) -> int:
    """A config's `points_per_chunk` for `job` ("train" or "fit"): -1 (auto) is CPU_POINTS_PER_CHUNK[job] on a CPU
    and 0 (one pass) on a GPU or TPU; `platform` ("cpu", "cuda", "tpu", ...) defaults to the running backend."""
    if points_per_chunk == AUTO:
        return CPU_POINTS_PER_CHUNK[job] if (platform or jax.default_backend()) == "cpu" else 0
    if points_per_chunk < 0:
        raise ValueError(f"points_per_chunk={points_per_chunk}: expected -1 (auto), 0 (one pass) or a chunk size")
    return points_per_chunk


def padded_layout(num_points: int, points_per_chunk: int) -> tuple[int, int]:
    """(chunks, points per chunk) covering num_points with at most chunks - 1 padding rows (0: one pass)."""
    if points_per_chunk <= 0 or points_per_chunk >= num_points:
        return 1, num_points
    chunks = math.ceil(num_points / points_per_chunk)
    return chunks, math.ceil(num_points / chunks)


def divisor_layout(rows: int, points_per_row: int, points_per_chunk: int) -> int:
    """Chunks along a (rows, points_per_row) batch's second axis: the fewest that divide points_per_row
    with at most points_per_chunk points (rows x its share) each; 1 (one pass) for 0, or when only
    chunks under a quarter of that size would divide it (a prime point count)."""
    if points_per_chunk <= 0 or rows * points_per_row <= points_per_chunk:
        return 1
    for chunks in range(1, points_per_row + 1):
        if points_per_row % chunks == 0 and rows * (points_per_row // chunks) <= points_per_chunk:
            return chunks if 4 * rows * (points_per_row // chunks) >= points_per_chunk else 1
    return 1


def scan_value_and_grad(fn: Callable, params, chunked) -> tuple[jax.Array, object]:
    """Sum over chunks of fn(params, chunk, index) and of its gradient in params.

    `chunked` is a pytree of arrays whose leading axis runs over the chunks; each chunk's
    backward pass runs right after its forward pass, so no activation outlives its chunk.
    """
    def body(carry, indexed):
        index, chunk = indexed
        value, grads = jax.value_and_grad(fn)(params, chunk, index)
        return (carry[0] + value, jax.tree.map(jnp.add, carry[1], grads)), None

    count = jax.tree.leaves(chunked)[0].shape[0]
    if count == 1:  # one pass: no loop around it
        return jax.value_and_grad(fn)(params, jax.tree.map(lambda a: a[0], chunked), jnp.zeros((), jnp.int32))
    zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    (value, grads), _ = jax.lax.scan(body, zero, (jnp.arange(count), chunked))
    return value, grads


def scan_value(fn: Callable, params, chunked) -> jax.Array:
    """Sum over chunks of fn(params, chunk, index), without a gradient."""
    def body(total, indexed):
        index, chunk = indexed
        return total + fn(params, chunk, index), None

    count = jax.tree.leaves(chunked)[0].shape[0]
    total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (jnp.arange(count), chunked))
    return total
