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
trace (256 steps, threshold 1e-6). With `--workdir`, the tracer is also checked on a
trained decoder (`trained_decoder_check`): hit agreement and depth against a dense march,
unfinished rays, evaluations per ray (and a 400-step trace's, and their ratio).
With `--torch_python`, the PyTorch reference `render` workload runs too, on the same
scene (`--scene sphere_plus_decoder`), camera (at (0, 0, -4) looking along +z), focal
length and resolution, in float32. Its decoder has PyTorch's own random weights: each
call costs the same, and the surface is the same sphere up to 0.05 f; the naive tracer's
work per ray does not depend on the weights.
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
from sdfjax import config_files
from sdfjax import trained as trained_lib
from sdfjax.models import decoder as decoder_lib
from sdfjax.render import camera as camera_lib
from sdfjax.render import latent_render, tracer

_RESOLUTION = flags.DEFINE_integer("resolution", 64, "Image side in pixels.")
_TORCH = flags.DEFINE_string("torch_python", "", "Python with torch for benchmarks/torch_baseline.py.")
_WORKDIR = flags.DEFINE_string("workdir", "", "A trained run: also check the tracer against a dense march on its decoder.")
_CONFIG = flags.DEFINE_string("config", "configs/chair16.py:cpu", "Config of --workdir's run.")
_LATENTS = flags.DEFINE_integer("latents", 4, "With --workdir: trained latents to render.")
_VIEWS = flags.DEFINE_list("views", ["0", "11", "47", "62"], "With --workdir: dataset views to render.")
REFERENCE = os.path.join(os.path.dirname(__file__), "torch_baseline.py")  # the project's PyTorch baseline


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


def trained_decoder_check(config, workdir: str, latents: int, views: list[int]) -> dict:
    """The tracer on a trained decoder, latents x dataset views at the dataset resolution, against a dense march.

    The reference is `tracer.march_densely` (1,000 samples per ray, bisected): it assumes
    nothing of the field. Reported per tracer: hit agreement with it, the depth error on
    pixels both hit, unfinished rays, decoder evaluations per ray and their ratio to a
    400-step sphere trace's (same settings otherwise). Tracers: `ours` (config.render),
    `bulk_only` (the staged bulk alone, no finishing rounds), `unlimited_steps` (steps not
    limited to render.max_step: the tracer before it was, which jumped through thin parts).
    """
    trained = trained_lib.load_trained(config, workdir)
    sdf_fn = latent_render.decoder_sdf(trained.decoder)
    settings = tracer.TraceSettings.from_config(config.render)
    tracers = {"ours": settings, "bulk_only": dataclasses.replace(settings, max_steps=sum(settings.stage_steps)),
               "unlimited_steps": dataclasses.replace(settings, max_step=float("inf"))}
    long_trace = dataclasses.replace(settings, stage_steps=(400,), stage_fractions=(1.0,), max_steps=400)
    cameras = [camera_lib.views_from_config(config.render)[v] for v in views]
    origins, directions = camera_lib.stack_rays(cameras)
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    fns = {name: jax.jit(lambda z, s=s: tracer.render(sdf_fn, {"decoder": trained.params, "z": z}, origins,
                                                              directions, s))
           for name, s in {**tracers, "long_trace": long_trace}.items()}
    totals = {name: {"hits": 0, "agree": 0, "depth_error_sum": 0.0, "depth_error_max": 0.0, "both": 0,
                     "unfinished": 0, "evals": 0, "rays": 0, "seconds": 0.0} for name in tracers}
    reference_hits, long_trace_evals = 0, 0
    for row in range(min(latents, len(trained.latents))):
        z = jnp.asarray(trained.latents[row])
        ref = tracer.march_densely(sdf_fn, {"decoder": trained.params, "z": z}, origins, directions,
                                   threshold=settings.threshold, radius=settings.bound_radius)
        ref_hit, ref_depth = np.asarray(ref["hit"]), np.asarray(ref["depth"])
        for name in totals:
            out = fns[name](z)
            t = totals[name]
            t["seconds"] += _seconds(lambda: fns[name](z), repeats=1)
            hit = np.asarray(out["hit"])
            both = hit & ref_hit
            error = np.abs(np.asarray(out["depth"])[both] - ref_depth[both])
            t["hits"] += int(hit.sum())
            t["agree"] += int(np.sum(hit == ref_hit))
            t["both"] += int(both.sum())
            t["depth_error_sum"] += float(error.sum())
            t["depth_error_max"] = max(t["depth_error_max"], float(error.max()) if error.size else 0.0)
            t["unfinished"] += int(np.asarray(out["unfinished"]).sum())
            t["evals"] += int(out["decoder_evals"]) + 4 * len(hit)
            t["rays"] += len(hit)
        reference_hits += int(ref_hit.sum())
        long_trace_evals += int(fns["long_trace"](z)["decoder_evals"]) + 4 * len(ref_hit)
    rays = totals["ours"]["rays"]
    result = {"latents": min(latents, len(trained.latents)), "views": views, "resolution": cameras[0].width,
              "threshold": settings.threshold, "max_step": settings.max_step, "reference": "march_densely, 1000 samples",
              "reference_hits": reference_hits, "long_trace_decoder_evals_per_ray": long_trace_evals / rays}
    for name, t in totals.items():
        result[name] = {"hit_agreement": t["agree"] / t["rays"], "hits": t["hits"],
                        "mean_depth_error": t["depth_error_sum"] / max(t["both"], 1),
                        "max_depth_error": t["depth_error_max"], "unfinished_rays": t["unfinished"],
                        "decoder_evals_per_ray": t["evals"] / t["rays"], "rays_per_s": t["rays"] / t["seconds"],
                        "evals_ratio_long_trace_over_this": long_trace_evals / t["evals"]}
    return result


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
    if _WORKDIR.value:
        config = config_files.load(_CONFIG.value)
        result["trained_decoder"] = trained_decoder_check(config, _WORKDIR.value, _LATENTS.value,
                                                          [int(v) for v in _VIEWS.value])
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
