"""The mesh of a latent code: the folded decoder's zero level set by marching cubes.

    sdf_fn = decoder_sdf_fn(folded, z, chunk)             # numpy points -> numpy SDF
    mesh, queries = extract_mesh(sdf_fn, config.mesh)     # marching cubes (coarse to fine)
    mesh = mesh_of_latent(config, folded, z)              # both, as config.mesh says
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sdfjax.fit.folded import folded_sdf, latent_biases
from sdfjax.geometry import isosurface


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
