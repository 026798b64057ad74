"""Meshing a latent code and scoring the mesh against the true shape.

    sdf_fn = decoder_sdf_fn(folded, z, chunk)             # numpy points -> numpy SDF
    mesh, queries = extract_mesh(sdf_fn, config.mesh)     # marching cubes (coarse to fine)
    row = mesh_and_score(config, folded, z, example, obj_id, out_dir)
    rows = score_latents(config, folded, latents, examples, names, out_dir)

Metrics follow DeepSDF (Chamfer x1000 in the original frame) and Sketch2Shape (EMD,
F-score, normal consistency); see sdfjax.geometry.metrics.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from sdfjax import io
from sdfjax.fit.folded import folded_sdf, latent_biases
from sdfjax.geometry import isosurface, metrics
from sdfjax.geometry import mesh as mesh_lib


def decoder_sdf_fn(folded: dict, z: np.ndarray, chunk: int, fourier_frequencies: int = 0):
    """(n, 3) numpy points -> (n,) numpy SDF of latent z under the folded decoder, in fixed-size chunks."""
    fn = _folded_sdf_jit(fourier_frequencies)
    z = jnp.asarray(z, jnp.float32)
    return isosurface.chunked(lambda points: fn(folded, z, points), chunk)


@functools.lru_cache(maxsize=None)
def _folded_sdf_jit(fourier_frequencies: int):
    """One jitted f(folded, z, points) per feature setting, shared by every shape and mesh."""
    return jax.jit(lambda f, z, x: folded_sdf(f, latent_biases(f, z[None]), x[None], fourier_frequencies)[0])


def extract_mesh(sdf_fn, mesh_config, resolution: int | None = None):
    """(mesh or None, decoder queries) of the zero level set at `resolution` (default `mesh_config.resolution`)."""
    n = int(resolution or mesh_config.resolution)
    if mesh_config.coarse_to_fine:
        values, queries = isosurface.sdf_grid_coarse_to_fine(sdf_fn, n, lipschitz=mesh_config.lipschitz,
                                                            chunk=mesh_config.chunk)
    else:
        values, queries = isosurface.sdf_grid_dense(sdf_fn, n, chunk=mesh_config.chunk), n**3
    return isosurface.marching_cubes(values), queries


def mesh_of_latent(config, folded: dict, z: np.ndarray, resolution: int | None = None):
    """The mesh (normalised frame) of latent z at `config.mesh` (or `resolution` voxels per side), or None when
    the SDF has no zero level set."""
    sdf_fn = decoder_sdf_fn(folded, z, config.mesh.chunk, config.model.get("fourier_frequencies", 0))
    return extract_mesh(sdf_fn, config.mesh, resolution)[0]


def mesh_and_score(config, folded: dict, z: np.ndarray, example: dict, obj_id: str, out_dir: str) -> dict:
    """Extracts the mesh of latent z, writes it (config.fit.save_mesh) and scores it (config.fit.metrics).

    `example` is the shape's dataset record (surface samples and normalisation); the mesh
    goes to `out_dir/meshes/<obj_id>.obj` (and meshes_original/ with config.mesh.original_frame).
    """
    fc = config.fit
    row = metrics.nan_metrics()
    if not (fc.save_mesh or fc.metrics):
        return row
    mesh = mesh_of_latent(config, folded, z)
    normalization = mesh_lib.Normalization(np.asarray(example["offset"], np.float64), float(example["scale"]))
    if fc.save_mesh and mesh is not None:
        io.atomic_export_mesh(os.path.join(out_dir, "meshes", f"{obj_id}.obj"), mesh)
        if config.mesh.original_frame:
            io.atomic_export_mesh(os.path.join(out_dir, "meshes_original", f"{obj_id}.obj"),
                                  isosurface.to_original_frame(mesh, normalization))
    if fc.metrics:
        surface = example["surface_samples"]
        row.update(metrics.evaluate_mesh(mesh, surface[:, :3], surface[:, 3:], normalization, name=obj_id,
                                         seed=config.seed, emd_points=fc.emd_points))
    return row


def score_latents(config, folded: dict, latents: np.ndarray, examples: Sequence[dict], names: Sequence[str],
                  out_dir: str, progress: bool = True, extra: Sequence[dict] | None = None) -> list[dict]:
    """One metrics row per latent: {"obj_id": name, **extra[i], **mesh_and_score(...)}, with a progress bar."""
    rows = []
    bar = tqdm(range(len(names)), desc="mesh+metrics", unit="shape", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    for i in bar:
        rows.append({"obj_id": names[i], **(extra[i] if extra else {}),
                     **mesh_and_score(config, folded, latents[i], examples[i], names[i], out_dir)})
    return rows
