r"""Sketch to shape for one user's sketch, and batched, on a trained run; last line is one JSON object.

    python -m benchmarks.sketch2shape --config=configs/chairs256.py:cpu --workdir=runs/chairs256_cpu

Workload: the test split's dataset sketches (view --view) of the first --sketches shapes,
with the run's own decoder, Siamese and sketch-to-latent encoders (what the page and the
results table use). Timed after compilation (sdfjax.sketch2shape.interactive compiles
at start-up, reported as startup_s):

  encoder_shape_s   sketch -> encoder latent -> mesh at the page's quick resolution
                    (interactive.QUICK_MESH_RESOLUTION) + one normal map from the sketch's
                    view: what the page shows first (target < 2 s on the cpu models);
                    encoder_shape_full_mesh_s: the same with the mesh at config.mesh
  refined_shape_s   the same sketch -> encoder -> config.sketch.iterations refinement steps
                    -> mesh + normal map (target < 15 s)
  batched_sketches_per_s   refinement of config.sketch.batch sketches by one vmapped step,
                    per second (meshes excluded)
  user_framing_s    a user's drawing (the --user_set PNGs, each from its view) -> the sketch the
                    models read, framed as config.sketch.user_framing says (with "fit": the
                    encoder and one trace per tried fill); the page adds it to both times above

Beside the speed, the quality of those same sketches: Chamfer x1000 of the encoder's and
the refined mesh against the true shape (DeepSDF's definition), medians.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import machine
from sdfjax import config_files, storage
from sdfjax.data import tfds_builder
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.geometry import metrics
from sdfjax.render import camera as camera_lib
from sdfjax.sketch2shape import interactive, optimize
from sdfjax.sketch2shape import sketches as sketches_lib

_CONFIG = flags.DEFINE_string("config", "configs/chairs256.py:cpu", "Config of --workdir's run.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/chairs256_cpu", "A run with DeepSDF, siamese/ and encoder/.")
_SKETCHES = flags.DEFINE_integer("sketches", 3, "Test sketches timed one at a time (median reported).")
_VIEW = flags.DEFINE_integer("view", 11, "Dataset view of the sketches.")
_DATA_ROOT = flags.DEFINE_string("data_root", "", "Overrides config.data.root.")
_USER_SET = flags.DEFINE_string("user_set", "tests/data/user_sketches/sketches.json",
                                "User-style PNGs (data_gen.user_sketches' sketches.json) timed through the framing.")


def _chamfer(mesh, example) -> float:
    surface = example["surface_samples"]
    normalization = mesh_lib.Normalization(np.asarray(example["offset"], np.float64), float(example["scale"]))
    return metrics.evaluate_mesh(mesh, surface[:, :3], surface[:, 3:], normalization, emd_points=256)["chamfer"]


def _median(values: list[float]) -> float | None:
    """Median of the finite values (an empty mesh scores NaN), None when there is none."""
    finite = [v for v in values if np.isfinite(v)]
    return round(statistics.median(finite), 4) if finite else None


def main(argv):
    del argv
    config = config_files.load(_CONFIG.value)
    if _DATA_ROOT.value:
        config.data.root = _DATA_ROOT.value
    start = time.perf_counter()
    s2s = interactive.SketchToShape(config, _WORKDIR.value,
                                    warm_mesh_resolutions=(interactive.QUICK_MESH_RESOLUTION,))  # as the page
    startup = time.perf_counter() - start
    source = tfds_builder.data_source(config, "test", renders=True)
    examples = [source[i % len(source)] for i in range(max(_SKETCHES.value, config.sketch.batch))]
    cameras = [camera_lib.Camera(*map(float, e["views"][_VIEW.value]), width=s2s.resolution, height=s2s.resolution)
               for e in examples]
    sketches = [e["sketches"][_VIEW.value][None] for e in examples]

    encoder_s, encoder_full_s, refined_s, chamfer_encoder, chamfer_refined = [], [], [], [], []
    for example, sketch, camera in list(zip(examples, sketches, cameras))[:_SKETCHES.value]:
        t0 = time.perf_counter()
        z0 = s2s.encode(sketch, [camera])
        s2s.mesh(z0, interactive.QUICK_MESH_RESOLUTION)
        s2s.normal_map(z0, camera)
        encoder_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        z0 = s2s.encode(sketch, [camera])
        mesh0 = s2s.mesh(z0)
        s2s.normal_map(z0, camera)
        encoder_full_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        z0 = s2s.encode(sketch, [camera])
        z = s2s.refine(sketch, [camera], z0)
        mesh = s2s.mesh(z)
        s2s.normal_map(z, camera)
        refined_s.append(time.perf_counter() - t0)
        chamfer_encoder.append(_chamfer(mesh0, example))
        chamfer_refined.append(_chamfer(mesh, example))

    entries = json.loads(storage.read_text(_USER_SET.value))
    drawings = [(sketches_lib.load_image(storage.join(os.path.dirname(_USER_SET.value), e["file"])),
                 s2s.camera(e["azimuth"], e["elevation"])) for e in entries]
    framing_s = []
    for grey, camera in drawings:
        t0 = time.perf_counter()
        s2s.frame(grey, camera)
        framing_s.append(time.perf_counter() - t0)
    b = config.sketch.batch
    stacked = np.stack(sketches[:b])
    initial = s2s.predict(stacked[:, 0], camera_lib.view_angles(cameras[:b]))
    views = {k: jnp.asarray(a) for k, a in optimize.object_views(
        stacked, [[c] for c in cameras[:b]], s2s.embed(stacked[:, 0])[:, None], config.sketch).items()}
    run = lambda iters: optimize.optimize_batch((s2s.optimizer, s2s.step), s2s.trained.params, s2s.prior,  # noqa: E731
                                                initial, views, iters)
    run(1)  # compile the batch-of-b step
    t0 = time.perf_counter()
    run(config.sketch.iterations)
    batched = b / (time.perf_counter() - t0)

    result = {"benchmark": "sketch2shape", "machine": machine.describe(), "config": _CONFIG.value,
              "workdir": _WORKDIR.value, "resolution": s2s.resolution, "iterations": config.sketch.iterations,
              "startup_s": round(startup, 2), "encoder_shape_s": round(statistics.median(encoder_s), 3),
              "quick_mesh_resolution": interactive.QUICK_MESH_RESOLUTION,
              "encoder_shape_full_mesh_s": round(statistics.median(encoder_full_s), 3),
              "mesh_resolution": config.mesh.resolution,
              "refined_shape_s": round(statistics.median(refined_s), 3), "batch": b,
              "batched_sketches_per_s": round(batched, 3),
              "chamfer_x1000_encoder_median": _median(chamfer_encoder),
              "chamfer_x1000_refined_median": _median(chamfer_refined),
              "sketches_timed": len(encoder_s), "user_framing": optimize.user_framing(config.sketch),
              "user_framing_s": round(statistics.median(framing_s), 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
