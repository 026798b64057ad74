r"""Latent-fitting throughput (DeepSDF reconstruction); last line is one JSON object.

    python -m benchmarks.fit                                             # JAX only
    python -m benchmarks.fit --torch_python=/tmp/torchenv/bin/python     # + PyTorch reference
    python -m benchmarks.fit --workdir=runs/chair16_cpu --config=configs/chair16.py:cpu  # + quality

Speed: the paper-size decoder (8 x 512, latent 256) at DeepSDF's reconstruction settings
(8,000 samples per step, Adam on the latent only), shortened to `--iters` steps, for 16
shapes fitted at once by one vmapped step, and the same work one shape at a time by the
same code, in float32 and bfloat16; the batched fit once more with each step's points in
one pass instead of chunks of `points_per_chunk` (`one_pass`), and once through the
unfolded decoder (`Decoder.apply` on [z, xyz] with z broadcast to every point: weight norm
each step and the latent's product per point, one pass), so the gains from chunking,
folding and batching show apart. When `--torch_python` names an interpreter with torch,
`benchmarks/torch_baseline.py reconstruct` (DeepSDF's one-shape loop) runs in
float32 and in bf16 autocast in subprocesses between our measurements, and the ratios
are reported against both.

Quality: with `--workdir` (a trained run) the val shapes are fitted in full (800 steps)
in both compute dtypes and the mean Chamfer distances are compared.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import machine
from configs import chair16
from sdfjax import chunking, config_files
from sdfjax.fit import reconstruct, sdf_fit
from sdfjax.fit.folded import fold_decoder
from sdfjax.losses import sdf_interval_loss
from sdfjax.models import decoder as decoder_lib

_SHAPES = flags.DEFINE_integer("shapes", 16, "Shapes fitted at once.")
_ITERS = flags.DEFINE_integer("iters", 20, "Adam steps per shape (DeepSDF: 800).")
_TORCH = flags.DEFINE_string("torch_python", "", "Python with torch for benchmarks/torch_baseline.py.")
_WORKDIR = flags.DEFINE_string("workdir", "", "A trained run: also compare float32 and bfloat16 Chamfer.")
_CONFIG = flags.DEFINE_string("config", "configs/chair16.py:cpu", "Config of --workdir's run.")
REFERENCE = os.path.join(os.path.dirname(__file__), "torch_baseline.py")  # the project's PyTorch baseline


def _fit_seconds(folded, samples: sdf_fit.ShapeSamples, settings: sdf_fit.FitSettings, latent_dim: int) -> float:
    initial = np.random.default_rng(0).normal(0, 0.01, (len(samples.num_samples), 1, latent_dim))
    key = jax.random.key(0)
    warm_up = dataclasses.replace(settings, num_iterations=1)  # compiles the same step
    sdf_fit.fit_latents(folded, samples, initial.astype(np.float32), warm_up, key)
    start = time.perf_counter()
    sdf_fit.fit_latents(folded, samples, initial.astype(np.float32), settings, key)
    return time.perf_counter() - start


def _unfolded_fit_seconds(decoder, params, samples: sdf_fit.ShapeSamples, settings: sdf_fit.FitSettings) -> float:
    """The batched fit's steps through the plain decoder: the same sampling, loss and Adam."""
    def shape_loss(params, z, points):
        z_points = jnp.broadcast_to(z, (points.shape[0], z.shape[-1]))  # DeepSDF's [z, x] per point
        pred = decoder.apply(params, z_points, points[:, :3])
        data = sdf_interval_loss(pred, points[:, 3], points[:, 4], settings.clamp_distance)
        return data + settings.code_reg_weight * jnp.mean(z**2), data

    step = jax.jit(sdf_fit.make_fit_step(settings, shape_loss), donate_argnums=1)
    initial = np.random.default_rng(0).normal(0, 0.01, (len(samples.num_samples), 1, decoder.latent_dim))
    state = sdf_fit.init_fit_state(settings, jnp.asarray(initial, jnp.float32))
    data = {k: jnp.asarray(getattr(samples, k)) for k in ("xyz_bounds", "num_positive", "num_samples")}
    key = jax.random.key(0)
    state, loss = step(params, state, data, key)  # compile
    loss.block_until_ready()
    start = time.perf_counter()
    for _ in range(settings.num_iterations):
        state, loss = step(params, state, data, key)
    loss.block_until_ready()
    return time.perf_counter() - start


