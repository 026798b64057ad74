r"""Coarse-to-fine against dense SDF grids for marching cubes; last line is one JSON object.

    python -m benchmarks.mesh_extract                      # a procedural chair's exact SDF
    python -m benchmarks.mesh_extract --workdir=runs/chair16_cpu --config=configs/chair16.py:cpu

At N = 256 (DeepSDF's evaluation grid) reports, for the SDF of a procedural chair (a
union of boxes, evaluated exactly in JAX) and, with `--workdir`, for a trained decoder's
first train shape: the share of the dense grid's N^3 queries coarse-to-fine makes
(target <= 0.1), wall time of each and their ratio, and the Chamfer distance between
the two meshes (target < 1e-9; identical meshes give 0).
"""

from __future__ import annotations

import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from sdfjax import trained as trained_lib
from sdfjax.fit import scoring
from sdfjax.fit.folded import fold_decoder
from sdfjax.geometry import isosurface, metrics
from sdfjax.launch import common

_RESOLUTION = flags.DEFINE_integer("resolution", 256, "Grid vertices per axis.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Also measure a trained decoder (its first train latent).")
_CONFIG = flags.DEFINE_string("config", "configs/chair16.py:cpu", "Config of --workdir's run.")
_LIPSCHITZ = flags.DEFINE_float("lipschitz", 1.5, "Coarse-to-fine's Lipschitz margin (config.mesh.lipschitz).")

# A chair as boxes (centre, half extents): seat, back, four legs, two stretchers.
_CHAIR_BOXES = np.array([
    [0.0, 0.0, 0.0, 0.40, 0.04, 0.38], [0.0, 0.45, -0.35, 0.40, 0.41, 0.03],
    [-0.35, -0.45, -0.33, 0.03, 0.45, 0.03], [0.35, -0.45, -0.33, 0.03, 0.45, 0.03],
    [-0.35, -0.45, 0.33, 0.03, 0.45, 0.03], [0.35, -0.45, 0.33, 0.03, 0.45, 0.03],
    [0.0, -0.6, -0.33, 0.35, 0.02, 0.02], [0.0, -0.6, 0.33, 0.35, 0.02, 0.02]], np.float32)


@jax.jit
def _chair_sdf(points):
    q = jnp.abs(points[:, None, :] - _CHAIR_BOXES[:, :3]) - _CHAIR_BOXES[:, 3:]
    boxes = jnp.linalg.norm(jnp.maximum(q, 0), axis=-1) + jnp.minimum(q.max(-1), 0)
    return boxes.min(axis=1)


def procedural_chair_sdf(chunk: int = 1 << 18):
    return isosurface.chunked(_chair_sdf, chunk)


def compare(sdf_fn, resolution: int, lipschitz: float) -> dict:
    sdf_fn(np.zeros((8, 3), np.float32))  # compile
    start = time.perf_counter()
    dense = isosurface.sdf_grid_dense(sdf_fn, resolution)
    dense_seconds = time.perf_counter() - start
    start = time.perf_counter()
    values, queries = isosurface.sdf_grid_coarse_to_fine(sdf_fn, resolution, lipschitz=lipschitz)
    fine_seconds = time.perf_counter() - start
    a, b = isosurface.marching_cubes(dense), isosurface.marching_cubes(values)
    identical = a.vertices.shape == b.vertices.shape and np.array_equal(a.vertices, b.vertices) \
        and np.array_equal(a.faces, b.faces)
    chamfer = 0.0 if identical else metrics.chamfer_distance(a.vertices, b.vertices)
    return {"query_fraction": queries / resolution**3, "dense_seconds": dense_seconds,
            "coarse_to_fine_seconds": fine_seconds, "time_ratio": fine_seconds / dense_seconds,
            "chamfer_between_meshes": chamfer, "identical_meshes": bool(identical), "faces": int(len(a.faces))}


def main(argv):
    del argv
    n = _RESOLUTION.value
    result = {"benchmark": "mesh_extract", "machine": f"{platform.machine()} cpus={os.cpu_count()}",
              "backend": jax.default_backend(), "resolution": n, "lipschitz": _LIPSCHITZ.value}
    result["procedural_chair"] = compare(procedural_chair_sdf(), n, _LIPSCHITZ.value)
    if _WORKDIR.value:
        config = common.load_config_file(_CONFIG.value)
        trained = trained_lib.load_trained(config, _WORKDIR.value)
        folded = fold_decoder(trained.decoder, trained.params)
        sdf_fn = scoring.decoder_sdf_fn(folded, trained.latents[0], config.mesh.chunk)
        result["trained_decoder"] = compare(sdf_fn, n, _LIPSCHITZ.value)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
