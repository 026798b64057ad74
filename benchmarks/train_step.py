r"""DeepSDF training-step throughput, float32 and bfloat16, with a profile; last line is one JSON object.

    python -m benchmarks.train_step                                  # JAX only
    python -m benchmarks.train_step --torch_python=/tmp/torchenv/bin/python   # + PyTorch reference

The step is the paper-size one (8 x 512, weight norm, dropout 0.2, latent 256) on
16,384 points (16 scenes x 1,024), Adam on decoder and latents, as
`benchmarks/torch_baseline.py train-step` does it. Reported in one run, per
compute dtype: points/s (median step), the same step without dropout and in one pass
instead of chunks of `train.points_per_chunk` points (sdfjax.chunking), the matmul FLOP/s
this machine reaches (a 2048^3 product, bf16 inputs with f32 accumulation for bfloat16)
and the step's efficiency against it (model FLOPs: 3 x 2 x points x weights, the
unfolded network), and a profile: the step's own products (read off its jaxpr,
`benchmarks.profile`) timed alone, the optimiser update alone, dropout (step minus the
step without it) and the rest (elementwise work, weight norm, loss). When
`--torch_python` names an interpreter with torch, PyTorch's step runs in float32 and
in bf16 autocast (the fair bf16 baseline) in subprocesses between ours, and the
ratios are reported against both.
"""

from __future__ import annotations

import json
import os
import subprocess

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags

from benchmarks import machine, profile

from configs import chair16
from sdfjax import chunking, parallel
from sdfjax.models import decoder as decoder_lib
from sdfjax.train import step as step_lib

_POINTS = flags.DEFINE_integer("points", 16_384, "Points per step.")
_SCENES = flags.DEFINE_integer("scenes", 16, "Scenes per step (points split evenly).")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed steps per measurement.")
_TORCH = flags.DEFINE_string("torch_python", "", "Python with torch for benchmarks/torch_baseline.py.")
REFERENCE = os.path.join(os.path.dirname(__file__), "torch_baseline.py")  # the project's PyTorch baseline


def matmul_flops_per_s(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n)).astype(decoder_lib.DTYPES[dtype])
    b = jax.random.normal(jax.random.key(1), (n, n)).astype(decoder_lib.DTYPES[dtype])
    product = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
    seconds = profile.median_seconds(lambda: product(a, b).block_until_ready(), repeats)
    return 2 * n**3 / seconds


def step_matmul_flops(model, points: int) -> float:
    """Forward + backward matmul FLOPs (3x the forward's 2 * points * weights)."""
    params = decoder_lib.init_params(decoder_lib.from_config(model), jax.random.key(0))
    weights = sum(int(np.prod(p["v"].shape)) for p in params["params"].values())
    return 3 * 2 * points * weights