def time_fit(dtype: str, shapes: int, iters: int) -> dict:
    config = chair16.get_config()
    config.model.compute_dtype = dtype
    decoder = decoder_lib.from_config(config.model)
    params = decoder_lib.init_params(decoder, jax.random.key(0))
    folded = fold_decoder(decoder, params)
    settings = sdf_fit.FitSettings(num_iterations=iters, lr_decay_at=iters // 2)
    rng = np.random.default_rng(0)
    data = [np.concatenate([rng.uniform(-1, 1, (settings.samples_per_step, 3)),
                            rng.normal(0, 0.05, (settings.samples_per_step, 1))], axis=1).astype(np.float32)
            for _ in range(shapes)]
    points = shapes * iters * settings.samples_per_step
    batched = _fit_seconds(folded, sdf_fit.ShapeSamples.from_list(data), settings, decoder.latent_dim)
    one_pass = _fit_seconds(folded, sdf_fit.ShapeSamples.from_list(data),
                            dataclasses.replace(settings, points_per_chunk=0), decoder.latent_dim)
    unfolded = _unfolded_fit_seconds(decoder, params, sdf_fit.ShapeSamples.from_list(data), settings)
    single = sum(_fit_seconds(folded, sdf_fit.ShapeSamples.from_list([d]), settings, decoder.latent_dim)
                 for d in data[:2]) * shapes / 2
    return {"batched_points_per_s": points / batched, "one_at_a_time_points_per_s": points / single,
            "batched_one_pass_points_per_s": points / one_pass, "batched_unfolded_points_per_s": points / unfolded,
            "points_per_chunk": chunking.resolve(settings.points_per_chunk, "fit"),
            "batched_seconds": batched}


def torch_reference(python: str, shapes: int, iters: int, dtype: str) -> dict | None:
    if not python:
        return None
    out = subprocess.run([python, os.path.abspath(REFERENCE), "reconstruct", "--shapes", str(shapes),
                          "--iters", str(iters), "--dtype", dtype], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"torch reference failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def chamfer_by_dtype(config_spec: str, workdir: str) -> dict:
    result = {}
    for dtype in ("float32", "bfloat16"):
        config = config_files.load(config_spec)
        config.model.compute_dtype = dtype
        config.fit.save_mesh = False
        out = reconstruct.fit_split(config, workdir, progress=False,
                                    out_dir=os.path.join(workdir, "fit", f"bench_{dtype}"))
        result[dtype] = out["mean"]["chamfer"]
    result["relative_difference"] = abs(result["bfloat16"] - result["float32"]) / result["float32"]
    return result


def main(argv):
    del argv
    shapes, iters = _SHAPES.value, _ITERS.value
    result = {"benchmark": "fit", "machine": machine.describe(),
              "backend": jax.default_backend(), "shapes": shapes, "iters": iters, "samples_per_step": 8000,
              "jax": jax.__version__}
    result["float32"] = time_fit("float32", shapes, iters)
    torch = {d: torch_reference(_TORCH.value, shapes, iters, d) for d in ("float32", "bfloat16")}  # between ours
    result["bfloat16"] = time_fit("bfloat16", shapes, iters)
    for torch_dtype, run in torch.items():
        if not run:
            continue
        result[f"torch_{torch_dtype}"] = {"decoder_points_per_s": run["decoder_points_per_s"], "torch": run["torch"],
                                          "threads": run["threads"]}
        for dtype in ("float32", "bfloat16"):
            ours = result[dtype]
            for variant, key in (("", "batched_points_per_s"), ("_one_at_a_time", "one_at_a_time_points_per_s"),
                                 ("_one_pass", "batched_one_pass_points_per_s"),
                                 ("_unfolded", "batched_unfolded_points_per_s")):
                result[f"speedup_{dtype}{variant}_vs_torch_{torch_dtype}"] = ours[key] / run["decoder_points_per_s"]
    if _WORKDIR.value:
        result["chamfer_x1000"] = chamfer_by_dtype(_CONFIG.value, _WORKDIR.value)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
