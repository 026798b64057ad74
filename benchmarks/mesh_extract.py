r"""Coarse-to-fine against dense SDF grids for marching cubes; last line is one JSON object.

    python -m benchmarks.mesh_extract                      # a procedural chair's exact SDF
    python -m benchmarks.mesh_extract --workdir=runs/chair16_cpu --config=configs/chair16.py:cpu

At N = 256 (DeepSDF's evaluation grid) reports, for the SDF of a procedural chair (a
union of boxes, evaluated exactly in JAX) and, with `--workdir`, for a trained decoder's
first `--latents` train shapes: the field's measured steepest slope, and for each
Lipschitz margin (0: measured, the default of the configs) the share of the dense
grid's N^3 queries coarse-to-fine makes, wall time of each and their ratio, the grid
vertices whose sign differs from the dense grid's and the Chamfer distance between the
two meshes (identical meshes give 0).
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import machine
from sdfjax import config_files
from sdfjax import trained as trained_lib
from sdfjax.fit import meshing
from sdfjax.fit.folded import fold_decoder
from sdfjax.geometry import isosurface, metrics

_RESOLUTION = flags.DEFINE_integer("resolution", 256, "Grid vertices per axis.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Also measure a trained decoder (its first train latent).")
_CONFIG = flags.DEFINE_string("config", "configs/chair16.py:cpu", "Config of --workdir's run.")
_MARGINS = flags.DEFINE_list("margins", ["1.5", "0"], "Coarse-to-fine's Lipschitz margins (0: measured).")
_LATENTS = flags.DEFINE_integer("latents", 4, "With --workdir: how many trained latents to mesh.")

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


def _coarse_to_fine(sdf_fn, resolution: int, lipschitz: float, dense: np.ndarray, dense_seconds: float) -> dict:
    start = time.perf_counter()
    values, queries = isosurface.sdf_grid_coarse_to_fine(sdf_fn, resolution, lipschitz=lipschitz)
    seconds = time.perf_counter() - start
    a, b = isosurface.marching_cubes(dense), isosurface.marching_cubes(values)
    identical = a.vertices.shape == b.vertices.shape and np.array_equal(a.vertices, b.vertices) \
        and np.array_equal(a.faces, b.faces)
    chamfer = 0.0 if identical else metrics.chamfer_distance(a.vertices, b.vertices)
    return {"query_fraction": queries / resolution**3, "coarse_to_fine_seconds": seconds,
            "time_ratio": seconds / dense_seconds, "sign_differences": int(np.sum((values < 0) != (dense < 0))),
            "chamfer_between_meshes": chamfer, "identical_meshes": bool(identical)}


def compare(sdf_fn, resolution: int, margins) -> dict:
    """Dense against coarse to fine at each Lipschitz margin (0: measured), on one SDF."""
    sdf_fn(np.zeros((8, 3), np.float32))  # compile
    start = time.perf_counter()
    dense = isosurface.sdf_grid_dense(sdf_fn, resolution)
    dense_seconds = time.perf_counter() - start
    out = {"dense_seconds": dense_seconds, "faces": int(len(isosurface.marching_cubes(dense).faces)),
           "measured_slope": isosurface.measured_lipschitz(sdf_fn)}
    for margin in margins:
        out["auto" if margin <= 0 else f"lipschitz_{margin:g}"] = _coarse_to_fine(sdf_fn, resolution, margin, dense,
                                                                                  dense_seconds)
    return out


def main(argv):
    del argv
    n, margins = _RESOLUTION.value, [float(m) for m in _MARGINS.value]
    result = {"benchmark": "mesh_extract", "machine": machine.describe(),
              "backend": jax.default_backend(), "resolution": n, "margins": margins}
    result["procedural_chair"] = compare(procedural_chair_sdf(), n, margins)
    if _WORKDIR.value:
        config = config_files.load(_CONFIG.value)
        trained = trained_lib.load_trained(config, _WORKDIR.value)
        folded = fold_decoder(trained.decoder, trained.params)
        for row in range(min(_LATENTS.value, len(trained.latents))):
            sdf_fn = meshing.decoder_sdf_fn(folded, trained.latents[row], config.mesh.chunk)
            result[f"trained_decoder_latent_{row}"] = compare(sdf_fn, n, margins)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
