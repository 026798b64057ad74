r"""DeepSDF SDF sampling speed, memory and accuracy; last line is one JSON object.

    python -m benchmarks.sdf_sampling                      # 500,000 samples, >= 100,000 faces
    python -m benchmarks.sdf_sampling --baseline_points=20000

Measures, in one run:
  * samples/s of `sdf.sample_sdf` (orientation + sampling + exact distances + signs) on a
    procedural chair subdivided to at least `--faces` faces, end to end;
  * peak resident memory of this process during that work (before the baseline runs);
  * max |error| of the same sampler against the analytic SDF of a box;
  * like for like against `trimesh.proximity.signed_distance` (the seed's approach):
    signed distances of the same `--baseline_points` points of those samples, each side
    warm (its one-off set-up, our face orientation and trimesh's trees and caches, timed
    apart), and the ratio of the two query rates.
"""

from __future__ import annotations

import json
import resource
import time

import numpy as np
import trimesh
from absl import app, flags

from benchmarks import machine

from data_gen import synthetic
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.geometry import sdf as sdf_lib

_SAMPLES = flags.DEFINE_integer("samples", 500_000, "SDF samples per shape (DeepSDF: 500,000).")
_FACES = flags.DEFINE_integer("faces", 100_000, "Subdivide the chair to at least this many faces.")
_BASELINE_POINTS = flags.DEFINE_integer("baseline_points", 20_000, "Points both sides query (>= 20,000).")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _box_error(samples: int) -> float:
    half = np.array([0.4, 0.25, 0.6])
    box = trimesh.creation.box(extents=2 * half)
    out = sdf_lib.sample_sdf(sdf_lib.SignedDistanceField.from_mesh(box), box,
                             sdf_lib.SamplingSpec(num_samples=samples), np.random.default_rng(1))
    q = np.abs(out[:, :3].astype(np.float64)) - half
    exact = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
    return float(np.abs(out[:, 3] - exact).max())  # includes float32 rounding of the output


def main(argv):
    del argv
    chair = synthetic.make_shape("chair", 0, 1)
    chair = mesh_lib.normalize_mesh(chair, mesh_lib.compute_normalization(chair))
    while len(chair.faces) < _FACES.value:
        chair = chair.subdivide()
    spec = sdf_lib.SamplingSpec(num_samples=_SAMPLES.value)

    start = time.perf_counter()
    field = sdf_lib.SignedDistanceField.from_mesh(chair)
    samples = sdf_lib.sample_sdf(field, chair, spec, np.random.default_rng(0))
    seconds = time.perf_counter() - start
    peak_mb = _peak_rss_mb()
    box_error = _box_error(_SAMPLES.value)

    subset = samples[np.random.default_rng(2).choice(len(samples), _BASELINE_POINTS.value, replace=False)]
    points = subset[:, :3].astype(np.float64)
    start = time.perf_counter()
    field = sdf_lib.SignedDistanceField.from_mesh(chair)  # our set-up: face orientation
    ours_setup = time.perf_counter() - start
    start = time.perf_counter()
    ours = field(points)
    ours_seconds = time.perf_counter() - start

    start = time.perf_counter()
    trimesh.proximity.signed_distance(chair, points[:8])  # trimesh's set-up: trees and caches, built once
    baseline_setup = time.perf_counter() - start
    start = time.perf_counter()
    baseline = -trimesh.proximity.signed_distance(chair, points)  # trimesh: positive inside; ours: negative
    baseline_seconds = time.perf_counter() - start

    result = {
        "benchmark": "sdf_sampling",
        "machine": machine.describe(),
        "faces": int(len(chair.faces)),
        "samples": int(len(samples)),
        "seconds": round(seconds, 3),
        "samples_per_s": round(len(samples) / seconds, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "max_abs_error_box": box_error,
        "query_points": int(len(points)),
        "ours_setup_seconds": round(ours_setup, 3),
        "ours_query_points_per_s": round(len(points) / ours_seconds, 1),
        "trimesh_setup_seconds": round(baseline_setup, 3),
        "trimesh_query_points_per_s": round(len(points) / baseline_seconds, 1),
        "trimesh_agreement_1e-4": float(np.mean(np.abs(baseline - ours) < 1e-4)),
        "speedup_vs_trimesh": round(baseline_seconds / ours_seconds, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
