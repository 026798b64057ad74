r"""The accelerator benchmark: every hot step on this machine's devices, in minutes; last line is one JSON object.

    python -m benchmarks.device            # on a GPU or TPU host: the published sizes (at most 8 minutes on one GPU)
    python -m benchmarks.device --tiny     # the same program at test sizes, on a CPU (tests/test_export.py runs it)

Measured on the running backend with its own choices (bf16 and one pass on an accelerator,
sdfjax.exported_steps), every step sharded over all local devices where it shards:

  train_points_per_s   DeepSDF's training step at the paper's size (8 x 512, latent 256,
                       64 scenes x 16,384 points), median of the timed steps
  train_tflops         its model FLOPs (3 x 2 x points x weights) per second, and
  train_peak_share     their share of this device's bf16 matmul rate, measured here on
                       a large product (`matmul_tflops`)
  peak_memory_gb       the largest `peak_bytes_in_use` of a device after the train step
                       (null where the backend does not report it, as a CPU)
  fit_shapes_per_s     DeepSDF reconstruction: shapes x steps per second of the batched fit
                       step (one shape per device, config.fit.restarts restarts each)
  tracer_rays_per_s    sphere-traced rays per second (forward render of a preview view)
  run_loss_first/last  a short real training run: procedural chairs generated and
                       preprocessed here, DeepSDF trained on them for --run_epochs epochs
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from benchmarks import machine, profile
from data_gen import synthetic
from sdfjax import config_files, exported_steps, parallel
from sdfjax.data import pipeline
from sdfjax.models import decoder as decoder_lib
from sdfjax.train import deepsdf

_TINY = flags.DEFINE_bool("tiny", False, "Test sizes (the smoke config), for a CPU.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per step.")
_RUN_SHAPES = flags.DEFINE_integer("run_shapes", 32, "Procedural chairs of the short training run.")
_RUN_EPOCHS = flags.DEFINE_integer("run_epochs", 30, "Epochs of the short training run.")


def materialize(tree, key: int = 0):
    """Arrays for abstract arguments, placed by their shardings: small normal floats, zero integers, PRNG keys."""
    leaves, treedef = jax.tree.flatten(tree)
    rng = np.random.default_rng(key)
    out = []
    for leaf in leaves:
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            value = jax.random.key(key)
        elif jnp.issubdtype(leaf.dtype, jnp.floating):
            value = (0.05 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)
        else:
            value = np.zeros(leaf.shape, leaf.dtype)
        out.append(jax.device_put(value, leaf.sharding) if getattr(leaf, "sharding", None) is not None else value)
    return jax.tree.unflatten(treedef, out)


def timed(step, args, repeats: int, state_index: int | None = None) -> float:
    """Median seconds per call of `step(*args)`, compiled first; the step's first output is fed back as argument
    `state_index` (a step that donates its state)."""
    args = list(args)

    def once():
        out = step(*args)
        if state_index is not None:
            args[state_index] = out[0]
        jax.block_until_ready(out)

    once()
    return profile.median_seconds(once, repeats)


def matmul_tflops(n: int) -> float:
    """bf16 x bf16 -> f32 matmul TFLOP/s of one device: the peak the training step is compared with."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    product = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
    return 2 * n**3 / profile.median_seconds(lambda: product(a, b).block_until_ready(), 5) / 1e12


def peak_memory_gb() -> float | None:
    stats = [d.memory_stats() for d in jax.local_devices()]
    peaks = [s.get("peak_bytes_in_use") for s in stats if s]
    return round(max(peaks) / 1e9, 2) if peaks and None not in peaks else None


def train_weights(config) -> int:
    params = jax.eval_shape(lambda k: decoder_lib.init_params(decoder_lib.from_config(config.model), k),
                            jax.random.key(0))
    return sum(int(np.prod(layer["v"].shape)) for layer in params["params"].values())


def short_run(config, shapes: int, epochs: int) -> dict:
    """Generates and preprocesses `shapes` procedural chairs in a temporary folder and trains DeepSDF on them."""
    with tempfile.TemporaryDirectory(prefix="sdfjax-device-") as folder:
        config = config.copy_and_resolve_references()
        config.data.root = os.path.join(folder, "chairs")
        synthetic.write_dataset(config.data.root, "chair", num_train=shapes, num_val=1, num_test=1)
        start = time.perf_counter()
        pipeline.preprocess_dataset(config, stages=("normalize", "sdf", "surface", "tfds"), progress=False)
        prepared = time.perf_counter()
        config.train.num_epochs = epochs
        deepsdf.train(config, os.path.join(folder, "run"), progress=False)
        records = [json.loads(line) for line in open(os.path.join(folder, "run", "metrics.jsonl"))]
        return {"run_loss_first": round(records[0]["loss"], 5), "run_loss_last": round(records[-1]["loss"], 5),
                "run_epochs": len(records), "run_preprocess_s": round(prepared - start, 1),
                "run_train_s": round(time.perf_counter() - prepared, 1)}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save of the short run at INFO
    began = time.perf_counter()
    tiny = _TINY.value
    config = config_files.load("chair16:smoke" if tiny else "chair16")
    mesh = parallel.make_mesh()
    result = {"benchmark": "device", "backend": jax.default_backend(), "devices": jax.device_count(),
              "device_kind": jax.devices()[0].device_kind, "host": machine.describe(), "tiny": tiny}

    step, args = exported_steps.deepsdf_train(config, None, mesh)
    seconds = timed(step, materialize(args), _REPEATS.value, state_index=0)
    points = int(config.train.scenes_per_batch) * int(config.train.samples_per_scene)
    tflops = 3 * 2 * points * train_weights(config) / seconds / 1e12
    peak = matmul_tflops(1024 if tiny else 8192)
    result.update(train_points_per_s=round(points / seconds), train_step_ms=round(1e3 * seconds, 2),
                  train_tflops=round(tflops, 3), matmul_tflops=round(peak, 2),
                  train_peak_share=round(tflops / peak / jax.local_device_count(), 3),
                  peak_memory_gb=peak_memory_gb())

    step, args = exported_steps.batched_fit(config, None, mesh)
    seconds = timed(step, materialize(args), _REPEATS.value, state_index=1)
    result.update(fit_shapes_per_s=round(mesh.size / seconds, 1), fit_step_ms=round(1e3 * seconds, 2))

    render, args = exported_steps.tracer_render(config, None, mesh)
    seconds = timed(render, materialize(args), _REPEATS.value)
    result.update(tracer_rays_per_s=round(args[1].shape[0] / seconds))

    result.update(short_run(config, 4 if tiny else _RUN_SHAPES.value, 3 if tiny else _RUN_EPOCHS.value))
    result["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
