r"""Normal-map rendering of a paper-size decoder: our tracer vs a naive one; last line is one JSON object.

    python -m benchmarks.render
    python -m benchmarks.render --torch_python=/tmp/torchenv/bin/python

The SDF is |x| - 0.5 + 0.05 * f(z, x) with f the paper-size DeepSDF decoder (8 x 512,
latent 256, random weights): every evaluation costs one decoder call, and the shape
has a real surface (a lumpy sphere) for both tracers to find. In the same run:

  ours   sdfjax.render.tracer: start at the bounding sphere, staged marching that stops
         paying for converged rays, autodiff normals, implicit-diff hit point;
  naive  Sketch2Shape's: 100 fixed steps from t = distance - 1.1 with steps clamped to
         0.1, no early stop, central finite-difference normals (6 more calls).

Both are jitted JAX on this machine. Reported: rays/s, decoder evaluations per ray
(ours counts every point of every stage plus the 4 per ray of the final differentiable
evaluation), and the depth error of each on the pixels both hit against a reference
trace (256 steps, threshold 1e-6). With `--torch_python`, the PyTorch reference
`render` workload runs too, on the same scene (`--scene sphere_plus_decoder`), camera
(at (0, 0, -4) looking along +z), focal length and resolution, in float32. Its decoder
has PyTorch's own random weights: each call costs the same, and the surface is the same
sphere up to 0.05 f; the naive tracer's work per ray does not depend on the weights.
"""

from __future__ import annotations

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
from sdfjax.models import decoder as decoder_lib
from sdfjax.render import camera as camera_lib
from sdfjax.render import tracer

_RESOLUTION = flags.DEFINE_integer("resolution", 64, "Image side in pixels.")
_TORCH = flags.DEFINE_string("torch_python", "", "Python with torch==2.13.0 for the reference render.")
REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference", "torch_deepsdf.py")


def make_sdf(dtype: str = "float32"):
    config = chair16.get_config()
    config.model.compute_dtype = dtype
    decoder = decoder_lib.from_config(config.model)
    params = {"decoder": decoder_lib.init_params(decoder, jax.random.key(0)),
              "z": 0.01 * jax.random.normal(jax.random.key(1), (decoder.latent_dim,))}

    def sdf(p, x):
        return jnp.linalg.norm(x, axis=-1) - 0.5 + 0.05 * decoder.apply(p["decoder"], p["z"][None], x)

    return sdf, params


def naive_render(sdf, params, origins, directions, distance: float):
    """Sketch2Shape's tracer: 100 clamped steps, no early stop, finite-difference normals."""
    t = jnp.full(origins.shape[:1], distance - 1.1)

    def body(_, t):
        return t + jnp.clip(sdf(params, origins + t[:, None] * directions), -0.1, 0.1)

    t = jax.lax.fori_loop(0, 100, body, t)
    points = origins + t[:, None] * directions
    eps = 5e-3
    grads = jnp.stack([sdf(params, points + eps * e) - sdf(params, points - eps * e) for e in jnp.eye(3)], -1)
    normals = grads / jnp.maximum(jnp.linalg.norm(grads, axis=-1, keepdims=True), 1e-8)
    hit = jnp.abs(sdf(params, points)) < 1e-3  # one more call, not counted (a mask, for the comparison)
    return {"depth": t, "normals": normals, "hit": hit}


def _seconds(fn, repeats: int = 3) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv):
    del argv
    res = _RESOLUTION.value
    # The PyTorch reference's camera: at (0, 0, -4) looking along +z, focal 2 x resolution.
    cam = camera_lib.Camera(180.0, 0.0, 4.0, 2.0 * res, res, res)
    origins, directions = (jnp.asarray(a) for a in cam.rays())
    sdf, params = make_sdf()
    rays = res * res
    ours_fn = jax.jit(lambda p: tracer.render(sdf, p, origins, directions))
    naive_fn = jax.jit(lambda p: naive_render(sdf, p, origins, directions, cam.distance))
    reference = jax.jit(lambda p: tracer.render(sdf, p, origins, directions, tracer.TraceSettings(
        stage_steps=(256,), stage_fractions=(1.0,), threshold=1e-6)))(params)
    ours, naive = ours_fn(params), naive_fn(params)
    ours_seconds, naive_seconds = _seconds(lambda: ours_fn(params)), _seconds(lambda: naive_fn(params))
    ref_hit, ref_depth = np.asarray(reference["hit"]), np.asarray(reference["depth"])

    def depth_error(out):
        both = ref_hit & np.asarray(out["hit"])
        return float(np.abs(np.asarray(out["depth"])[both] - ref_depth[both]).mean()), float(both.mean())

    ours_error, ours_cover = depth_error(ours)
    naive_error, naive_cover = depth_error(naive)
    ours_evals = float(ours["decoder_evals"]) / rays + 4
    naive_evals = 100 + 6
    result = {"benchmark": "render", "machine": machine.describe(),
              "backend": jax.default_backend(), "resolution": res, "hit_fraction": float(ref_hit.mean()),
              "ours": {"rays_per_s": rays / ours_seconds, "decoder_evals_per_ray": ours_evals,
                       "mean_depth_error": ours_error, "hit_agreement": float(np.mean(np.asarray(ours["hit"]) == ref_hit))},
              "naive": {"rays_per_s": rays / naive_seconds, "decoder_evals_per_ray": naive_evals,
                        "mean_depth_error": naive_error,
                        "hit_agreement": float(np.mean(np.asarray(naive["hit"]) == ref_hit))},
              "jax": jax.__version__}
    result["evals_ratio_naive_over_ours"] = naive_evals / ours_evals
    result["speedup_vs_naive"] = result["ours"]["rays_per_s"] / result["naive"]["rays_per_s"]
    del ours_cover, naive_cover
    if _TORCH.value:
        out = subprocess.run([_TORCH.value, os.path.abspath(REFERENCE), "render", "--resolution", str(res),
                              "--scene", "sphere_plus_decoder", "--focal", str(cam.focal)],
                             capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        torch = json.loads(out.stdout.strip().splitlines()[-1])
        result["torch_naive"] = {"rays_per_s": torch["rays_per_s"], "decoder_evals_per_ray": torch["decoder_evals_per_ray"],
                                 "scene": torch["scene"], "camera": torch["camera"], "focal_px": torch["focal_px"]}
        result["speedup_vs_torch"] = result["ours"]["rays_per_s"] / torch["rays_per_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