def time_step(model, train: ml_collections.ConfigDict, points: int, scenes: int, repeats: int,
              with_profile: bool = False) -> dict:
    """{"seconds": median step}; with `with_profile`, also the step's products and optimiser update timed alone."""
    mesh = parallel.make_mesh()
    decoder = decoder_lib.from_config(model)
    optimizer = step_lib.make_optimizer(train, steps_per_epoch=1)
    init = lambda k: step_lib.init_state(decoder, optimizer, scenes, k, train.code_bound)  # noqa: E731
    abstract = jax.eval_shape(init, jax.random.key(0))
    shardings = step_lib.state_shardings(abstract, mesh, False)
    state = jax.jit(init, out_shardings=shardings)(jax.random.key(0))
    step_fn = step_lib.make_train_step(decoder, optimizer, train, 1, 0)
    step = step_lib.jit_train_step(step_fn, shardings, mesh)
    rng = np.random.default_rng(0)
    batch = parallel.global_batch({
        "labels": np.arange(scenes, dtype=np.int32),
        "xyz": rng.uniform(-1, 1, (scenes, points // scenes, 3)).astype(np.float32),
        "sdf": (rng.normal(size=(scenes, points // scenes)) * 0.05).astype(np.float32)}, mesh)
    out = {}
    if with_profile:
        products = profile.dot_generals(jax.make_jaxpr(step_fn)(state, batch).jaxpr)
        out["products"] = len(products)
        out["product_flops"] = sum(profile.product_flops(e) for e in products)
        out["products_seconds"] = profile.products_seconds(products, repeats)
        update = jax.jit(lambda params, opt_state: optax.apply_updates(
            params, optimizer.update(params, opt_state, params)[0]))
        out["optimizer_seconds"] = profile.median_seconds(
            lambda: jax.block_until_ready(update(state["params"], state["opt_state"])), repeats)
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], batch)
        metrics["loss"].block_until_ready()

    out["seconds"] = profile.median_seconds(run, repeats)
    return out


def torch_reference(python: str, points: int, dtype: str) -> dict | None:
    if not python:
        return None
    out = subprocess.run([python, os.path.abspath(REFERENCE), "train-step", "--points", str(points),
                          "--repeats", "10", "--dtype", dtype], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"torch reference failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    config = chair16.get_config()
    points, scenes = _POINTS.value, _SCENES.value
    result = {"benchmark": "train_step", "machine": machine.describe(),
              "backend": jax.default_backend(), "points": points, "jax": jax.__version__,
              "machine_compute_dtype": parallel.fast_compute_dtype()}
    flops = step_matmul_flops(config.model, points)
    torch = {}
    for dtype in ("float32", "bfloat16"):
        model = config.model.copy_and_resolve_references()
        model.compute_dtype = dtype
        timed = time_step(model, config.train, points, scenes, _REPEATS.value, with_profile=True)
        seconds = timed["seconds"]
        no_dropout = model.copy_and_resolve_references()
        no_dropout.dropout_rate = 0.0
        seconds_no_dropout = time_step(no_dropout, config.train, points, scenes, _REPEATS.value)["seconds"]
        one_pass = config.train.copy_and_resolve_references()
        one_pass.points_per_chunk = 0
        seconds_one_pass = time_step(model, one_pass, points, scenes, _REPEATS.value)["seconds"]
        peak = matmul_flops_per_s(dtype)
        dropout_seconds = max(seconds - seconds_no_dropout, 0.0)
        result[dtype] = {
            "seconds_per_step": seconds, "points_per_s": points / seconds,
            "points_per_s_no_dropout": points / seconds_no_dropout,
            "points_per_s_one_pass": points / seconds_one_pass,
            "points_per_chunk": chunking.resolve(config.train.points_per_chunk, "train"),
            "achieved_flops_per_s": flops / seconds, "matmul_flops_per_s": peak,
            "efficiency": flops / seconds / peak,
            "model_flops": flops, "executed_product_flops": timed["product_flops"],
            "profile_shares": {
                "products": timed["products_seconds"] / seconds,
                "dropout": dropout_seconds / seconds,
                "optimizer": timed["optimizer_seconds"] / seconds,
                "rest": 1 - (timed["products_seconds"] + dropout_seconds + timed["optimizer_seconds"]) / seconds},
            "products": timed["products"],
        }
        if dtype == "float32":  # the references run between our two measurements
            for torch_dtype in ("float32", "bfloat16"):
                torch[torch_dtype] = torch_reference(_TORCH.value, points, torch_dtype)
    for torch_dtype, run in torch.items():
        if not run:
            continue
        result[f"torch_{torch_dtype}"] = {"points_per_s": run["points_per_s"], "torch": run["torch"],
                                          "threads": run["threads"]}
        for dtype in ("float32", "bfloat16"):
            result[f"speedup_{dtype}_vs_torch_{torch_dtype}"] = (result[dtype]["points_per_s"]
                                                                 / run["points_per_s"])
            result[f"speedup_{dtype}_one_pass_vs_torch_{torch_dtype}"] = (result[dtype]["points_per_s_one_pass"]
                                                                          / run["points_per_s"])
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
