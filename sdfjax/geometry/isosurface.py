"""Meshes from signed distance functions: dense and coarse-to-fine grids, marching cubes.

    values, queries = sdf_grid_coarse_to_fine(sdf_fn, resolution=256)
    mesh = marching_cubes(values)                       # normalised frame, [-1, 1]^3

`sdf_fn` maps an (n, 3) float32 array of points in the normalised frame to (n,) signed
distances (negative inside). The grid is N^3 vertices spanning [-1, 1]^3 with voxel size
2 / (N - 1), so vertex i sits at -1 + 2 i / (N - 1) (docs/design.md: DeepSDF's released grid
uses 2 / N and is off by one voxel).

Coarse to fine. The grid's cells are grouped in cubic blocks of b^3 cells for block
sizes b_0 > b_1 > ... > 1, each dividing the previous. The SDF is evaluated at the
corners of every block of the coarsest level; a block is *active* when its corners
change sign or the smallest |sdf| at a corner is at most `lipschitz` x half the block's
diagonal. Otherwise no point of the block is on the surface (for an SDF that is
`lipschitz`-Lipschitz: every point is within half a diagonal of some corner), so the
whole block keeps its corners' sign. Only active blocks are split into the next
level's blocks, down to single cells. Every vertex of every cell the surface can cross
is evaluated exactly, every other vertex gets the right sign, so marching cubes gives
the same mesh as on the dense grid while the SDF is queried at a small share of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import trimesh

SdfFn = Callable[[np.ndarray], np.ndarray]


def grid_coordinates(resolution: int) -> np.ndarray:
    """The N vertex coordinates along each axis: linspace(-1, 1, N), spacing 2 / (N - 1)."""
    return np.linspace(-1.0, 1.0, resolution, dtype=np.float64)


def grid_points(indices: np.ndarray, resolution: int) -> np.ndarray:
    """(n, 3) integer vertex indices -> float32 points in [-1, 1]^3."""
    return (-1.0 + indices * (2.0 / (resolution - 1))).astype(np.float32)


def chunked(fn, chunk: int):
    """A numpy function of (n, ...) arrays from a jitted fn of (chunk, ...) arrays.

    Inputs are cut into `chunk` rows and the last piece zero-padded, so `fn` compiles
    once; float inputs are fed as float32. Several inputs are cut alike (the same n
    rows each). Used for SDF queries (points (n, 3) -> (n,)) and image embeddings alike.
    """
    def apply(*xs: np.ndarray) -> np.ndarray:
        xs = [np.asarray(x) for x in xs]
        xs = [x.astype(np.float32, copy=False) if np.issubdtype(x.dtype, np.floating) else x for x in xs]
        n = len(xs[0])
        if any(len(x) != n for x in xs):
            raise ValueError(f"chunked: inputs of {[len(x) for x in xs]} rows; expected the same number")
        outs = []
        for start in range(0, max(n, 1), chunk):
            padded = []
            for x in xs:
                part = x[start:start + chunk]
                padded.append(np.zeros((chunk,) + x.shape[1:], x.dtype))
                padded[-1][:len(part)] = part
            outs.append(np.asarray(fn(*padded))[:len(part)])
        return np.concatenate(outs)

    return apply


def sdf_grid_dense(sdf_fn: SdfFn, resolution: int, chunk: int = 1 << 18) -> np.ndarray:
    """The SDF at all N^3 vertices, (N, N, N) float32 indexed [x, y, z]."""
    axis = grid_coordinates(resolution).astype(np.float32)
    values = np.empty(resolution**3, np.float32)
    for start in range(0, resolution**3, chunk):
        flat = np.arange(start, min(start + chunk, resolution**3))
        i, j, k = np.unravel_index(flat, (resolution,) * 3)
        values[flat] = sdf_fn(np.stack([axis[i], axis[j], axis[k]], axis=-1))
    return values.reshape((resolution,) * 3)


def default_block_sizes(resolution: int) -> tuple[int, ...]:
    """Powers of 2 from about N/16 down to 1, e.g. (16, 8, 4, 2, 1) for N = 256.

    Halving at each level matters for learned SDFs: trained with distances clamped at
    0.1, they are small everywhere, so blocks are only ruled out once they are a few
    voxels wide.
    """
    sizes = [1]
    while sizes[-1] * 2 <= max((resolution - 1) // 12, 1):
        sizes.append(sizes[-1] * 2)
    return tuple(reversed(sizes))


def _lattice(resolution: int, block: int) -> np.ndarray:
    """Fine-grid indices of the block corners along one axis (the last block may be short)."""
    idx = np.arange(0, resolution - 1, block)
    return np.append(idx, resolution - 1)


def _corner_reduce(v: np.ndarray, op) -> np.ndarray:
    """(a-1, b-1, c-1): `op` (np.minimum, np.maximum) over the 8 corners of each block."""
    v = op(v[:-1], v[1:])
    v = op(v[:, :-1], v[:, 1:])
    return op(v[:, :, :-1], v[:, :, 1:])


def _corners_of_blocks(blocks: np.ndarray) -> np.ndarray:
    """Vertex mask (a+1, b+1, c+1) of the corners of the True blocks (a, b, c)."""
    out = np.zeros(tuple(s + 1 for s in blocks.shape), bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                out[dx:dx + blocks.shape[0], dy:dy + blocks.shape[1], dz:dz + blocks.shape[2]] |= blocks
    return out


AUTO_LIPSCHITZ_RESOLUTION = 65  # grid of the slope measurement: 1.7% of the queries of a 256^3 grid
AUTO_LIPSCHITZ_SAFETY = 1.25  # the measured slope is a lower bound of the true constant


def measured_lipschitz(sdf_fn: SdfFn, resolution: int = AUTO_LIPSCHITZ_RESOLUTION, chunk: int = 1 << 18) -> float:
    """The steepest slope of the SDF between neighbouring vertices of a resolution^3 grid.

    max |f(v) - f(v')| / |v - v'| over grid edges: a lower bound of the field's Lipschitz
    constant at the scale of the coarse blocks. A true SDF gives at most 1; a learned one
    (clamped training, no eikonal term) is often several times steeper near its surface.
    """
    values = sdf_grid_dense(sdf_fn, resolution, chunk)
    voxel = 2.0 / (resolution - 1)
    return float(max(np.abs(np.diff(values, axis=a)).max() for a in range(3)) / voxel)


def sdf_grid_coarse_to_fine(sdf_fn: SdfFn, resolution: int, block_sizes: Sequence[int] | None = None,
                            lipschitz: float = 1.0, chunk: int = 1 << 18) -> tuple[np.ndarray, int]:
    """The SDF grid of `sdf_grid_dense`, exact on every cell the surface can cross.

    Args:
      sdf_fn: (n, 3) points -> (n,) signed distances.
      resolution: N, vertices per axis.
      block_sizes: cells per block edge at each level, decreasing, each dividing the
        previous, ending at 1 (default `default_block_sizes(N)`).
      lipschitz: assumed bound on |grad sdf|. The result equals the dense grid's only
        where the field is no steeper than this. <= 0: measured first
        (`measured_lipschitz` x AUTO_LIPSCHITZ_SAFETY, at least 1), the safe choice for
        learned SDFs; its queries are counted.
      chunk: points per `sdf_fn` call.

    Returns:
      values (N, N, N) float32 (exact where evaluated; elsewhere a value of the right
      sign), and the number of points queried.
    """
    queried = 0
    if lipschitz <= 0:
        probe = min(AUTO_LIPSCHITZ_RESOLUTION, resolution)
        lipschitz = max(1.0, AUTO_LIPSCHITZ_SAFETY * measured_lipschitz(sdf_fn, probe, chunk))
        queried = probe**3
    sizes = tuple(block_sizes or default_block_sizes(resolution))
    if sizes[-1] != 1 or any(a % b for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"block_sizes {sizes} must decrease, each dividing the previous, and end at 1")
    voxel = 2.0 / (resolution - 1)
    values = np.full((resolution,) * 3, np.nan, np.float32)
    parent_active = None  # active blocks of the previous level
    decided = []  # per level: (block size, inactive blocks' sign or 0 where not decided there)
    for level, block in enumerate(sizes):
        lattice = _lattice(resolution, block)
        num_blocks = len(lattice) - 1
        if parent_active is None:
            candidates = np.ones((num_blocks,) * 3, bool)
        else:
            up = np.arange(num_blocks) // (sizes[level - 1] // block)
            candidates = parent_active[np.ix_(up, up, up)]
        need = _corners_of_blocks(candidates)
        sub = values[np.ix_(lattice, lattice, lattice)]
        need &= np.isnan(sub)
        where = np.argwhere(need)
        for start in range(0, len(where), chunk):
            ids = where[start:start + chunk]
            fine = lattice[ids]
            sub[tuple(ids.T)] = sdf_fn(grid_points(fine, resolution))
        queried += len(where)
        values[np.ix_(lattice, lattice, lattice)] = np.where(np.isnan(sub), values[np.ix_(lattice, lattice, lattice)],
                                                             sub)
        sub = np.nan_to_num(sub, nan=np.inf)  # corners of non-candidate blocks: never used
        lowest, highest = _corner_reduce(sub, np.minimum), _corner_reduce(sub, np.maximum)
        extent = np.diff(lattice) * voxel  # block edge lengths along an axis
        half_diagonal = 0.5 * np.sqrt(extent[:, None, None]**2 + extent[None, :, None]**2 + extent[None, None, :]**2)
        mixed = (lowest <= 0) & (highest >= 0)
        near = np.minimum(np.abs(lowest), np.abs(highest)) <= lipschitz * half_diagonal
        active = candidates & (mixed | near)
        sign = np.where(candidates & ~active, np.sign(lowest), 0).astype(np.int8)
        decided.append((block, sign))
        parent_active = active
    # Vertices never evaluated lie in a block decided inactive at some level: give them
    # that block's sign (with magnitude one voxel, away from the zero level).
    missing = np.isnan(values)
    for block, sign in reversed(decided):
        if not missing.any():
            break
        owner = np.minimum(np.arange(resolution) // block, sign.shape[0] - 1)
        for x in np.flatnonzero(missing.any(axis=(1, 2))):
            fill = sign[owner[x]][np.ix_(owner, owner)]
            row = missing[x] & (fill != 0)
            values[x][row] = fill[row] * voxel
            missing[x] &= ~row
    if missing.any():
        raise AssertionError("coarse-to-fine left vertices without a value")  # a bug, not bad input
    return values, queried


def marching_cubes(values: np.ndarray, level: float = 0.0) -> trimesh.Trimesh | None:
    """The zero level set of an (N, N, N) grid on [-1, 1]^3 as a mesh in the normalised frame.

    Faces are wound so their normals point outward (towards positive SDF). Returns None
    when the grid has no sign change (no surface).
    """
    from skimage import measure

    if not (values.min() <= level <= values.max()):
        return None
    voxel = 2.0 / (values.shape[0] - 1)
    vertices, faces, _, _ = measure.marching_cubes(values, level=level, spacing=(voxel,) * 3,
                                                   gradient_direction="descent")
    return trimesh.Trimesh(vertices - 1.0, faces, process=False)


def to_original_frame(mesh: trimesh.Trimesh, normalization) -> trimesh.Trimesh:
    """The mesh mapped from the normalised frame back to the shape's original frame."""
    return trimesh.Trimesh(normalization.to_original(mesh.vertices), mesh.faces, process=False)
